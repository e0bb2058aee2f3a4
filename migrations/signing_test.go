package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
	"github.com/orchable/orchable/webhooks"
)

// hostedStandIns make a database look like a hosted Supabase project to the
// signing migration: a net schema with pg_net's http_post (recording each
// request) and Vault's decrypted_secrets. pgcrypto is the real extension.
const hostedStandIns = `
create schema net;
create table net.captured (id bigserial primary key, url text, body jsonb, headers jsonb);
create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
  headers jsonb default '{}', timeout_milliseconds int default 5000) returns bigint
language sql as $$ insert into net.captured (url, body, headers) values (url, body, headers) returning id $$;
create schema vault;
create table vault.decrypted_secrets (name text primary key, decrypted_secret text);`

// signingState reports whether the signing trigger and its function exist,
// and whether the function still logs per row.
func signingState(ctx context.Context, t *testing.T, pool *pgxpool.Pool) (trigger, function, logs bool) {
	t.Helper()
	require.NoError(t, pool.QueryRow(ctx, `select
		exists (select from pg_trigger where tgname = 'orchable_signed_webhook' and tgrelid = 'public.ai_tasks'::regclass),
		exists (select from pg_proc where proname = 'orchable_send_signed_webhook'),
		coalesce((select prosrc like '%raise log%' from pg_proc where proname = 'orchable_send_signed_webhook'), false)`).
		Scan(&trigger, &function, &logs))
	return trigger, function, logs
}

// TestSigningIsOptIn: on a database that has Vault, pg_net and pgcrypto
// (every hosted project), migrate installs no signing trigger and writes to
// ai_tasks post nothing; a project that had configured signing (both Vault
// secrets) before keeps its trigger, without the per-row log line.
func TestSigningIsOptIn(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("HostedProjectGetsNothing", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		_, err := pool.Exec(ctx, hostedStandIns)
		require.NoError(t, err)
		_, err = migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		trigger, function, _ := signingState(ctx, t, pool)
		require.False(t, trigger, "no signing trigger unless asked")
		require.False(t, function)

		user := dbtest.CreateUser(ctx, t, pool)
		_, err = pool.Exec(ctx, "insert into public.ai_tasks (user_id) values ($1)", user)
		require.NoError(t, err)
		var posted int
		require.NoError(t, pool.QueryRow(ctx, "select count(*) from net.captured").Scan(&posted))
		require.Zero(t, posted)

		// The operator asks: the opt-in path installs it (quiet while Vault
		// holds no secrets), and removes it again.
		ready, err := webhooks.InstallSigning(ctx, pool)
		require.NoError(t, err)
		require.False(t, ready)
		trigger, function, logs := signingState(ctx, t, pool)
		require.True(t, trigger)
		require.True(t, function)
		require.False(t, logs)
		require.NoError(t, webhooks.UninstallSigning(ctx, pool))
		trigger, function, _ = signingState(ctx, t, pool)
		require.False(t, trigger)
		require.False(t, function)
	})

	t.Run("ConfiguredBeforeIsKept", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		_, err := pool.Exec(ctx, hostedStandIns+`;
			insert into vault.decrypted_secrets values ('orchable_webhook_url', 'http://127.0.0.1:1/webhooks/supabase'),
			  ('orchable_webhook_signing_secret', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')`)
		require.NoError(t, err)
		all, err := migrations.All()
		require.NoError(t, err)
		// As a project migrated before the opt-in: up to and including 000900.
		var before []migrations.Migration
		for _, m := range all {
			if m.Version < "20261204001000" {
				before = append(before, m)
			}
		}
		_, err = migrations.ApplyForTest(ctx, pool, &migrations.Config{Local: true}, before)
		require.NoError(t, err)
		trigger, function, logs := signingState(ctx, t, pool)
		require.True(t, trigger)
		require.True(t, function)
		require.True(t, logs, "000900's function logs per row while unconfigured")

		_, err = migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		trigger, function, logs = signingState(ctx, t, pool)
		require.True(t, trigger, "an operator who configured signing keeps it")
		require.True(t, function)
		require.False(t, logs, "without the per-row log line")

		user := dbtest.CreateUser(ctx, t, pool)
		_, err = pool.Exec(ctx, "insert into public.ai_tasks (user_id) values ($1)", user)
		require.NoError(t, err)
		var posted int
		require.NoError(t, pool.QueryRow(ctx, "select count(*) from net.captured where body -> 'record' ->> 'user_id' = $1", user.String()).Scan(&posted))
		require.Equal(t, 1, posted, "the kept trigger still signs and sends")

		// Unconfigured later: the kept trigger sends nothing and no longer fails.
		_, err = pool.Exec(ctx, "delete from vault.decrypted_secrets")
		require.NoError(t, err)
		_, err = pool.Exec(ctx, "insert into public.ai_tasks (user_id) values ($1)", user)
		require.NoError(t, err)
		require.NoError(t, pool.QueryRow(ctx, "select count(*) from net.captured where body -> 'record' ->> 'user_id' = $1", user.String()).Scan(&posted))
		require.Equal(t, 1, posted)
	})
}
