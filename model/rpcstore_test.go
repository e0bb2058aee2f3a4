package model

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestRPCStoreBindsRows: the key pool over the data-path store (the same
// usable_api_keys RPC the PostgREST transport calls, here on the direct
// transport) decrypts an enc:v2 key in its own row and sends it to the
// model, and skips copies of that ciphertext in another row of the owner or
// in another user's row.
func TestRPCStoreBindsRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.Pool(t)
	owner, attacker := dbtest.CreateUser(ctx, t, db), dbtest.CreateUser(ctx, t, db)
	keks := []KEK{{ID: "rpc-test", Key: bytes.Repeat([]byte{3}, 32)}}
	c, err := NewCipher(keks)
	require.NoError(t, err)
	genuine := uuid.New()
	ct, err := c.Encrypt("AIza-rpc-genuine", KeyRow{ID: genuine, UserID: owner})
	require.NoError(t, err)
	insert := func(id, user uuid.UUID, name string, priority int) {
		_, err := db.Exec(ctx, `insert into public.user_api_keys (id, user_id, key_name, api_key_encrypted, model_preference, priority) values ($1, $2, $3, $4, 'gemini-test', $5)`,
			id, user, name, ct, priority)
		require.NoError(t, err)
	}
	insert(genuine, owner, "genuine", 2)
	insert(uuid.New(), owner, "copied", 1) // preferred by priority, but not its row
	insert(uuid.New(), attacker, "stolen", 1)

	ids, err := supabase.NewUserIdentities(nil, &rls.Config{SupabaseURL: "http://127.0.0.1"})
	require.NoError(t, err)

	srv := geminitest.New(geminitest.Config{Keys: map[string]string{"AIza-rpc-genuine": "proj-rpc"}})
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg := Config{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr}, KEKs: keks}
	pool, err := NewKeyPool(&cfg, NewRPCStore(supabase.NewDirect(db, nil), ids), c)
	require.NoError(t, err)
	client, err := NewClient(&cfg, pool)
	require.NoError(t, err)

	for range 2 {
		resp, err := client.Generate(ctx, Request{UserID: owner, Prompt: "hello", Settings: Settings{Model: "gemini-test"}})
		require.NoError(t, err)
		require.Equal(t, genuine.String(), resp.KeyID)
	}
	before := srv.Stats().Requests
	_, err = client.Generate(ctx, Request{UserID: attacker, Prompt: "hello", Settings: Settings{Model: "gemini-test"}})
	require.ErrorContains(t, err, "cannot be decrypted")
	require.Equal(t, before, srv.Stats().Requests, "the copied ciphertext never reaches the model")
}
