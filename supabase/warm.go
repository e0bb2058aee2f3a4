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
// Warm. Each is a no-op for a user who owns nothing: an empty id list, an
// empty group, a task that does not exist (PT404, rolled back to its
// savepoint). Any other error fails the warm-up, so a call that no longer
// matches its function is noticed (TestWarm).
func warmCalls() []warmCall {
	return []warmCall{
		// Both ways a claim walks: the owner's queue (p_task_ids null: the
		// statement planned once per connection) and named tasks.
		{sql: "select public.claim_tasks('warm-up', 300, 1, null, true)"},
		{sql: "select public.claim_tasks('warm-up', 300, 1, '{}'::uuid[], true)"},
		{sql: "select public.complete_tasks('warm-up', '[]'::jsonb)"},
		{
			sql:      "select public.complete_task('00000000-0000-0000-0000-000000000000'::uuid, 'warm-up', '{}'::jsonb, '{}'::jsonb)",
			expected: "PT404",
		},
	}
}

// warmCall is one of warmCalls.
type warmCall struct {
	sql      string
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
			errs[i] = warmConn(ctx, c.Conn())
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

// warmConn makes warmCalls on one connection, each under a savepoint, in a
// transaction as warmClaims that is rolled back.
func warmConn(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error warming a connection: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)", warmClaims); err != nil {
		return fmt.Errorf("error warming a connection: %w", err)
	}
	for _, call := range warmCalls() {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return fmt.Errorf("error warming a connection: %w", err)
		}
		_, err = sp.Exec(ctx, call.sql)
		var pgErr *pgconn.PgError
		switch {
		case err == nil && call.expected == "":
		case errors.As(err, &pgErr) && pgErr.Code == call.expected:
		case err == nil:
			return fmt.Errorf("error warming a connection: %s: want %s, got success", call.sql, call.expected)
		default:
			return fmt.Errorf("error warming a connection: %s: want %s, got: %w", call.sql, cmp.Or(call.expected, "success"), err)
		}
		if err := sp.Rollback(ctx); err != nil {
			return fmt.Errorf("error warming a connection: %w", err)
		}
	}
	return nil
}
