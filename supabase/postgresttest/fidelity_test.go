package postgresttest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
	"github.com/orchable/orchable/supabase/postgresttest"
)

// uniqueName returns a fresh identifier with prefix (tests share the
// package database and the cluster's roles).
func uniqueName(prefix string) string {
	return prefix + "_" + uuid.NewString()[:8]
}

// exec runs DDL as the owner and drops what it made on cleanup.
func exec(ctx context.Context, t *testing.T, pool *pgxpool.Pool, sql, cleanup string) {
	t.Helper()
	_, err := pool.Exec(ctx, sql)
	require.NoError(t, err, sql)
	if cleanup != "" {
		t.Cleanup(func() {
			_, _ = pool.Exec(context.WithoutCancel(ctx), cleanup)
		})
	}
}

// Each test below fails on the lenient behaviour the server had before
// (issue 14, part 7).

func TestOverloadedFunctionIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	fn := uniqueName("pgt_over")
	exec(ctx, t, b.pool, fmt.Sprintf(`
create function public.%[1]s(a integer) returns text language sql as $$ select 'int' $$;
create function public.%[1]s(a text) returns text language sql as $$ select 'text' $$;
create function public.%[1]s(a integer, b integer) returns text language sql as $$ select 'two' $$;
grant execute on function public.%[1]s(integer), public.%[1]s(text), public.%[1]s(integer, integer) to anon`, fn),
		fmt.Sprintf("drop function public.%[1]s(integer); drop function public.%[1]s(text); drop function public.%[1]s(integer, integer)", fn))

	r := b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, body: map[string]any{"a": 1}})
	require.Equal(t, http.StatusMultipleChoices, r.status, "PostgREST never picks the first of two overloads: %s", r.body)
	code, msg := r.pgError(t)
	require.Equal(t, "PGRST203", code)
	require.Contains(t, msg, "Could not choose the best candidate function between: public."+fn+"(a => ")

	// Arguments that only one overload takes still resolve.
	r = b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, body: map[string]any{"a": 1, "b": 2}})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.JSONEq(t, `"two"`, string(r.body))
}

func TestBulkInsertKeysMustMatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	table := uniqueName("pgt_bulk")
	exec(ctx, t, b.pool, fmt.Sprintf(`create table public.%s (a int, c int default 7);
grant select, insert on public.%[1]s to anon`, table),
		"drop table public."+table)

	mixed := []map[string]any{{"a": 1}, {"a": 2, "c": 3}}
	r := b.do(ctx, t, req{method: http.MethodPost, path: "/" + table, body: mixed})
	require.Equal(t, http.StatusBadRequest, r.status, string(r.body))
	code, msg := r.pgError(t)
	require.Equal(t, "PGRST102", code)
	require.Equal(t, "All object keys must match", msg)
	require.Zero(t, b.count(ctx, t, "from public."+table))

	// With columns=, the objects may differ (a missing key is null).
	r = b.do(ctx, t, req{method: http.MethodPost, path: "/" + table + "?columns=a,c", body: mixed})
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.Equal(t, 2, b.count(ctx, t, "from public."+table))
}

func TestIsNotNullRefusedAsV12(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	tok := userToken(t, alice)
	r := b.do(ctx, t, req{method: http.MethodGet, path: "/ai_tasks?select=id&error_message=is.not_null", token: tok})
	require.Equal(t, http.StatusBadRequest, r.status, string(r.body))
	code, _ := r.pgError(t)
	require.Equal(t, "PGRST100", code)

	r = b.do(ctx, t, req{method: http.MethodGet, path: "/ai_tasks?select=id&error_message=not.is.null", token: tok})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}

func TestMaxRows(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *postgresttest.Config) { c.MaxRows = 5 })
	ctx := t.Context()
	table, fn := uniqueName("pgt_rows"), uniqueName("pgt_series")
	exec(ctx, t, b.pool, fmt.Sprintf(`create table public.%[1]s (i int primary key);
insert into public.%[1]s select generate_series(1, 12);
grant select on public.%[1]s to anon;
create function public.%[2]s(n int) returns setof int language sql as $$ select generate_series(1, n) $$;
create function public.%[2]s_one() returns int language sql as $$ select 42 $$;
grant execute on function public.%[2]s(int), public.%[2]s_one() to anon`, table, fn),
		fmt.Sprintf("drop table public.%[1]s; drop function public.%[2]s(int); drop function public.%[2]s_one()", table, fn))

	rows := func(r *response) int {
		var v []json.RawMessage
		require.NoError(t, json.Unmarshal(r.body, &v), string(r.body))
		return len(v)
	}
	r := b.do(ctx, t, req{method: http.MethodGet, path: "/" + table + "?order=i"})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, 5, rows(r), "a read returns at most max-rows rows")
	require.Equal(t, "0-4/*", r.header.Get("Content-Range"))

	r = b.do(ctx, t, req{method: http.MethodGet, path: "/" + table + "?order=i&limit=100", prefer: "count=exact"})
	require.Equal(t, http.StatusPartialContent, r.status, string(r.body))
	require.Equal(t, 5, rows(r), "limit cannot raise max-rows")
	require.Equal(t, "0-4/12", r.header.Get("Content-Range"))

	r = b.do(ctx, t, req{method: http.MethodGet, path: "/" + table + "?order=i&limit=3"})
	require.Equal(t, 3, rows(r))

	r = b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, body: map[string]any{"n": 12}})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.JSONEq(t, `[1,2,3,4,5]`, string(r.body), "a set-returning RPC returns at most max-rows rows")

	r = b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn + "_one"})
	require.JSONEq(t, `42`, string(r.body))
}

