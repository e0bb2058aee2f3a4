package rls

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestMintedTokenInDatabase checks that the claims of a minted token, set the way PostgREST and
// the direct transport set them, make auth.uid() return the task owner.
func TestMintedTokenInDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setupMinter(t)
	tx := dbtest.TestTx(ctx, t)
	owner := dbtest.CreateUser(ctx, t, tx)
	tok, err := b.minter.Mint(owner)
	require.NoError(t, err)

	_, err = tx.Exec(ctx, "set local role authenticated")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "select set_config('request.jwt.claims', $1, true)", string(tok.ClaimsJSON))
	require.NoError(t, err)

	var (
		uid         uuid.UUID
		role, aud   string
		currentRole string
	)
	err = tx.QueryRow(ctx, "select auth.uid(), auth.jwt() ->> 'role', auth.jwt() ->> 'aud', current_user").Scan(&uid, &role, &aud, &currentRole)
	require.NoError(t, err)
	require.Equal(t, owner, uid)
	require.Equal(t, "authenticated", role)
	require.Equal(t, "authenticated", aud)
	require.Equal(t, "authenticated", currentRole)

	// RLS lets the minted identity write and read its own task.
	var taskOwner uuid.UUID
	err = tx.QueryRow(ctx, "insert into public.ai_tasks (user_id) values ($1) returning user_id", owner).Scan(&taskOwner)
	require.NoError(t, err)
	require.Equal(t, owner, taskOwner)
}

// TestSigningTriggerMatchesVerifier runs the opt-in signing script against stand-ins for
// pg_net and Vault, fires it with an ai_tasks insert, and checks that the Go verifier accepts the
// captured request exactly as pg_net would send it.
func TestSigningTriggerMatchesVerifier(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	migration, err := os.ReadFile("../webhooks/signing.sql")
	require.NoError(t, err)
	tx := dbtest.TestTx(ctx, t)
	_, err = tx.Exec(ctx, `
		create schema net;
		create table net.captured (id bigserial primary key, url text, body jsonb, headers jsonb, timeout_milliseconds int);
		create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
		  headers jsonb default '{}', timeout_milliseconds int default 5000) returns bigint
		language sql as $$
		  insert into net.captured (url, body, headers, timeout_milliseconds)
		  values (url, body, headers, timeout_milliseconds) returning id
		$$;
		create schema vault;
		create table vault.decrypted_secrets (name text primary key, decrypted_secret text);`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, string(migration))
	require.NoError(t, err)

	owner := dbtest.CreateUser(ctx, t, tx)
	insertTask := func() {
		t.Helper()
		dbtest.AsUser(ctx, t, tx, owner)
		_, err := tx.Exec(ctx, "insert into public.ai_tasks (user_id) values ($1)", owner)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "reset role")
		require.NoError(t, err)
	}

	// Without the Vault secrets nothing is sent.
	insertTask()
	var n int
	require.NoError(t, tx.QueryRow(ctx, "select count(*) from net.captured").Scan(&n))
	require.Zero(t, n)

	_, err = tx.Exec(ctx, "insert into vault.decrypted_secrets values ('orchable_webhook_url', 'http://127.0.0.1:1/webhooks/supabase'), ('orchable_webhook_signing_secret', $1)", vectorSecret)
	require.NoError(t, err)
	insertTask()

	var (
		url, body string
		headers   map[string]string
		timeoutMS int
	)
	err = tx.QueryRow(ctx, "select url, body::text, headers, timeout_milliseconds from net.captured").Scan(&url, &body, &headers, &timeoutMS)
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:1/webhooks/supabase", url)
	require.Equal(t, 5000, timeoutMS)

	var payload struct {
		Type, Table, Schema string
		Record              map[string]any
		OldRecord           json.RawMessage `json:"old_record"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &payload))
	require.Equal(t, "INSERT", payload.Type)
	require.Equal(t, "ai_tasks", payload.Table)
	require.Equal(t, "public", payload.Schema)
	require.Equal(t, owner.String(), payload.Record["user_id"])
	require.JSONEq(t, "null", string(payload.OldRecord))

	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	require.Equal(t, "application/json", h.Get("Content-Type"))
	clock := &testClock{baseservicetest.NewFakeClock(time.Now())} // the trigger stamped the database's clock_timestamp()
	w := newStandardVerifier(t, clock, vectorSecret)
	require.NoError(t, w.Verify(h, []byte(body)), "headers %v", h)
	require.ErrorIs(t, w.Verify(h, []byte(body)), ErrWebhookReplayed)
	require.ErrorIs(t, w.Verify(h, []byte(body+" ")), ErrWebhookSignatureInvalid)
}
