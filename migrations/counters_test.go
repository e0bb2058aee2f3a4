package migrations_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
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

	var folded int
	require.NoError(t, pool.QueryRow(ctx, "select public.fold_batch_counters()").Scan(&folded))
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
	_, err = pool.Exec(ctx, "select public.fold_batch_counters()")
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, "select total_tasks from public.task_batches where id = $1", batch).Scan(&total))
	require.Equal(t, tasks-100, total)
}
