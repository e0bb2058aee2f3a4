package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
	"github.com/orchable/orchable/webhooks"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// standIns is a faithful stand-in for pg_net and Supabase Vault where they
// are not installable: net.http_post with pg_net's signature and its
// Content-Type rule records each request (inside the caller's transaction,
// so a rollback sends nothing, as with pg_net); vault.decrypted_secrets,
// create_secret and update_secret keep secrets in a table.
const standIns = `
create schema if not exists net;
create table if not exists net.recorded_requests (
  id bigserial primary key, url text not null, body jsonb, params jsonb, headers jsonb, timeout_milliseconds integer);
create or replace function net.http_post(
  url text, body jsonb default '{}'::jsonb, params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb, timeout_milliseconds integer default 5000
) returns bigint language plpgsql as $$
declare id bigint;
begin
  if headers ->> 'Content-Type' is not null and headers ->> 'Content-Type' <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;
  insert into net.recorded_requests (url, body, params, headers, timeout_milliseconds)
  values (url, body, params, headers || '{"Content-Type": "application/json"}', timeout_milliseconds) returning recorded_requests.id into id;
  return id;
end $$;
create schema if not exists vault;
create table if not exists vault.secrets (id uuid primary key default gen_random_uuid(), name text unique, secret text not null, description text);
create or replace view vault.decrypted_secrets as select id, name, description, secret as decrypted_secret from vault.secrets;
create or replace function vault.create_secret(new_secret text, new_name text default null, new_description text default '', new_key_id uuid default null)
  returns uuid language sql as $$ insert into vault.secrets (name, secret, description) values (new_name, new_secret, new_description) returning id $$;
create or replace function vault.update_secret(secret_id uuid, new_secret text default null, new_name text default null,
  new_description text default null, new_key_id uuid default null)
  returns void language sql as $$ update vault.secrets set secret = coalesce(new_secret, secret), name = coalesce(new_name, name) where id = secret_id $$;
`

const (
	hookURL    = "https://orchable.example/webhooks/supabase"
	hookSecret = "filtered-webhook-secret-0123456789"
)

var installOnce sync.Once //nolint:gochecknoglobals // one install per package database

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := dbtest.Pool(t)
	var err error
	installOnce.Do(func() {
		ctx := context.Background()
		if _, err = pool.Exec(ctx, standIns); err != nil {
			return
		}
		var rep *webhooks.Report
		rep, err = webhooks.Install(ctx, pool, webhooks.Options{URL: hookURL, Secret: hookSecret})
		if err == nil && !rep.SecretsReady {
			err = context.Canceled
		}
	})
	require.NoError(t, err)
	return pool
}

