package supabase

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// warmClaims are the claims of the warm-up calls: a signed-in user who owns
// nothing (no account has the nil id), so the engine's functions find no
// rows; the transaction is rolled back in any case.
const warmClaims = `{"role":"authenticated","sub":"00000000-0000-0000-0000-000000000000","aud":"authenticated"}`

// warmCalls are the engine's hot calls, each made once per connection by
// Warm, with the argument names the engine calls them with (so each is the
// statement the engine's calls send: the same text, prepared once per
// connection by pgx). Each is a no-op for a user who owns nothing: an empty
// id list, an empty group, a task that does not exist (PT404, rolled back
// to its savepoint). Any other error fails the warm-up, so a call that no
// longer matches its function is noticed (TestWarm). The worker is
// 'warm-up': a claim by that worker that finds nothing still runs its
// remaining statements, on no rows, so that they are planned here
// (public.claim_tasks).
func warmCalls() []warmCall {
	const worker = "warm-up"
	return []warmCall{
		// Every way a claim walks: the owner's queue from its head
		// (p_task_ids null: the statement planned once per connection),
		// from a cursor (both of that walk's statements), and named tasks.
		// The keys are the engine's, which always sends the cursor's.
		{fn: "claim_tasks", args: map[string]any{
			"p_worker": worker, "p_lease_seconds": 300, "p_limit": 1, "p_task_ids": nil, "p_compact": true, "p_columns": true,
			"p_after_run_after": nil, "p_after_id": nil,
		}},
		{fn: "claim_tasks", args: map[string]any{
			"p_worker": worker, "p_lease_seconds": 300, "p_limit": 1, "p_task_ids": nil, "p_compact": true, "p_columns": true,
			"p_after_run_after": "-infinity", "p_after_id": "00000000-0000-0000-0000-000000000000",
		}},
		{fn: "claim_tasks", args: map[string]any{
			"p_worker": worker, "p_lease_seconds": 300, "p_limit": 1, "p_task_ids": []string{}, "p_compact": true, "p_columns": true,
			"p_after_run_after": nil, "p_after_id": nil,
		}},
		{fn: "complete_tasks", args: map[string]any{"p_worker": worker, "p_items": []any{}}},
		{
			fn: "complete_task",
			args: map[string]any{
				"p_task_id": "00000000-0000-0000-0000-000000000000", "p_worker": worker,
				"p_output": map[string]any{}, "p_usage": map[string]any{},
			},
			expected: "PT404",
		},
	}
}

// warmCall is one of warmCalls.
type warmCall struct {
	fn       string
	args     map[string]any
	expected string // the SQLSTATE the call ends with, if not success
}

// Warm opens up to n connections of the pool at once and makes the engine's
// hot calls once on each, as a user who owns nothing, in a transaction that
// is rolled back. A fresh PostgreSQL connection pays for its own start and
// for compiling and planning each function on its first call: tens of
// milliseconds each, and at a service's start every worker's first call
// paid them at once (the wake-up bench's p99 was the first half second
// after the start: docs/performance.md, "Wake-up"). The connections stay in
// the pool, idle, until its MaxConnIdleTime.
//
// Warm writes nothing. Its error is for the log: the engine works unwarmed.
func (d *Direct) Warm(ctx context.Context, n int) error {
	n = min(n, int(d.pool.Config().MaxConns))
	if n <= 0 {
		return nil
	}
	w, err := d.warmPlan(ctx)
	if err != nil {
		return err
	}
	conns := make([]*pgxpool.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := d.pool.Acquire(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("error opening a connection: %w", err)
				return
			}
			conns[i] = c
			errs[i] = errors.Join(w.warmConn(ctx, c.Conn()), w.keepHeap(ctx, c.Conn()))
		})
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			c.Release()
		}
	}
	return errors.Join(errs...)
}