// TestStatusTable checks the server's SQLSTATE/PGRST → HTTP table against
// PostgREST's (Error.hs), and the client's copy against the server's.
func TestStatusTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	tok := userToken(t, alice)
	fn := uniqueName("pgt_raise")
	exec(ctx, t, b.pool, fmt.Sprintf(`
create function public.%s(code text, msg text) returns void language plpgsql as $$
begin raise exception using errcode = code, message = msg; end $$;
grant execute on function public.%[1]s(text, text) to authenticated`, fn), "drop function public."+fn+"(text, text)")

	sqlCases := []struct {
		code, msg string
		status    int
	}{
		{"21000", "more than one row returned by a subquery used as an expression", 500},
		{"21000", "DELETE requires a WHERE clause", 400},
		{"57P01", "terminating connection due to administrator command", 503},
		{"57014", "canceling statement due to statement timeout", 500},
		{"22023", `role "ghost" does not exist`, 401},
		{"22023", "invalid parameter value", 400},
		{"42883", "function xmlagg(integer) does not exist", 406},
		{"42883", "function nope(integer) does not exist", 404},
		{"PT418", "teapot", 418},
		{"PT4AB", "unreadable", 500},
		{"53400", "configuration limit exceeded", 500},
		{"53300", "too many connections", 503},
		{"08006", "connection failure", 503},
		{"42501", "permission denied", 403},
		{"23505", "duplicate key", 409},
		{"25006", "read-only transaction", 405},
		{"P0001", "raised", 400},
		{"P0002", "no data found", 500},
		{"40001", "could not serialize", 500},
		{"28000", "invalid authorization", 403},
		{"22P02", "invalid input syntax", 400},
	}
	for _, c := range sqlCases {
		r := b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, token: tok, body: map[string]any{"code": c.code, "msg": c.msg}})
		require.Equal(t, c.status, r.status, "%s %q: %s", c.code, c.msg, r.body)
		got, _ := r.pgError(t)
		require.Equal(t, c.code, got)
		require.Equal(t, r.status, supabase.NewError(c.code, c.msg, "", "", true).StatusCode(),
			"the client's table disagrees with the server's for %s %q", c.code, c.msg)
	}

	ghost := userClaims(alice, time.Now().Add(time.Minute))
	ghost["role"] = uniqueName("ghost")
	pgrstCases := []struct {
		name string
		req  req
		code string
		want int
	}{
		{"PUTIsUnsupported", req{method: http.MethodPut, path: "/ai_tasks", token: tok, body: map[string]any{}}, "PGRST117", 405},
		{"NegativeLimit", req{method: http.MethodGet, path: "/ai_tasks?limit=-1", token: tok}, "PGRST103", 416},
		{"OffsetPastTheEnd", req{method: http.MethodGet, path: "/ai_tasks?offset=1000000", token: tok, prefer: "count=exact"}, "PGRST103", 416},
		{"GETOnRPC", req{method: http.MethodGet, path: "/rpc/" + fn, token: tok}, "PGRST101", 405},
		{"UnknownRole", req{method: http.MethodGet, path: "/ai_tasks", token: hsToken(t, ghost)}, "22023", 401},
		{"NoSuchFunction", req{method: http.MethodPost, path: "/rpc/" + fn + "_nope", token: tok}, "PGRST202", 404},
	}
	for _, c := range pgrstCases {
		r := b.do(ctx, t, c.req)
		require.Equal(t, c.want, r.status, "%s: %s", c.name, r.body)
		code, msg := r.pgError(t)
		require.Equal(t, c.code, code, c.name)
		require.Equal(t, r.status, supabase.NewError(code, msg, "", "", true).StatusCode(),
			"the client's table disagrees with the server's for %s", c.name)
	}
}

