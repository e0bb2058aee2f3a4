package supabase_test

import (
	"context"
	"net"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// Warm opens the pool's connections (no more than MaxConns) and makes the
// engine's calls on each, writing nothing: another user's runnable task is
// neither claimed nor changed.
func TestWarm(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	admin := testPool(t)
	user := dbtest.CreateUser(ctx, t, admin)
	var task uuid.UUID
	require.NoError(t, admin.QueryRow(ctx, "insert into public.ai_tasks (user_id, status, input_data) values ($1, 'plan', '{}') returning id", user).Scan(&task))
	cfg, err := pgxpool.ParseConfig(dbtest.URL(t))
	require.NoError(t, err)
	cfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.Zero(t, pool.Stat().TotalConns())

	require.NoError(t, supabase.NewDirect(pool, nil).Warm(ctx, 10))
	require.EqualValues(t, 3, pool.Stat().TotalConns(), "every connection up to MaxConns opened")
	require.EqualValues(t, 3, pool.Stat().IdleConns(), "and given back")
	var status string
	var attempts int
	require.NoError(t, admin.QueryRow(ctx, "select status::text, attempts from public.ai_tasks where id = $1", task).Scan(&status, &attempts))
	require.Equal(t, "plan", status)
	require.Zero(t, attempts)
}

// A warm-up that cannot make its calls says so: a database without the
// engine's functions, and no database at all.
func TestWarmFails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("NoEngineFunctions", func(t *testing.T) {
		t.Parallel()
		admin, err := pgx.Connect(ctx, dbtest.AdminURL())
		require.NoError(t, err)
		name := "orchable_warm_" + uuid.NewString()[:8]
		_, err = admin.Exec(ctx, "create database "+name)
		require.NoError(t, err)
		require.NoError(t, admin.Close(ctx))
		cfg, err := pgxpool.ParseConfig(dbtest.AdminURL())
		require.NoError(t, err)
		cfg.ConnConfig.Database = name
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() {
			pool.Close()
			ctx := context.WithoutCancel(ctx)
			if admin, err := pgx.Connect(ctx, dbtest.AdminURL()); err == nil {
				_, _ = admin.Exec(ctx, "drop database if exists "+name+" with (force)")
				_ = admin.Close(ctx)
			}
		})
		require.ErrorContains(t, supabase.NewDirect(pool, nil).Warm(ctx, 2), "error warming a connection")
	})
	t.Run("NoDatabase", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // nothing listens there now
		pool, err := pgxpool.New(ctx, "postgres://postgres@"+addr+"/postgres?connect_timeout=5")
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		require.ErrorContains(t, supabase.NewDirect(pool, nil).Warm(ctx, 2), "error opening a connection")
	})
}