// keepHeap has the connection's server process keep the memory its large
// calls free (orchable.keep_heap, which the engine's large completions call
// too): made here, at the start, so the first large completion on each
// connection does not map 8 MB afresh under load. In a transaction of its
// own that commits, as the warm-up's identity, because the function marks
// the process with a session setting that a rollback would undo. It writes
// nothing.
func (w *warmStatements) keepHeap(ctx context.Context, c *pgx.Conn) error {
	b := &pgx.Batch{}
	b.Queue(beginRW)
	b.Queue(w.setSQL, w.setParams...)
	b.Queue("select orchable.keep_heap()")
	b.Queue("commit")
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		_, _ = c.Exec(context.WithoutCancel(ctx), "rollback")
		return fmt.Errorf("error warming a connection: orchable.keep_heap: %w", err)
	}
	return nil
}

// warmStatements are the statements warmConn sends: the identity's
// settings, and each of warmCalls as the engine's RPC sends it.
type warmStatements struct {
	setSQL    string
	setParams []any
	calls     []warmStatement
}

type warmStatement struct {
	fn       string
	sql      string
	body     string
	expected string
}

// warmPlan looks up what warmConn sends, before any connection is held for
// the warm-up (the lookups use the pool).
func (d *Direct) warmPlan(ctx context.Context) (*warmStatements, error) {
	w := &warmStatements{}
	for i, call := range warmCalls() {
		body, keys, err := argsObject(call.args)
		if err != nil {
			return nil, fmt.Errorf("error warming a connection: %w", err)
		}
		sig, _, err := d.signature(ctx, call.fn, keys)
		if err != nil {
			return nil, fmt.Errorf("error warming a connection: %s: %w", call.fn, err)
		}
		if i == 0 {
			_, w.setSQL, w.setParams, err = d.identitySQL(ctx, Identity{Claims: []byte(warmClaims)}, "POST", "/rpc/"+call.fn, sig.Hoisted)
			if err != nil {
				return nil, fmt.Errorf("error warming a connection: %w", err)
			}
		}
		w.calls = append(w.calls, warmStatement{fn: call.fn, sql: sig.CallSQL(keys), body: string(body), expected: call.expected})
	}
	return w, nil
}

// warmConn makes warmCalls on one connection, each under a savepoint, in a
// transaction as warmClaims that is rolled back. It sends the statements a
// call of the engine sends (RPC): the transaction's start, the identity's
// settings and each function's call.
func (w *warmStatements) warmConn(ctx context.Context, c *pgx.Conn) error {
	// As RPC sends them: one batch, so that pgx prepares the transaction's
	// start as well (a statement without arguments outside a batch goes by
	// the simple protocol). Its commit is prepared, not run.
	b := &pgx.Batch{}
	b.Queue(beginRW)
	b.Queue(w.setSQL, w.setParams...)
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("error warming a connection: %w", err)
	}
	defer func() { _, _ = c.Exec(context.WithoutCancel(ctx), "rollback") }()
	// Only where pgx prepares statements itself: through a transaction
	// pooler (ParsePoolConfig turns the statement cache off) a named
	// statement would live on one server connection while the client
	// connection's later commits, which pgx then sends by that name, run on
	// others ("prepared statement … does not exist": every commit of the
	// connection failed; TestWarmThroughATransactionPoolerPreparesNothing).
	if c.Config().StatementCacheCapacity > 0 {
		if _, err := c.Prepare(ctx, "commit", "commit"); err != nil {
			return fmt.Errorf("error warming a connection: %w", err)
		}
	}
	for _, call := range w.calls {
		if _, err := c.Exec(ctx, "savepoint warm"); err != nil {
			return fmt.Errorf("error warming a connection: %w", err)
		}
		var result []byte
		err := c.QueryRow(ctx, call.sql, call.body).Scan(&result)
		var pgErr *pgconn.PgError
		switch {
		case err == nil && call.expected == "":
		case errors.As(err, &pgErr) && pgErr.Code == call.expected:
		case err == nil:
			return fmt.Errorf("error warming a connection: %s: want %s, got success", call.fn, call.expected)
		default:
			return fmt.Errorf("error warming a connection: %s: want %s, got: %w", call.fn, cmp.Or(call.expected, "success"), err)
		}
		if _, err := c.Exec(ctx, "rollback to savepoint warm"); err != nil {
			return fmt.Errorf("error warming a connection: %w", err)
		}
	}
	return nil
}
