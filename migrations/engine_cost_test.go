package migrations_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
)

// Where ai_tasks is published to Supabase Realtime, its replica identity is
// the unique index on (id, status): Realtime's payload.old carries the old
// status (docs/performance.md, "Design and profile") without the whole old
// row in WAL. Without the publication the table keeps the default identity.
func TestRealtimeReplicaIdentity(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	identity := func(t *testing.T, published bool) (string, []string) {
		t.Helper()
		pool := emptyDB(ctx, t)
		if published {
			_, err := pool.Exec(ctx, "create publication supabase_realtime")
			require.NoError(t, err)
		}
		_, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		var ident string
		require.NoError(t, pool.QueryRow(ctx, "select relreplident::text from pg_class where oid = 'public.ai_tasks'::regclass").Scan(&ident))
		rows, err := pool.Query(ctx, `select a.attname::text from pg_index i
			cross join lateral unnest(i.indkey) with ordinality k(attnum, ord)
			join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
			where i.indrelid = 'public.ai_tasks'::regclass and i.indisreplident order by k.ord`)
		require.NoError(t, err)
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return ident, cols
	}
	t.Run("Published", func(t *testing.T) {
		t.Parallel()
		ident, cols := identity(t, true)
		require.Equal(t, "i", ident)
		require.Equal(t, []string{"id", "status"}, cols)
	})
	t.Run("NotPublished", func(t *testing.T) {
		t.Parallel()
		ident, cols := identity(t, false)
		require.Equal(t, "d", ident)
		require.Empty(t, cols)
	})
}

// The wake-up trigger fires once for a task that becomes runnable again
// (here the front end's retry, which writes pending) and names its owner;
// an insert of a running task, a completion and an update that leaves a
// task runnable send nothing.
func TestNotifyOnRequeueOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	listener, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer listener.Release()
	_, err = listener.Exec(ctx, "listen orchable_wakeup")
	defer func() { _, _ = listener.Exec(context.WithoutCancel(ctx), "unlisten *") }()
	require.NoError(t, err)

	// Another test's commits may notify on this database too: only payloads
	// naming this test's user count, up to a sentinel sent after the write
	// (notifications arrive in commit order).
	mine := func() int {
		t.Helper()
		sentinel := "sentinel-" + uuid.NewString()
		_, err := pool.Exec(ctx, "select pg_notify('orchable_wakeup', $1)", sentinel)
		require.NoError(t, err)
		n := 0
		for {
			note, err := listener.Conn().WaitForNotification(ctx)
			require.NoError(t, err)
			switch note.Payload {
			case sentinel:
				return n
			case user.String():
				n++
			}
		}
	}
	asUser := func(sql string, args ...any) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		dbtest.AsUser(ctx, t, tx, user)
		_, err = tx.Exec(ctx, sql, args...)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
	}
	var id uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.ai_tasks (user_id, status) values ($1, 'processing') returning id", user).Scan(&id))
	require.Zero(t, mine(), "an insert of a running task notified")

	asUser("update public.ai_tasks set status = 'completed' where id = $1", id)
	require.Zero(t, mine(), "a completion notified")
	asUser("update public.ai_tasks set status = 'pending' where id = $1", id) // stored as plan
	require.Equal(t, 1, mine(), "a requeue did not notify once")
	asUser("update public.ai_tasks set error_message = 'x' where id = $1", id) // still plan
	require.Zero(t, mine(), "an update of a runnable task notified")
}

// The sweeper asks due_tasks for due work every few seconds, across
// tenants: it must read about what it returns, not the queue or the
// history. One owner has a long history (completed tasks, newer than their
// due tasks) and a long queue in a batch; two other owners have a few due
// tasks, one of them in a paused batch, which is left out. Rows read (heap
// fetches and sequential reads of ai_tasks) are counted in the calling
// transaction. With the paused-batch test as NOT EXISTS it read the whole
// queue (5,009 rows).
func TestDueTasksReadsOnlyWhatItReturns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := emptyDB(ctx, t)
	_, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
	require.NoError(t, err)
	// The owner with the long history sorts first.
	big := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	small := uuid.MustParse("00000000-0000-4000-8000-000000000002")
	paused := uuid.MustParse("00000000-0000-4000-8000-000000000003")
	for _, u := range []uuid.UUID{big, small, paused} {
		_, err := pool.Exec(ctx, "insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)", u, u.String()+"@due.test")
		require.NoError(t, err)
	}
	const history, queue = 20000, 5000
	batch, pausedBatch := uuid.New(), uuid.New()
	_, err = pool.Exec(ctx, `insert into public.task_batches (id, name, created_by, status) values ($1, 'b', $2, 'processing'), ($3, 'p', $4, 'paused')`,
		batch, big, pausedBatch, paused)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, batch_id, stage_key, created_at, run_after)
		select 'completed', '{}', $1, $2, 'k', now(), now() from generate_series(1, $3::int)`, big, batch, history)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, batch_id, stage_key, created_at, run_after)
		select 'plan', '{}', $1, $2, 'k', now() - interval '1 day', now() - make_interval(secs => $3 - n) from generate_series(1, $3::int) n`, big, batch, queue)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, batch_id, stage_key)
		select 'plan'::public.ai_task_status, '{}'::jsonb, $1::uuid, null::uuid, 'k' from generate_series(1, 3)
		union all select 'plan', '{}', $2, $3, 'k' from generate_series(1, 3)`, small, paused, pausedBatch)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "analyze public.ai_tasks, public.task_batches")
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	read := func() int64 {
		var n int64
		require.NoError(t, tx.QueryRow(ctx, `select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
			from pg_stat_xact_all_tables where relid = 'public.ai_tasks'::regclass`).Scan(&n))
		return n
	}
	type due struct {
		ID     uuid.UUID `json:"id"`
		UserID uuid.UUID `json:"user_id"`
	}
	// Several calls: a SQL function's plan may change once it is cached.
	for range 6 {
		before := read()
		var got []due
		require.NoError(t, tx.QueryRow(ctx, "select public.due_tasks(500, 50)").Scan(&got))
		rows := read() - before
		perUser := map[uuid.UUID]int{}
		for _, d := range got {
			perUser[d.UserID]++
		}
		require.Equal(t, map[uuid.UUID]int{big: 50, small: 3}, perUser, "50 of the long queue, the other owner's 3, none of the paused batch")
		t.Logf("due_tasks returned %d tasks and read %d rows (history %d, queue %d)", len(got), rows, history, queue)
		require.Less(t, rows, int64(200), "rows of ai_tasks read by due_tasks")
	}
}
