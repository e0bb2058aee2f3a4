package supabase_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

// TestDirectAppliesRoleSettings: the direct transport bounds each call with
// the authenticator's settings and the function's own statement_timeout, as
// PostgREST does on a Supabase project; without them the sleeps finish.
func TestDirectAppliesRoleSettings(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	ctx := t.Context()
	auth := "st_authn_" + uuid.NewString()[:8]
	fn := "st_sleep_" + uuid.NewString()[:8]
	_, err := pool.Exec(ctx, fmt.Sprintf(`create role %[1]s nologin; alter role %[1]s set statement_timeout = '150ms';
create function public.%[2]s(s float8) returns int language sql as $$ select 1 from pg_sleep(s) $$;
create function public.%[2]s_hoisted(s float8) returns int language sql set statement_timeout = '150ms' as $$ select 1 from pg_sleep(s) $$;
create function public.%[2]s_twin(s float8) returns int language sql as $$ select 1 $$;
create function public.%[2]s_twin(s text) returns int language sql as $$ select 2 $$;
grant execute on function public.%[2]s(float8), public.%[2]s_hoisted(float8), public.%[2]s_twin(float8), public.%[2]s_twin(text) to service_role`, auth, fn))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), fmt.Sprintf(`drop function public.%[2]s(float8); drop function public.%[2]s_hoisted(float8);
drop function public.%[2]s_twin(float8); drop function public.%[2]s_twin(text); drop role %[1]s`, auth, fn))
	})
	svc := serviceIdentity(t)

	d := supabase.NewDirect(pool, &supabase.DirectConfig{Authenticator: auth})
	err = d.RPC(ctx, svc, fn, map[string]any{"s": 3}, nil)
	require.ErrorIs(t, err, supabase.ErrTimeout, "the authenticator's statement_timeout applies")

	plain := supabase.NewDirect(pool, &supabase.DirectConfig{Authenticator: "st_no_such_role"})
	require.ErrorIs(t, plain.RPC(ctx, svc, fn+"_hoisted", map[string]any{"s": 3}, nil), supabase.ErrTimeout,
		"the function's own statement_timeout is hoisted to the transaction")

	err = plain.RPC(ctx, svc, fn+"_twin", map[string]any{"s": 1}, nil)
	var se *supabase.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, "PGRST203", se.Code, "two overloads take these arguments: PostgREST picks neither")
	require.Equal(t, http.StatusMultipleChoices, se.StatusCode())
}

// TestClientNewKeys: an sb_ key travels in apikey only; legacy JWT
// identities keep their bearer.
func TestClientNewKeys(t *testing.T) {
	t.Parallel()
	type seen struct{ apikey, auth string }
	got := make(chan seen, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("apikey"), r.Header.Get("Authorization")}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(1)
	}))
	t.Cleanup(srv.Close)
	ctx := t.Context()

	const secret = "sb_secret_abc"
	c, err := supabase.New(&supabase.Config{URL: srv.URL, APIKey: secret})
	require.NoError(t, err)
	require.NoError(t, c.RPC(ctx, supabase.ServiceIdentity(secret), "f", nil, nil))
	require.Equal(t, seen{apikey: secret}, <-got, "no bearer for a secret key")

	require.Error(t, c.RPC(ctx, supabase.ServiceIdentity("sb_secret_other"), "f", nil, nil),
		"an sb_ token other than the client's key is refused before sending")

	legacy := serviceIdentity(t)
	c2, err := supabase.New(&supabase.Config{URL: srv.URL, APIKey: legacy.Token})
	require.NoError(t, err)
	require.NoError(t, c2.RPC(ctx, legacy, "f", nil, nil))
	require.Equal(t, seen{apikey: legacy.Token, auth: "Bearer " + legacy.Token}, <-got, "a legacy JWT key keeps its bearer")

	user := userIdentity(t, uuid.New())
	c3, err := supabase.New(&supabase.Config{URL: srv.URL, APIKey: "sb_publishable_xyz"})
	require.NoError(t, err)
	require.NoError(t, c3.RPC(ctx, user, "f", nil, nil))
	require.Equal(t, seen{apikey: "sb_publishable_xyz", auth: "Bearer " + user.Token}, <-got)
}