// sent returns the requests recorded for user, in order.
func sent(ctx context.Context, t *testing.T, pool *pgxpool.Pool, user uuid.UUID) []recorded {
	t.Helper()
	rows, err := pool.Query(ctx, `select url, body, headers from net.recorded_requests
		where body -> 'record' ->> 'user_id' = $1 order by id`, user.String())
	require.NoError(t, err)
	defer rows.Close()
	var out []recorded
	for rows.Next() {
		var r recorded
		require.NoError(t, rows.Scan(&r.URL, &r.Body, &r.Headers))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

type recorded struct {
	URL     string
	Body    json.RawMessage
	Headers map[string]string
}

func userIdentity(user uuid.UUID) supabase.Identity {
	b, _ := json.Marshal(dbtest.UserClaims(user))
	return supabase.Identity{Claims: b}
}

// TestFilteredWebhooks: the engine's own writes (claim, renew, complete,
// reschedule, failure, successors) post nothing; a launch, a user's insert
// in plan, a retry and an approval post one slim Supabase-shaped payload
// each, which the real webhook handler accepts as work for that user.
func TestFilteredWebhooks(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := t.Context()
	db := supabase.NewDirect(pool, nil)
	user := dbtest.CreateUser(ctx, t, pool)
	id := userIdentity(user)
	p := "wh" + uuid.NewString()[:6]
	for _, s := range []struct {
		id, key, next string
		approval      bool
	}{{p + "A", "first", p + "B", false}, {p + "B", "second", "", true}} {
		next := "[]"
		if s.next != "" {
			next = `["` + s.next + `"]`
		}
		_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id, requires_approval)
			values ($1, 'x', $2, '{"cardinality": "1:1"}', $3, $4, $5)`, s.id, s.key, next, user, s.approval)
		require.NoError(t, err)
	}
	count := func() int { return len(sent(ctx, t, pool, user)) }

	// A launch of three rows: one statement, one webhook.
	var launched struct {
		TaskIDs []uuid.UUID `json:"task_ids"`
	}
	require.NoError(t, db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": p + "A", "p_rows": []map[string]any{{"n": 1}, {"n": 2}, {"n": 3}}}, &launched))
	require.Equal(t, 1, count(), "a launch posts once")

	// The engine's own writes post nothing.
	const worker = "wh-worker"
	var claimed []json.RawMessage
	require.NoError(t, db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": worker, "p_lease_seconds": 300, "p_limit": 3, "p_task_ids": launched.TaskIDs}, &claimed))
	require.Len(t, claimed, 3)
	require.NoError(t, db.RPC(ctx, id, "renew_leases", map[string]any{"p_task_ids": launched.TaskIDs, "p_worker": worker, "p_lease_seconds": 600}, nil))
	require.NoError(t, db.RPC(ctx, id, "complete_task", map[string]any{"p_task_id": launched.TaskIDs[0], "p_worker": worker, "p_output": map[string]any{"v": 1}, "p_usage": map[string]any{}}, nil))
	require.NoError(t, db.RPC(ctx, id, "fail_task", map[string]any{"p_task_id": launched.TaskIDs[1], "p_worker": worker, "p_error": "later", "p_permanent": false, "p_retry_at": nil}, nil))
	require.NoError(t, db.RPC(ctx, id, "fail_task", map[string]any{"p_task_id": launched.TaskIDs[2], "p_worker": worker, "p_error": "no", "p_permanent": true, "p_retry_at": nil}, nil))
	require.Equal(t, 1, count(), "claim, renew, complete (with its successor), reschedule and failure post nothing")

	// The successor (stage B, needs approval) runs and waits for approval.
	var child uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "select id from public.ai_tasks where parent_task_id = $1", launched.TaskIDs[0]).Scan(&child))
	require.NoError(t, db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": worker, "p_lease_seconds": 300, "p_limit": 1, "p_task_ids": []uuid.UUID{child}}, &claimed))
	require.Len(t, claimed, 1)
	require.NoError(t, db.RPC(ctx, id, "complete_task", map[string]any{"p_task_id": child, "p_worker": worker, "p_output": map[string]any{"v": 2}, "p_usage": map[string]any{}}, nil))
	require.Equal(t, 1, count(), "a completion awaiting approval posts nothing")

	// The user's actions post one each.
	require.NoError(t, db.RPC(ctx, id, "retry_failed_task", map[string]any{"p_task_id": launched.TaskIDs[2]}, nil))
	require.Equal(t, 2, count(), "a retry posts once")
	require.NoError(t, db.RPC(ctx, id, "approve_task", map[string]any{"p_task_id": child}, nil))
	require.Equal(t, 3, count(), "an approval posts once")
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	dbtest.AsUser(ctx, t, tx, user)
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (status, stage_key, prompt_template_id, input_data) values ('plan', 'first', $1, '{}')`, p+"A")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 4, count(), "a user's insert in plan posts once")

	// Each payload is slim, Supabase-shaped, carries the secret, and the
	// real handler queues it for this user.
	srv, woken := handler(t)
	for i, r := range sent(ctx, t, pool, user) {
		require.Equal(t, hookURL, r.URL)
		require.Equal(t, hookSecret, r.Headers[webhooks.DefaultHeader])
		require.Equal(t, "application/json", r.Headers["Content-Type"])
		var body map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(r.Body, &body))
		require.ElementsMatch(t, []string{"type", "table", "schema", "record", "old_record"}, slices.Collect(mapsKeys(body)))
		var rec map[string]any
		require.NoError(t, json.Unmarshal(body["record"], &rec))
		require.ElementsMatch(t, []string{"id", "user_id", "batch_id", "launch_id", "status", "approved_at"}, slices.Collect(mapsKeys(rec)), "payload %d is slim", i)
		require.Less(t, len(r.Body), 1024, "payload %d: %s", i, r.Body)

		status := post(t, srv, r.Body)
		require.Equal(t, "queued", status, "payload %d (%s) is work for the handler", i, r.Body)
		require.Equal(t, user, woken.last(), "payload %d wakes the owner", i)
	}

	// Studio's full-row payload is still accepted.
	var full json.RawMessage
	require.NoError(t, pool.QueryRow(ctx, `select jsonb_build_object('type', 'INSERT', 'table', 'ai_tasks', 'schema', 'public',
		'record', to_jsonb(t), 'old_record', null) from public.ai_tasks t where id = $1`, launched.TaskIDs[2]).Scan(&full))
	require.Equal(t, "queued", post(t, srv, full))
}

// TestInstallArguments: the header name is validated and substituted, and
// the URL and secret are stored together or not at all.
func TestInstallArguments(t *testing.T) {
	t.Parallel()
	_, err := webhooks.SQL("Bad Header: x")
	require.ErrorContains(t, err, "not a valid header name")
	s, err := webhooks.SQL("X-Orchable-Secret")
	require.NoError(t, err)
	require.Contains(t, s, "send_task_webhooks('X-Orchable-Secret')")
	require.NotContains(t, s, webhooks.DefaultHeader+"'")
	_, err = webhooks.Install(t.Context(), dbtest.Pool(t), webhooks.Options{URL: hookURL})
	require.ErrorContains(t, err, "together")
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

type waker struct {
	mu    sync.Mutex
	users []uuid.UUID
}

func (w *waker) Notify(u uuid.UUID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users = append(w.users, u)
	return true
}
func (*waker) Kick() {}
func (w *waker) last() uuid.UUID {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.users) == 0 {
		return uuid.Nil
	}
	return w.users[len(w.users)-1]
}

// handler is the real router with shared-secret webhook authentication.
func handler(t *testing.T) (*httptest.Server, *waker) {
	t.Helper()
	cfg := &rls.Config{
		SupabaseURL: "http://sb.test", JWTSecret: "test-jwt-secret-with-at-least-32-characters", JWKSDisabled: true,
		WebhookMode: rls.WebhookModeSharedSecret, WebhookSecret: hookSecret, WebhookMaxBodyBytes: 1 << 20,
	}
	verifier, err := rls.NewVerifier(t.Context(), nil, cfg)
	require.NoError(t, err)
	t.Cleanup(verifier.Close)
	wv, err := rls.NewWebhookVerifier(nil, cfg)
	require.NoError(t, err)
	e := echo.New()
	w := &waker{}
	handlers.Register(e, &handlers.Deps{
		DB: supabase.NewDirect(dbtest.Pool(t), nil), UserAuth: verifier.Middleware(), WebhookAuth: wv.Middleware(),
		Wake: w, Ready: func(context.Context) error { return nil },
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, w
}

func post(t *testing.T, srv *httptest.Server, body []byte) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/webhooks/supabase", strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhooks.DefaultHeader, hookSecret)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return out.Status
}
