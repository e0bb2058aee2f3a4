package supabase_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// countingConn counts network round trips: a write that follows a read (or
// the first write) starts a new one.
type countingConn struct {
	net.Conn

	trips    *atomic.Int64
	lastRead atomic.Bool
}

func (c *countingConn) Write(b []byte) (int, error) {
	if c.lastRead.Swap(false) {
		c.trips.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.lastRead.Store(true)
	return c.Conn.Read(b)
}

// countingPool is a one-connection pool whose round trips are counted.
func countingPool(t *testing.T) (*pgxpool.Pool, *atomic.Int64) {
	t.Helper()
	testPool(t)
	cfg, err := pgxpool.ParseConfig(dbtest.URL(t))
	require.NoError(t, err)
	cfg.MaxConns = 1
	trips := &atomic.Int64{}
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, trips: trips}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, trips
}

type claimed []struct {
	Task struct {
		ID uuid.UUID `json:"id"`
	} `json:"task"`
}

// TestDirectOneRoundTripPerCall: after warm-up (signature lookup and statement
// preparation), claim_tasks and complete_task cost one network round trip
// each, so a task costs two.
func TestDirectOneRoundTripPerCall(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, trips := countingPool(t)
	user := dbtest.CreateUser(ctx, t, testPool(t))
	const n = 20
	seedTasks(ctx, t, testPool(t), user, n+2, "rt")
	d := supabase.NewDirect(pool, nil)
	id := userIdentity(t, user)
	claimComplete := func() {
		var c claimed
		require.NoError(t, d.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "rt", "p_lease_seconds": 60, "p_limit": 1}, &c))
		require.Len(t, c, 1)
		require.NoError(t, d.RPC(ctx, id, "complete_task", map[string]any{
			"p_task_id": c[0].Task.ID, "p_worker": "rt", "p_output": map[string]any{"ok": true},
		}, nil))
	}
	claimComplete() // warm-up
	startTrips, startCounted := trips.Load(), d.RoundTrips()
	for range n {
		claimComplete()
	}
	require.LessOrEqual(t, trips.Load()-startTrips, int64(2*n), "network round trips for %d claim+complete", n)
	require.Equal(t, int64(2*n), d.RoundTrips()-startCounted)

	// A failing call costs one more round trip for the rollback and leaves
	// the connection clean.
	before := trips.Load()
	err := d.RPC(ctx, id, "complete_task", map[string]any{"p_task_id": uuid.New(), "p_worker": "rt", "p_output": map[string]any{}}, nil)
	require.ErrorIs(t, err, supabase.ErrNotFound)
	require.LessOrEqual(t, trips.Load()-before, int64(2))
	claimComplete()
}

// TestDirectTrace: the trace hook sees each call's path, the backend that
// runs it (the one whose pg_backend_pid() the call returns) and an RPC's
// arguments, and its done function runs once the call has ended.
func TestDirectTrace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _ := countingPool(t)
	user := dbtest.CreateUser(ctx, t, testPool(t))
	seedTasks(ctx, t, testPool(t), user, 1, "trace")
	type traced struct {
		path string
		pid  uint32
		args string
		done bool
	}
	var calls []*traced
	d := supabase.NewDirect(pool, &supabase.DirectConfig{Trace: func(path string, pid uint32, args string) func() {
		c := &traced{path: path, pid: pid, args: args}
		calls = append(calls, c)
		return func() { c.done = true }
	}})
	id := userIdentity(t, user)
	var c claimed
	require.NoError(t, d.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "trace", "p_lease_seconds": 60, "p_limit": 1}, &c))
	require.Len(t, c, 1)
	var rows []struct {
		ID uuid.UUID `json:"id"`
	}
	require.NoError(t, d.Select(ctx, id, "ai_tasks", supabase.Query{Columns: []string{"id"}, Filters: []supabase.Filter{{Column: "id", Op: supabase.OpEq, Value: c[0].Task.ID}}}, &rows))
	require.Len(t, rows, 1)

	var pid uint32
	require.NoError(t, pool.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid)) // the pool's one connection
	require.Len(t, calls, 2)
	require.Equal(t, "/rpc/claim_tasks", calls[0].path)
	require.Equal(t, pid, calls[0].pid)
	require.JSONEq(t, `{"p_worker": "trace", "p_lease_seconds": 60, "p_limit": 1}`, calls[0].args)
	require.True(t, calls[0].done)
	require.Equal(t, "/ai_tasks", calls[1].path)
	require.Equal(t, pid, calls[1].pid)
	require.Empty(t, calls[1].args, "a read's parameters are not arguments")
	require.True(t, calls[1].done)
}
