package supabase_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// testSecret signs the tokens the test PostgREST server accepts.
var testSecret = []byte("super-secret-jwt-token-with-at-least-32-characters-long") //nolint:gochecknoglobals // test constant

// testFunctionsSQL are test-only functions created in this package's
// database, as the owner, once.
const testFunctionsSQL = `
create or replace function public.t_scalar(p_a int, p_b int default 1) returns int
  language sql immutable as $$ select p_a + p_b $$;
create or replace function public.t_text(p_s text) returns text
  language sql immutable as $$ select p_s $$;
create or replace function public.t_jsonb(p_obj jsonb, p_ids uuid[] default null) returns jsonb
  language sql stable as $$
  select jsonb_build_object('obj', p_obj, 'n', coalesce(cardinality(p_ids), 0),
    'uid', auth.uid(), 'role', current_user, 'method', current_setting('request.method', true),
    'path', current_setting('request.path', true))
$$;
create or replace function public.t_setof(p_n int) returns setof int
  language sql immutable as $$ select generate_series(1, p_n) $$;
create or replace function public.t_table(p_n int) returns table (i int, s text)
  language sql immutable as $$ select g, 'row' || g from generate_series(1, p_n) g $$;
create or replace function public.t_void(p_s text) returns void
  language plpgsql volatile as $$ begin perform p_s; end $$;
create or replace function public.t_noargs() returns int
  language sql stable as $$ select 42 $$;
create or replace function public.t_raise(p_code text, p_msg text) returns void
  language plpgsql volatile as $$
begin
  raise exception using errcode = p_code, message = p_msg, detail = 'the details', hint = 'the hint';
end $$;
create or replace function public.t_stable_write() returns int
  language sql stable as $$ update public.ai_tasks set retry_count = retry_count where false; select 1 $$;
-- claim like claim_tasks: conditional plan → processing under RLS.
create or replace function public.t_claim(p_worker text, p_limit int) returns setof uuid
  language sql volatile as $$
  with c as (select id from public.ai_tasks where status = 'plan'
             order by run_after, id limit p_limit for update skip locked)
  update public.ai_tasks t set status = 'processing', locked_by = p_worker,
    locked_until = now() + interval '1 minute', attempts = t.attempts + 1
  from c, (select set_config('orchable.engine', 'on', true)) e -- lease columns are engine state
  where t.id = c.id
  returning t.id
$$;
create or replace function public.t_complete(p_task_id uuid, p_worker text, p_output jsonb) returns jsonb
  language sql volatile as $$
  update public.ai_tasks set status = 'completed', output_data = p_output, completed_at = now()
  where id = p_task_id and status = 'processing' and locked_by = p_worker
  returning jsonb_build_object('id', id, 'status', status)
$$;
-- The migrations revoke EXECUTE from PUBLIC on functions created later
-- (default privileges); test functions are granted explicitly, by name:
-- "on all functions in schema public" races with the tests that create and
-- drop functions of their own (cache lookup failed for function …).
grant execute on function public.t_scalar, public.t_text, public.t_jsonb, public.t_setof, public.t_table, public.t_void, public.t_noargs, public.t_raise, public.t_stable_write, public.t_claim, public.t_complete
  to anon, authenticated, service_role;
`

var fnOnce sync.Once //nolint:gochecknoglobals // create the test functions once per package

// testPool returns the package database with the test functions in place.
func testPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool := dbtest.Pool(tb)
	var err error
	fnOnce.Do(func() {
		_, err = pool.Exec(context.Background(), testFunctionsSQL)
	})
	require.NoError(tb, err)
	return pool
}

// userIdentity mints an HS256 Supabase-shaped token for userID.
func userIdentity(tb testing.TB, userID uuid.UUID) supabase.Identity {
	tb.Helper()
	claims := dbtest.UserClaims(userID)
	claims["exp"] = time.Now().Add(5 * time.Minute).Unix()
	claims["iat"] = time.Now().Unix()
	claims["iss"] = "http://127.0.0.1/auth/v1"
	return identityFor(tb, claims)
}

func identityFor(tb testing.TB, claims map[string]any) supabase.Identity {
	tb.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(testSecret)
	require.NoError(tb, err)
	raw, err := json.Marshal(claims)
	require.NoError(tb, err)
	return supabase.Identity{Token: tok, Claims: raw}
}

// anonIdentity is a request with the anon key as bearer, as supabase-js
// sends it without a session.
func anonIdentity(tb testing.TB) supabase.Identity {
	tb.Helper()
	return identityFor(tb, map[string]any{"role": "anon", "iss": "supabase", "exp": time.Now().Add(time.Hour).Unix()})
}

// serviceIdentity acts as service_role.
func serviceIdentity(tb testing.TB) supabase.Identity {
	tb.Helper()
	return identityFor(tb, map[string]any{"role": "service_role", "iss": "supabase", "exp": time.Now().Add(time.Hour).Unix()})
}
