package migrations_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// Batch progress under concurrent task updates: every task moves
// plan → processing → completed/failed in its own transaction, 16 writers
// at once in ONE batch. Task transactions never update the batch row (they
// append deltas), so they do not serialise on it; after a fold the counters
// equal a recount exactly. The test prints the update rate it saw.
func TestBatchCountersUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	const tasks, writers = 2000, 16

	var batch uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.task_batches (name, created_by, total_tasks) values ('load', $1, 999) returning id", user).Scan(&batch))
	rows, err := pool.Query(ctx, `insert into public.ai_tasks (user_id, batch_id) select $1, $2 from generate_series(1, $3) returning id`, user, batch, tasks)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)

	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for i := range work {
				status := "completed"
				if i%10 == 0 {
					status = "failed"
				}
				for _, s := range []string{"processing", status} {
					tx, err := pool.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					dbtest.AsUser(ctx, t, tx, user)
					if _, err := tx.Exec(ctx, "update public.ai_tasks set status = $2 where id = $1", ids[i], s); err != nil {
						_ = tx.Rollback(ctx)
						errs <- err
						return
					}
					if err := tx.Commit(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	for i := range ids {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	elapsed := time.Since(start)

	dbtest.FoldCounters(ctx, t, pool)
	var total, pending, processing, completed, failed int
	var status string
	require.NoError(t, pool.QueryRow(ctx, `select total_tasks, pending_tasks, processing_tasks, completed_tasks, failed_tasks, status
		from public.task_batches where id = $1`, batch).Scan(&total, &pending, &processing, &completed, &failed, &status))
	var rc, rf int
	require.NoError(t, pool.QueryRow(ctx, `select count(*) filter (where status = 'completed'), count(*) filter (where status = 'failed')
		from public.ai_tasks where batch_id = $1`, batch).Scan(&rc, &rf))
	t.Logf("batch counters: %d status updates by %d writers in one batch in %s = %.0f updates/s; after fold: total %d (client wrote 999, ignored), completed %d (recount %d), failed %d (recount %d), status %s",
		2*tasks, writers, elapsed.Round(time.Millisecond), float64(2*tasks)/elapsed.Seconds(), total, completed, rc, failed, rf, status)
	require.Equal(t, tasks, total)
	require.Equal(t, rc, completed)
	require.Equal(t, rf, failed)
	require.Zero(t, pending)
	require.Zero(t, processing)
	require.Equal(t, "failed", status) // some tasks failed

	// Deleting tasks keeps counters exact too.
	_, err = pool.Exec(ctx, "delete from public.ai_tasks where id = any($1)", ids[:100])
	require.NoError(t, err)
	dbtest.FoldCounters(ctx, t, pool)
	require.NoError(t, pool.QueryRow(ctx, "select total_tasks from public.task_batches where id = $1", batch).Scan(&total))
	require.Equal(t, tasks-100, total)
}

// get_batch_progress and pause_batch decide on the tasks' exact counts, not
// on the folded task_batches row: with the row deliberately left behind the
// tasks (as between two folds), progress reports the status and completed_at
// the tasks imply, and pause_batch refuses a batch the tasks have finished and
// pauses one they have reopened.
func TestBatchStateFromExactCounts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	var batch uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.task_batches (name, created_by, status) values ('exact', $1, 'processing') returning id", user).Scan(&batch))
	var ids []uuid.UUID
	rows, err := pool.Query(ctx, `insert into public.ai_tasks (user_id, batch_id, status, completed_at)
		select $1, $2, 'completed', timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => i) from generate_series(1, 3) i
		returning id`, user, batch)
	require.NoError(t, err)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	require.Len(t, ids, 3)

	// lag folds what is pending, then writes a stale row over it, as if the
	// tasks had moved after the last fold.
	lag := func(status string, completedAt *time.Time) {
		t.Helper()
		dbtest.FoldCounters(ctx, t, pool)
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, "select set_config('orchable.folding', 'on', true)")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `update public.task_batches set status = $2, completed_at = $3, total_tasks = 0,
			pending_tasks = 0, processing_tasks = 0, completed_tasks = 0, failed_tasks = 0 where id = $1`, batch, status, completedAt)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
	}
	asUser := func(sql string) (map[string]any, error) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		dbtest.AsUser(ctx, t, tx, user)
		var out map[string]any
		if err := tx.QueryRow(ctx, sql, batch).Scan(&out); err != nil {
			return nil, err
		}
		return out, tx.Commit(ctx)
	}

	// Finished by its tasks, "pending" in the row.
	lag("pending", nil)
	p, err := asUser("select public.get_batch_progress($1)")
	require.NoError(t, err)
	require.EqualValues(t, 3, p["completed"])
	require.EqualValues(t, 0, p["pending"])
	require.Equal(t, "completed", p["status"])
	at, err := time.Parse(time.RFC3339, p["completed_at"].(string))
	require.NoError(t, err)
	require.True(t, at.Equal(time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)), "completed_at %v is the last task's", at)
	_, err = asUser("select public.pause_batch($1)")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "PT409", pgErr.Code)
	require.Contains(t, pgErr.Message, "is completed")

	// Reopened by a retry, "completed" in the row.
	_, err = pool.Exec(ctx, "update public.ai_tasks set status = 'plan', completed_at = null where id = $1", ids[0])
	require.NoError(t, err)
	now := time.Now()
	lag("completed", &now)
	p, err = asUser("select public.get_batch_progress($1)")
	require.NoError(t, err)
	require.EqualValues(t, 1, p["pending"])
	require.Equal(t, "processing", p["status"])
	require.Nil(t, p["completed_at"])
	p, err = asUser("select public.pause_batch($1)")
	require.NoError(t, err)
	require.Equal(t, "paused", p["status"])
	p, err = asUser("select public.get_batch_progress($1)")
	require.NoError(t, err)
	require.Equal(t, "paused", p["status"])
	require.Nil(t, p["completed_at"])

	// A failed task makes a finished batch failed.
	_, err = pool.Exec(ctx, "update public.ai_tasks set status = 'failed', completed_at = now() where id = $1", ids[0])
	require.NoError(t, err)
	lag("processing", nil)
	p, err = asUser("select public.get_batch_progress($1)")
	require.NoError(t, err)
	require.Equal(t, "failed", p["status"])
	require.NotNil(t, p["completed_at"])
}
