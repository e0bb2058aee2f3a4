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
	pool := smallPool(ctx, t, 3)
	require.Zero(t, pool.Stat().TotalConns())

	require.NoError(t, supabase.NewDirect(pool, nil).Warm(ctx, 10))
	require.EqualValues(t, 3, pool.Stat().TotalConns(), "every connection up to MaxConns opened")
	require.EqualValues(t, 3, pool.Stat().IdleConns(), "and given back")
	// Each connection's server process keeps the memory its large calls
	// free (orchable.keep_heap), marked by a session setting that outlived
	// the warm-up's transactions.
	for i := range 3 {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		defer c.Release() // held, so the next Acquire takes another
		var kept string
		require.NoError(t, c.QueryRow(ctx, "select coalesce(current_setting('orchable.heap_kept', true), '')").Scan(&kept))
		require.Equal(t, "on", kept, "connection %d", i)
	}
	var status string
	var attempts int
	require.NoError(t, admin.QueryRow(ctx, "select status::text, attempts from public.ai_tasks where id = $1", task).Scan(&status, &attempts))
	require.Equal(t, "plan", status)
	require.Zero(t, attempts)
}

// Warm sends the statements the engine's calls send: after it, the engine's
// claim and completion (with the argument names the pipeline's runner and
// completer use) prepare nothing new on the connection, so their first call
// pays neither pgx's prepare round trip nor the server's parse of the
// statement.
func TestWarmPreparesTheEngineStatements(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	admin := testPool(t)
	user := dbtest.CreateUser(ctx, t, admin)
	_, err := admin.Exec(ctx, "insert into public.ai_tasks (user_id, status, input_data) values ($1, 'plan', '{}')", user)
	require.NoError(t, err)
	pool := smallPool(ctx, t, 1)
	direct := supabase.NewDirect(pool, nil)
	require.NoError(t, direct.Warm(ctx, 1))
	prepared := func() []string {
		t.Helper()
		rows, err := pool.Query(ctx, "select statement from pg_prepared_statements where statement not like '%pg_prepared_statements%' order by statement")
		require.NoError(t, err)
		s, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return s
	}
	before := prepared()
	require.NotEmpty(t, before)

	id := supabase.Identity{Claims: []byte(`{"role":"authenticated","sub":"` + user.String() + `","aud":"authenticated"}`)}
	var claimed struct {
		Tasks struct {
			ID []uuid.UUID `json:"id"`
		} `json:"tasks"`
	}
	require.NoError(t, direct.RPC(ctx, id, "claim_tasks",
		map[string]any{
			"p_worker": "w", "p_lease_seconds": 300, "p_limit": 10, "p_task_ids": nil, "p_compact": true,
			"p_after_run_after": nil, "p_after_id": nil, "p_columns": true,
		}, &claimed))
	require.Len(t, claimed.Tasks.ID, 1)
	var done []map[string]any
	require.NoError(t, direct.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "w", "p_items": []map[string]any{
		{"task_id": claimed.Tasks.ID[0], "output": map[string]any{"a": 1}, "usage": map[string]any{}},
	}}, &done))
	require.Equal(t, "completed", done[0]["status"])
	require.Equal(t, before, prepared(), "statements prepared by the engine's first calls after Warm")
}

// smallPool is a pool of at most n connections to the package's test
// database, none open yet, closed when the test ends.
func smallPool(ctx context.Context, t *testing.T, n int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.URL(t))
	require.NoError(t, err)
	cfg.MaxConns = n
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
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
		require.ErrorContains(t, supabase.NewDirect(pool, nil).Warm(ctx, 2), "failed to connect")
	})
}

// Through a transaction pooler every statement is unnamed (ParsePoolConfig
// turns pgx's statement cache off), and Warm must not name one either: a
// named statement lives on one server connection, while the client
// connection's later transactions run on others, where pgx would send their
// commit by that name and fail ("prepared statement … does not exist": the
// transaction-pooler end-to-end test failed that way when Warm prepared the
// commit). Here the pool reaches PostgreSQL directly, configured as for a
// transaction pooler.
func TestWarmThroughATransactionPoolerPreparesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := supabase.ParsePoolConfig(dbtest.URL(t), supabase.PoolerTransaction)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, supabase.NewDirect(pool, nil).Warm(ctx, 1))
	var prepared []string
	rows, err := pool.Query(ctx, "select statement from pg_prepared_statements")
	require.NoError(t, err)
	prepared, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, prepared, "statements Warm left prepared on a connection of a transaction pooler")
}