// TestRoleSettings: the role's settings (ALTER ROLE … SET) and the
// function's own statement_timeout bound each request, as PostgREST applies
// them; without them the sleeps would finish and answer 200.
func TestRoleSettings(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	ctx := t.Context()
	role, auth := uniqueName("pgt_slow"), uniqueName("pgt_authn")
	fn := uniqueName("pgt_sleep")
	exec(ctx, t, pool, fmt.Sprintf(`create role %[1]s nologin; alter role %[1]s set statement_timeout = '100ms';
create role %[2]s nologin; alter role %[2]s set lock_timeout = '50ms'; alter role %[2]s set statement_timeout = '5s';
grant usage on schema public to %[1]s;
create function public.%[3]s(s float8) returns int language sql as $$ select 1 from pg_sleep(s) $$;
create function public.%[3]s_hoisted(s float8) returns int language sql set statement_timeout = '100ms' as $$ select 1 from pg_sleep(s) $$;
create function public.%[3]s_lock(t text) returns int language plpgsql as $$
begin execute format('lock table %%s in access exclusive mode', t); return 1; end $$;
grant execute on function public.%[3]s(float8), public.%[3]s_hoisted(float8), public.%[3]s_lock(text) to public`, role, auth, fn),
		fmt.Sprintf(`drop function public.%[3]s(float8); drop function public.%[3]s_hoisted(float8); drop function public.%[3]s_lock(text);
drop owned by %[1]s; drop role %[1]s; drop role %[2]s`, role, auth, fn))
	b := setupWith(t, func(c *postgresttest.Config) {
		c.Roles = []string{"anon", "authenticated", "service_role", role}
		c.Authenticator = auth
	})
	alice := dbtest.CreateUser(ctx, t, b.pool)
	claims := userClaims(alice, time.Now().Add(time.Minute))
	claims["role"] = role
	slow := hsToken(t, claims)

	r := b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, token: slow, body: map[string]any{"s": 3}})
	require.Equal(t, http.StatusInternalServerError, r.status, string(r.body))
	code, _ := r.pgError(t)
	require.Equal(t, "57014", code, "the role's statement_timeout applies")

	// authenticated has no setting of its own here beyond what the cluster
	// gives it; the function's own statement_timeout is hoisted.
	r = b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn + "_hoisted", token: userToken(t, alice), body: map[string]any{"s": 3}})
	require.Equal(t, http.StatusInternalServerError, r.status, string(r.body))
	code, _ = r.pgError(t)
	require.Equal(t, "57014", code, "the function's statement_timeout is hoisted to the transaction")

	// The authenticator's lock_timeout applies to every role.
	table := uniqueName("pgt_locked")
	exec(ctx, t, pool, fmt.Sprintf("create table public.%s (i int); grant all on public.%[1]s to service_role", table), "drop table public."+table)
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Rollback(context.WithoutCancel(ctx)) })
	_, err = holder.Exec(ctx, "lock table public."+table+" in access exclusive mode")
	require.NoError(t, err)
	svc := hsToken(t, jwt.MapClaims{"role": "service_role", "exp": time.Now().Add(time.Minute).Unix()})
	r = b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn + "_lock", token: svc, body: map[string]any{"t": "public." + table}})
	require.Equal(t, http.StatusInternalServerError, r.status, string(r.body))
	code, _ = r.pgError(t)
	require.Equal(t, "55P03", code, "the authenticator's lock_timeout applies")
}

// TestGatewayKeys models the Supabase gateway's new-format API keys.
func TestGatewayKeys(t *testing.T) {
	t.Parallel()
	const publishable, secret = "sb_publishable_pgtTEST", "sb_secret_pgtTEST"
	b := setupWith(t, func(c *postgresttest.Config) {
		c.PublishableKeys = []string{publishable}
		c.SecretKeys = []string{secret}
	})
	ctx := t.Context()
	fn := uniqueName("pgt_whoami")
	exec(ctx, t, b.pool, fmt.Sprintf(`create function public.%s() returns text language sql as $$ select current_user::text $$;
grant execute on function public.%[1]s() to anon, authenticated, service_role`, fn), "drop function public."+fn+"()")
	alice := dbtest.CreateUser(ctx, t, b.pool)

	tests := []struct {
		name         string
		givenKey     string
		givenBearer  string
		expectStatus int
		expectRole   string
	}{
		{"PublishableAlone", publishable, "", 200, "anon"},
		{"PublishableAsBearerToo", publishable, publishable, 200, "anon"},
		{"SecretAlone", secret, "", 200, "service_role"},
		{"SecretAsBearerToo", secret, secret, 200, "service_role"},
		{"UserJWTWithPublishable", publishable, userToken(t, alice), 200, "authenticated"},
		{"SecretBearerBehindPublishable", publishable, secret, 401, ""},
		{"PublishableBearerBehindSecret", secret, publishable, 401, ""},
		{"OpaqueBearer", secret, "opaque-token", 401, ""},
		{"UnknownKey", "sb_secret_other", "", 401, ""},
		{"NoKey", "", "", 401, ""},
	}
	for _, tt := range tests {
		r := b.do(ctx, t, req{method: http.MethodPost, path: "/rpc/" + fn, apikey: tt.givenKey, noKey: tt.givenKey == "", token: tt.givenBearer})
		require.Equal(t, tt.expectStatus, r.status, "%s: %s", tt.name, r.body)
		if tt.expectRole != "" {
			require.JSONEq(t, `"`+tt.expectRole+`"`, string(r.body), tt.name)
		}
	}

	// The client sends a new key in apikey only and reaches service_role.
	c, err := supabase.New(&supabase.Config{URL: b.url[:len(b.url)-len("/rest/v1")], APIKey: secret})
	require.NoError(t, err)
	var who string
	require.NoError(t, c.RPC(ctx, supabase.ServiceIdentity(secret), fn, nil, &who))
	require.Equal(t, "service_role", who)
}
