package migrations_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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

// The batch counters read a batch by its primary key, whatever the size of
// task_batches (a row per launch, kept): two owners with 5,000 batches
// each. orchable.count_moves, asked to count 200 tasks' moves in two of the
// caller's batches and one of the other owner's, reads the two; with a join
// it hashed all the caller's 5,000 once the array was long (10,000 rows
// read per call, checked). fold_batch_counters, with 6,000 deltas of 300
// batches, reads those 300; with the join alone it read the whole table.
// Each several times on one connection: a function's plans change once
// cached.
func TestBatchCountersReadOnlyTheirBatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, owner, other := twoTenants(ctx, t)
	const perOwner = 5000
	for _, u := range []uuid.UUID{owner, other} {
		_, err := pool.Exec(ctx, `insert into public.task_batches (name, status, created_by)
			select 'old ' || n, 'completed', $1 from generate_series(1, $2::int) n`, u, perOwner)
		require.NoError(t, err)
	}
	_, err := pool.Exec(ctx, "analyze public.task_batches")
	require.NoError(t, err)
	pick := func(u uuid.UUID, n int) []uuid.UUID {
		rows, err := pool.Query(ctx, "select id from public.task_batches where created_by = $1 order by id limit $2", u, n)
		require.NoError(t, err)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		require.NoError(t, err)
		return ids
	}
	mine, theirs := pick(owner, 300), pick(other, 1)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// call runs sql on conn as user (the test's own role for uuid.Nil) and
	// returns the rows of task_batches it read.
	call := func(user uuid.UUID, sql string, out any, args ...any) int64 {
		t.Helper()
		return callReadingTable(ctx, t, conn, "public.task_batches", user, sql, out, args...)
	}

	// 150 tasks in one batch, 49 in another, one in the other owner's.
	moved := make([]uuid.UUID, 0, 200)
	for i := range 199 {
		moved = append(moved, mine[min(i/150, 1)])
	}
	moved = append(moved, theirs[0])
	for i := range 8 {
		var n int
		rows := call(owner, "select orchable.count_moves($1, 'processing', 'completed')", &n, moved)
		t.Logf("count_moves call %d: 200 tasks' moves in 3 batches, %d delta rows, %d rows of task_batches read (%d batches)", i+1, n, rows, 2*perOwner)
		require.Equal(t, 2, n, "a delta per batch of the caller's, none for the other owner's")
		require.Less(t, rows, int64(10), "rows of task_batches read by count_moves")
	}
	var counted []struct {
		BatchID   uuid.UUID `json:"batch_id"`
		UserID    uuid.UUID `json:"user_id"`
		Completed int       `json:"d_completed"`
	}
	require.NoError(t, pool.QueryRow(ctx, `select json_agg(json_build_object('batch_id', batch_id, 'user_id', user_id, 'd_completed', sum))
		from (select batch_id, user_id, sum(d_completed) from public.task_batch_counter_deltas group by 1, 2 order by 3 desc) d`).Scan(&counted))
	require.Len(t, counted, 2)
	require.Equal(t, mine[0], counted[0].BatchID)
	require.Equal(t, owner, counted[0].UserID)
	require.Equal(t, 8*150, counted[0].Completed)
	require.Equal(t, mine[1], counted[1].BatchID)
	require.Equal(t, 8*49, counted[1].Completed)

	for i := range 6 {
		// 20 deltas for each of 300 batches; the statistics see them.
		_, err := pool.Exec(ctx, `insert into public.task_batch_counter_deltas (batch_id, user_id, d_total, d_pending)
			select b, $2, 1, 1 from unnest($1::uuid[]) b, generate_series(1, 20)`, mine, owner)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, "analyze public.task_batch_counter_deltas")
		require.NoError(t, err)
		var folded int
		rows := call(uuid.Nil, "select public.fold_batch_counters()", &folded)
		t.Logf("fold %d: %d batches folded, %d rows of task_batches read (%d batches)", i+1, folded, rows, 2*perOwner)
		require.Equal(t, len(mine), folded)
		require.LessOrEqual(t, rows, int64(2*len(mine)), "rows of task_batches read by fold_batch_counters")
	}
	var total, pending int
	require.NoError(t, pool.QueryRow(ctx, "select total_tasks, pending_tasks from public.task_batches where id = $1", mine[299]).Scan(&total, &pending))
	require.Equal(t, 6*20, total)
	require.Equal(t, 6*20, pending)
}

// Resetting a task (retry_failed_task, retry_all_failed_in_batch) reads its
// descendants and the barrier children of its scopes, not the owner's
// tasks: an owner with 20,000 finished tasks retries a failed root whose
// tree holds a child, a grandchild, and the merge child of their batch with
// a child of its own. The reset removes those four and nothing else
// (another tree of the batch, a merge of another batch) and reads a handful
// of rows (46,035 before: the owner's tasks, twice). A tree whose root was
// deleted (its tasks' root_task_id set to null) is still removed, and a
// failed leaf among its root's 2,000 split children reads itself, not its
// 2,000 siblings (as a walk of the root's whole tree did).
func TestRetryReadsOnlyTheTaskTree(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, owner, _ := twoTenants(ctx, t)
	const history = 20000
	batch, other, old := uuid.New(), uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `insert into public.task_batches (id, name, created_by, status) values ($1, 'b', $4, 'failed'), ($2, 'o', $4, 'completed'), ($3, 'old', $4, 'completed')`,
		batch, other, old, owner)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, batch_id, stage_key, idempotency_key)
		select 'completed', '{}', $1, $2, 'k', 'succ/' || n from generate_series(1, $3::int) n`, owner, old, history)
	require.NoError(t, err)
	ids := map[string]uuid.UUID{}
	for _, n := range []string{"root", "child", "grandchild", "merge", "mergechild", "root2", "child2", "othermerge", "orphan", "orphanchild"} {
		ids[n] = uuid.New()
	}
	path := func(names ...string) string {
		b, _ := json.Marshal(func() []string {
			out := []string{}
			for _, n := range names {
				out = append(out, ids[n].String())
			}
			return out
		}())
		return string(b)
	}
	// The pipeline s1 → s2 → s3 → m (N:1) → n: the reset of an s1 task
	// removes the merges whose stages (s3) are downstream of s1.
	tpl := "rt-" + uuid.NewString()[:8] + "-"
	_, err = pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id)
		select $1 || k, 'x', k, case when k = 'm' then '{"cardinality": "N:1"}' else '{}' end::jsonb,
		       case when nx is null then '[]'::jsonb else jsonb_build_array($1 || nx) end, $2
		from (values ('s1', 's2'), ('s2', 's3'), ('s3', 'm'), ('m', 'n'), ('n', null)) v(k, nx)`, tpl, owner)
	require.NoError(t, err)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
	require.NoError(t, err)
	type task struct {
		name, status, stage, parent, root, path, key, scope string
		batch                                               uuid.UUID
	}
	for _, k := range []task{
		{name: "root", status: "failed", stage: "s1", root: "root", path: path(), batch: batch},
		{name: "child", status: "completed", stage: "s2", parent: "root", root: "root", path: path("root"), batch: batch, key: "succ/c"},
		{name: "grandchild", status: "completed", stage: "s3", parent: "child", root: "root", path: path("root", "child"), batch: batch, key: "succ/g"},
		{name: "root2", status: "completed", stage: "s1", root: "root2", path: path(), batch: batch},
		{name: "child2", status: "completed", stage: "s2", parent: "root2", root: "root2", path: path("root2"), batch: batch, key: "succ/c2"},
		// The merge of the batch's s3 tasks, made by root2's grandchild's
		// completion (its tree is root2's), and its child.
		{name: "merge", status: "completed", stage: "m", parent: "child2", root: "root2", path: path("root2", "child2"), batch: batch, key: "barrier/m/batch:" + batch.String(), scope: "batch:" + batch.String()},
		{name: "mergechild", status: "plan", stage: "n", parent: "merge", root: "root2", path: path("root2", "child2", "merge"), batch: batch, key: "succ/mc"},
		{name: "othermerge", status: "completed", stage: "m", root: "othermerge", path: path(), batch: other, key: "barrier/m/batch:" + other.String(), scope: "batch:" + other.String()},
		{name: "orphan", status: "failed", stage: "s2", root: "", path: path("gone"), batch: other},
		{name: "orphanchild", status: "completed", stage: "s3", parent: "orphan", root: "", path: path("gone", "orphan"), batch: other, key: "succ/oc"},
	} {
		var extra any = map[string]any{}
		if k.scope != "" {
			extra = map[string]any{"_barrier": map[string]any{"scope": k.scope, "stages": []string{"s3"}}}
		}
		opt := func(n string) any {
			if n == "" {
				return nil
			}
			return ids[n]
		}
		key := any(nil)
		if k.key != "" {
			key = k.key
		}
		_, err := tx.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, batch_id, stage_key, parent_task_id, root_task_id, hierarchy_path,
			idempotency_key, extra, prompt_template_id)
			values ($1, $2, '{}', $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)`,
			ids[k.name], k.status, owner, k.batch, k.stage, opt(k.parent), opt(k.root), k.path, key, extra, tpl+k.stage)
		require.NoError(t, err, k.name)
	}
	// A root of the old batch with 2,000 split children, one of them failed.
	split, failedLeaf := uuid.New(), uuid.New()
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, batch_id, stage_key, root_task_id, hierarchy_path, prompt_template_id)
		values ($1, 'completed', '{}', $2, $3, 's1', $1, '[]', $4 || 's1')`, split, owner, old, tpl)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, batch_id, stage_key, parent_task_id, root_task_id, hierarchy_path,
			idempotency_key, prompt_template_id)
		select case when n = 1 then $5::uuid else gen_random_uuid() end, case when n = 1 then 'failed' else 'completed' end::public.ai_task_status,
		       '{}', $2, $3, 's2', $1::uuid, $1::uuid, jsonb_build_array($1::uuid::text), 'split/' || n, $4 || 's2'
		from generate_series(1, 2000) n`, split, owner, old, tpl, failedLeaf)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)

	exists := func() map[string]string {
		out := map[string]string{}
		for n, id := range ids {
			var status string
			if err := pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", id).Scan(&status); err == nil {
				out[n] = status
			}
		}
		return out
	}
	var nothing any
	rows := callReading(ctx, t, pool, owner, "select 1 from (select public.retry_failed_task($1)) x", &nothing, ids["root"])
	t.Logf("retry_failed_task read %d rows of ai_tasks (the owner has %d)", rows, history+10+2001)
	require.Less(t, rows, int64(50), "rows of ai_tasks read by a task's reset")
	require.Equal(t, map[string]string{
		"root": "plan", "root2": "completed", "child2": "completed", "othermerge": "completed",
		"orphan": "failed", "orphanchild": "completed",
	}, exists(), "the root reset; its child, grandchild, the batch's merge and the merge's child removed")

	var n int
	rows = callReading(ctx, t, pool, owner, "select public.retry_all_failed_in_batch($1)", &n, other)
	t.Logf("retry_all_failed_in_batch read %d rows of ai_tasks", rows)
	require.Equal(t, 1, n)
	require.Less(t, rows, int64(50), "rows of ai_tasks read by a batch's retry")
	got := exists()
	require.Equal(t, "plan", got["orphan"])
	require.NotContains(t, got, "orphanchild", "a descendant whose root was deleted is found through parent_task_id")

	rows = callReading(ctx, t, pool, owner, "select 1 from (select public.retry_failed_task($1)) x", &nothing, failedLeaf)
	t.Logf("retry_failed_task of one of 2,000 split children read %d rows of ai_tasks", rows)
	require.Less(t, rows, int64(50), "rows of ai_tasks read by a leaf's reset")
	var siblings int
	require.NoError(t, pool.QueryRow(ctx, "select count(*) filter (where status = 'completed'), count(*) filter (where id = $2 and status = 'plan') from public.ai_tasks where parent_task_id = $1",
		split, failedLeaf).Scan(&siblings, &n))
	require.Equal(t, 1999, siblings, "the leaf's siblings are left alone")
	require.Equal(t, 1, n, "the leaf is reset")
}

// due_tasks names every owner with due work before it names any owner's
// second task: ten owners with a hundred older due tasks each do not fill
// p_limit and hide an owner whose one task is newer (the sweeper wakes the
// owners it names; one it never names waits until the others' backlogs
// drain).
func TestDueTasksNamesEveryOwner(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _, late := twoTenants(ctx, t)
	_, err := pool.Exec(ctx, `with u as (
			insert into auth.users (id, aud, role, email)
			select gen_random_uuid(), 'authenticated', 'authenticated', 'backlog' || n || '@due.test' from generate_series(1, 10) n
			returning id)
		insert into public.ai_tasks (status, input_data, user_id, stage_key, run_after)
		select 'plan', '{}', u.id, 'k', now() - interval '1 hour' - make_interval(secs => n) from u, generate_series(1, 100) n`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, run_after) values ('plan', '{}', $1, 'k', now())`, late)
	require.NoError(t, err)
	var got []struct {
		ID     uuid.UUID `json:"id"`
		UserID uuid.UUID `json:"user_id"`
	}
	require.NoError(t, pool.QueryRow(ctx, "select public.due_tasks(1000, 100)").Scan(&got))
	owners := map[uuid.UUID]int{}
	for _, d := range got {
		owners[d.UserID]++
	}
	require.Len(t, got, 1000, "p_limit")
	require.Len(t, owners, 11, "every owner with due work is named")
	require.Equal(t, 1, owners[late], "the owner whose one task is the newest")
	// With fewer slots than owners, the owners whose first due task is
	// earliest come first.
	require.NoError(t, pool.QueryRow(ctx, "select public.due_tasks(10, 100)").Scan(&got))
	owners = map[uuid.UUID]int{}
	for _, d := range got {
		owners[d.UserID]++
	}
	require.Len(t, owners, 10, "ten owners, one task each")
	require.Zero(t, owners[late], "the newest owner's task is the eleventh")
}

// claim_tasks plans its walk of the owner's queue once per connection (a
// generic plan, with sorts disabled while it is planned), and that plan
// reads about what it claims for every tenant: whether it was made while
// the table's statistics described an almost empty queue that then grew
// to thousands of tasks, or while one heavy owner shared the table with a
// thousand light ones. A generic plan left to itself sees neither the
// owner's queue nor p_limit, and may sort the owner's whole queue.
// auto_explain prints the plan the function runs, so the test checks its
// shape as well as the rows it read.
func TestClaimPlanForEveryTenant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, heavy, light := twoTenants(ctx, t)
	queue := func(user uuid.UUID, n int) {
		t.Helper()
		_, err := pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, run_after)
			select 'plan', '{}', $1, 'k', now() - make_interval(secs => $2 - n) from generate_series(1, $2::int) n`, user, n)
		require.NoError(t, err)
	}
	analyze := func() {
		t.Helper()
		_, err := pool.Exec(ctx, "analyze public.ai_tasks, public.task_batches")
		require.NoError(t, err)
	}

	// One connection, so the function's cached plan is reused, with the
	// plans of nested statements printed as notices.
	var mu sync.Mutex
	var plans []string
	conn := explainingConn(ctx, t, pool, func(plan string) {
		if strings.Contains(plan, "for update of t skip locked") && !strings.Contains(plan, "any(p_task_ids)") {
			mu.Lock()
			plans = append(plans, plan)
			mu.Unlock()
		}
	}, "")

	type reads struct {
		claimed int
		rows    int64
		plan    string
	}
	claim := func(user uuid.UUID, limit int) reads {
		t.Helper()
		mu.Lock()
		plans = nil
		mu.Unlock()
		var out []json.RawMessage
		rows := callReading(ctx, t, conn, user, "select public.claim_tasks('plan-test', 300, $1)", &out, limit)
		r := reads{claimed: len(out), rows: rows}
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, plans, 1, "the plan of the claim's walk of the queue, printed by auto_explain")
		r.plan = plans[0]
		return r
	}
	check := func(name string, r reads, want int) {
		t.Helper()
		t.Logf("%s: claimed %d, read %d rows of ai_tasks", name, r.claimed, r.rows)
		require.Equal(t, want, r.claimed, name)
		require.Less(t, r.rows, int64(3*want+20), "%s: rows of ai_tasks read", name)
		require.Contains(t, r.plan, "ai_tasks_user_runnable_idx", "%s: the runnable index, walked in order", name)
		require.NotContains(t, r.plan, "Sort", "%s: no sort of the owner's queue", name)
	}

	// claimNamed claims limit of the owner's three last queued tasks by
	// name (p_task_ids, a caller's hint): the earliest due first, reading
	// about what it names, wherever they stand in the owner's queue.
	claimNamed := func(name string, user uuid.UUID, limit int) {
		t.Helper()
		var named []uuid.UUID
		q, err := pool.Query(ctx, "select id from public.ai_tasks where user_id = $1 and status = 'plan' order by run_after desc, id desc limit 3", user)
		require.NoError(t, err)
		named, err = pgx.CollectRows(q, pgx.RowTo[uuid.UUID])
		require.NoError(t, err)
		require.Len(t, named, 3, name)
		var out struct {
			Tasks []struct {
				ID uuid.UUID `json:"id"`
			} `json:"tasks"`
		}
		rows := callReading(ctx, t, conn, user, "select public.claim_tasks('plan-test', 300, $1, $2, true)", &out, limit, named)
		t.Logf("%s: claimed %d of 3 named, read %d rows of ai_tasks", name, len(out.Tasks), rows)
		got := make([]uuid.UUID, len(out.Tasks))
		for i, c := range out.Tasks {
			got[i] = c.ID
		}
		require.ElementsMatch(t, named[len(named)-limit:], got, "%s: the earliest due first", name)
		require.Less(t, rows, int64(20), "%s: rows of ai_tasks read", name)
	}

	// Planned while the table holds three tasks of one owner, then used
	// after another owner queued 5,000 (no new statistics: the cached plan
	// stays).
	queue(light, 3)
	analyze()
	check("planned on an almost empty table", claim(light, 1), 1)
	queue(heavy, 5000)
	for i := range 3 {
		check(fmt.Sprintf("heavy owner, plan made for an empty table, call %d", i), claim(heavy, 10), 10)
		claimNamed(fmt.Sprintf("heavy owner unseen by the statistics, named tasks, call %d", i), heavy, 2)
	}

	// One heavy owner among a thousand light ones, with statistics that say
	// so (ANALYZE invalidates the cached plan: it is planned again).
	addLightOwners(ctx, t, pool, 1000)
	analyze()
	for i := range 3 {
		check(fmt.Sprintf("heavy owner among light ones, call %d", i), claim(heavy, 10), 10)
		claimNamed(fmt.Sprintf("heavy owner among light ones, named tasks, call %d", i), heavy, 2)
	}
	check("light owner among light ones", claim(light, 10), 2)
}

// complete_tasks, complete_task and fail_task read about what they finish
// for every tenant, including an owner the statistics have not seen yet (a
// first large batch before the next ANALYZE), whose user_id the planner
// expects on one row: they find tasks by primary key or row version, never
// by walking the owner's user_id index (5,000 rows read by complete_tasks
// to complete 10, and complete_task's read growing with the task's place in
// the owner's index, before).
func TestCompletePlanForEveryTenant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, heavy, light := twoTenants(ctx, t)
	queue := func(user uuid.UUID, n int) {
		t.Helper()
		_, err := pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, run_after)
			select 'plan', '{}', $1, 'k', now() - make_interval(secs => $2 - n) from generate_series(1, $2::int) n`, user, n)
		require.NoError(t, err)
	}
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// run calls sql as the user in its own transaction and returns the rows
	// of ai_tasks the call read.
	run := func(user uuid.UUID, sql string, out any, args ...any) int64 {
		t.Helper()
		return callReading(ctx, t, conn, user, sql, out, args...)
	}
	cycle := func(name string, user uuid.UUID, limit int) {
		t.Helper()
		_, results, rows := claimAndComplete(ctx, t, conn, user, limit)
		t.Logf("%s: completed %d, read %d rows of ai_tasks", name, len(results), rows)
		for _, r := range results {
			require.Equal(t, "completed", r.Status, name)
		}
		require.Less(t, rows, int64(3*limit+20), "%s: rows of ai_tasks read completing %d", name, limit)
	}

	// single claims one task and completes it with complete_task (what the
	// service does when a completion finds no other to share its commit).
	single := func(name string, user uuid.UUID) {
		t.Helper()
		var out struct {
			Tasks []struct {
				ID uuid.UUID `json:"id"`
			} `json:"tasks"`
		}
		run(user, "select public.claim_tasks('plan-test', 300, 1, null, true)", &out)
		require.Len(t, out.Tasks, 1, name)
		var res struct {
			Status string `json:"status"`
		}
		rows := run(user, "select public.complete_task($1, 'plan-test', '{\"a\": 1}'::jsonb, '{}'::jsonb)", &res, out.Tasks[0].ID)
		t.Logf("%s: complete_task read %d rows of ai_tasks", name, rows)
		require.Equal(t, "completed", res.Status, name)
		require.Less(t, rows, int64(20), "%s: rows of ai_tasks read by complete_task", name)

		// Lease upkeep: a renewal, and a release (back to plan).
		run(user, "select public.claim_tasks('plan-test', 300, 1, null, true)", &out)
		require.Len(t, out.Tasks, 1, name)
		var renewed int
		rows = run(user, "select public.renew_leases($1, 'plan-test', 300)", &renewed, []uuid.UUID{out.Tasks[0].ID})
		t.Logf("%s: renew_leases read %d rows of ai_tasks", name, rows)
		require.Equal(t, 1, renewed, name)
		require.Less(t, rows, int64(20), "%s: rows of ai_tasks read by renew_leases", name)
		var released struct {
			Released bool `json:"released"`
		}
		rows = run(user, "select public.release_task($1, 'plan-test')", &released, out.Tasks[0].ID)
		t.Logf("%s: release_task read %d rows of ai_tasks", name, rows)
		require.True(t, released.Released, name)
		require.Less(t, rows, int64(20), "%s: rows of ai_tasks read by release_task", name)

		// And a failure, the other way a worker finishes a task.
		run(user, "select public.claim_tasks('plan-test', 300, 1, null, true)", &out)
		require.Len(t, out.Tasks, 1, name)
		rows = run(user, "select public.fail_task($1, 'plan-test', 'model error')", &res, out.Tasks[0].ID)
		t.Logf("%s: fail_task read %d rows of ai_tasks", name, rows)
		require.Equal(t, "failed", res.Status, name)
		require.Less(t, rows, int64(20), "%s: rows of ai_tasks read by fail_task", name)
	}

	queue(light, 6)
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)
	cycle("planned on an almost empty table", light, 1)
	single("planned on an almost empty table", light)
	queue(heavy, 5000)
	for i := range 3 {
		cycle(fmt.Sprintf("heavy owner unseen by the statistics, call %d", i), heavy, 10)
		single(fmt.Sprintf("heavy owner unseen by the statistics, call %d", i), heavy)
	}
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)
	for i := range 3 {
		cycle(fmt.Sprintf("heavy owner, analyzed, call %d", i), heavy, 10)
	}
	// One heavy owner among a thousand light ones, with statistics that say
	// so: the average owner has one task.
	addLightOwners(ctx, t, pool, 1000)
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)
	for i := range 3 {
		cycle(fmt.Sprintf("heavy owner among light ones, call %d", i), heavy, 10)
		single(fmt.Sprintf("heavy owner among light ones, call %d", i), heavy)
	}

	// A claim and its completion in one transaction (not a service call:
	// the leaves' UPDATE is then planned as any other statement) complete
	// the same way.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, heavy)
	var out struct {
		Tasks []struct {
			ID uuid.UUID `json:"id"`
		} `json:"tasks"`
	}
	require.NoError(t, tx.QueryRow(ctx, "select public.claim_tasks('plan-test', 300, 3, null, true)").Scan(&out))
	require.Len(t, out.Tasks, 3)
	items := make([]map[string]any, len(out.Tasks))
	for i, c := range out.Tasks {
		items[i] = map[string]any{"task_id": c.ID, "output": map[string]any{"a": i}}
	}
	var results []map[string]any
	require.NoError(t, tx.QueryRow(ctx, "select public.complete_tasks('plan-test', $1::json)", items).Scan(&results))
	require.Equal(t, []map[string]any{
		{"status": "completed", "created": float64(0), "waiting": float64(0)},
		{"status": "completed", "created": float64(0), "waiting": float64(0)},
		{"status": "completed", "created": float64(0), "waiting": float64(0)},
	}, results)
	var done int
	require.NoError(t, tx.QueryRow(ctx, "select count(*) from public.ai_tasks where id = any($1) and status = 'completed' and output_data ? 'a'",
		[]uuid.UUID{out.Tasks[0].ID, out.Tasks[1].ID, out.Tasks[2].ID}).Scan(&done))
	require.Equal(t, 3, done)
}

// complete_tasks completes spawners (a 1:1 successor) and the feeders of an
// N:1 merge reading about what it completes, for an owner the statistics
// have not seen too: the classification and the grouped UPDATE go by the
// row versions found by primary key, and the barrier's probes and closing
// read (orchable.scope_has_open, orchable.scope_tasks) can only use the
// scope's index, not the owner's user_id index (20,030 rows read to complete
// 10 spawners, 5,041 to complete 10 feeders and 5,039 to close a merge of
// three, before; TestCompletePlanForEveryTenant covers the leaves).
func TestSuccessorsPlanForEveryTenant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, heavy, light := twoTenants(ctx, t)
	for _, u := range []uuid.UUID{heavy, light} {
		p := u.String()[:8]
		_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id) values
			($1::text || '-s1', 'x', 's1', '{}', jsonb_build_array($1::text || '-s2'), $2),
			($1::text || '-s2', 'x', 's2', '{}', '[]', $2),
			($1::text || '-m1', 'x', 'm1', '{}', jsonb_build_array($1::text || '-m2'), $2),
			($1::text || '-m2', 'x', 'm2', '{"cardinality": "N:1"}', '[]', $2)`, p, u)
		require.NoError(t, err)
	}
	// queue queues n tasks of the stage, due from later seconds ago.
	queue := func(user uuid.UUID, stage string, n, later int) {
		t.Helper()
		_, err := pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, prompt_template_id, run_after)
			select 'plan', '{}', $1, $2::text, $3::text || '-' || $2::text, now() - make_interval(secs => $5 + $4 - n) from generate_series(1, $4::int) n`,
			user, stage, user.String()[:8], n, later)
		require.NoError(t, err)
	}
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// cycle claims the owner's next limit tasks (all of one stage: the
	// queue is in run_after order) and completes them in one call.
	cycle := func(name string, user uuid.UUID, limit, created int) {
		t.Helper()
		stage, results, rows := claimAndComplete(ctx, t, conn, user, limit)
		t.Logf("%s (%s): completed %d, read %d rows of ai_tasks", name, stage, len(results), rows)
		for _, r := range results {
			require.Equal(t, "completed", r.Status, name)
			require.Equal(t, created, r.Created, name)
		}
		// Each completion also reads its row's parent and root for the
		// child's foreign keys.
		require.Less(t, rows, int64(8*limit+20), "%s: rows of ai_tasks read completing %d", name, limit)
	}

	// A table the statistics have seen: another owner's 2,000 finished
	// tasks and 3 queued. (Planned on an almost empty table, the foreign-key
	// checks of the children's INSERT keep a plan that scans the whole
	// table until the next ANALYZE, which autovacuum makes soon after a
	// small table grows; the bench server runs without autovacuum.)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, prompt_template_id, completed_at)
		select 'completed', '{}', $1, 's1', $2::text || '-s1', now() from generate_series(1, 2000)`, light, light.String()[:8])
	require.NoError(t, err)
	queue(light, "s1", 3, 0)
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)
	cycle("an analyzed table", light, 3, 1)
	// 5,000 spawners of an owner the statistics have not seen.
	queue(heavy, "s1", 5000, 0)
	for i := range 3 {
		cycle(fmt.Sprintf("spawners of an owner unseen by the statistics, call %d", i), heavy, 10, 1)
	}
	// The feeders of an N:1 merge: one batch of 5,000 of the same owner,
	// still unseen. Each completion probes the barrier's scope.
	_, err = pool.Exec(ctx, `with b as (insert into public.task_batches (created_by) values ($1) returning id)
		update public.ai_tasks t set batch_id = b.id, stage_key = 'm1', prompt_template_id = $2::text || '-m1'
		from b where t.user_id = $1 and t.status = 'plan'`, heavy, heavy.String()[:8])
	require.NoError(t, err)
	for i := range 3 {
		cycle(fmt.Sprintf("feeders of a merge of an owner unseen by the statistics, call %d", i), heavy, 10, 0)
	}
	// A second batch of three feeders of the same owner, first in the
	// queue, completed in one call: the last closes the barrier and reads
	// its scope (orchable.scope_tasks) to build the merged input.
	_, err = pool.Exec(ctx, `with b as (insert into public.task_batches (created_by) values ($1) returning id)
		insert into public.ai_tasks (status, input_data, user_id, batch_id, stage_key, prompt_template_id, run_after)
		select 'plan', '{}', $1, b.id, 'm1', $2::text || '-m1', now() - interval '1 day' from b, generate_series(1, 3)`,
		heavy, heavy.String()[:8])
	require.NoError(t, err)
	_, results, rows := claimAndComplete(ctx, t, conn, heavy, 3)
	t.Logf("a closing merge of an owner unseen by the statistics: completed %d, read %d rows of ai_tasks", len(results), rows)
	created := 0
	for _, r := range results {
		require.Equal(t, "completed", r.Status)
		created += r.Created
	}
	require.Equal(t, 1, created, "the merge's one task")
	require.Less(t, rows, int64(40), "rows of ai_tasks read closing a merge of three")
}

// A completion of many tasks joins its items to their rows in time linear in
// the items: the two set-based UPDATEs of complete_tasks (the leaves', and
// the spawners' and feeders') find each task's item by a hash join, planned
// once per connection. Left to a generic plan, which expects one row on each
// side, they were nested loops that rescanned every item for every task:
// completing 1,000 leaves in one call compared 499,500 pairs and took 139 ms
// against 22 (docs/performance.md, seventeenth round). auto_explain, with
// actual rows, prints what each join removed.
func TestCompletionJoinsItemsLinearly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, heavy, _ := twoTenants(ctx, t)
	p := heavy.String()[:8]
	_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id) values
		($1::text || '-s1', 'x', 's1', '{}', jsonb_build_array($1::text || '-s2'), $2),
		($1::text || '-s2', 'x', 's2', '{}', '[]', $2)`, p, heavy)
	require.NoError(t, err)
	// 400 spawners (s1, one 1:1 successor each) and 400 leaves (s2), in
	// turns in the queue, so one claim takes both.
	const n = 800
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, prompt_template_id, run_after)
		select 'plan', '{}', $1, s.stage, $2::text || '-' || s.stage, now() - make_interval(secs => $3 - k)
		from generate_series(1, $3::int) k cross join lateral (select case when k % 2 = 0 then 's1' else 's2' end as stage) s`, heavy, p, n)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)

	var mu sync.Mutex
	var joins []string
	conn := explainingConn(ctx, t, pool, func(plan string) {
		if strings.Contains(plan, "from items i") {
			mu.Lock()
			joins = append(joins, plan)
			mu.Unlock()
		}
	}, "set auto_explain.log_analyze = on; set auto_explain.log_timing = off")
	complete := func(name string, limit int) []completion {
		t.Helper()
		mu.Lock()
		joins = nil
		mu.Unlock()
		var claimed struct {
			Tasks []struct {
				ID uuid.UUID `json:"id"`
			} `json:"tasks"`
		}
		callReading(ctx, t, conn, heavy, "select public.claim_tasks('join-test', 300, $1, null, true)", &claimed, limit)
		require.Len(t, claimed.Tasks, limit, "%s: tasks claimed", name)
		items := make([]map[string]any, len(claimed.Tasks))
		for i, c := range claimed.Tasks {
			items[i] = map[string]any{"task_id": c.ID, "output": map[string]any{"a": i}, "usage": map[string]any{"total_token_count": 3}}
		}
		var results []completion
		callReading(ctx, t, conn, heavy, "select public.complete_tasks('join-test', $1::json)", &results, items)
		require.Len(t, results, limit, "%s: completions", name)
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, joins, 2, "%s: the plans of the leaves' UPDATE and the spawners' UPDATE, printed by auto_explain", name)
		for _, plan := range joins {
			for line := range strings.SplitSeq(plan, "\n") {
				_, removed, ok := strings.Cut(line, "Rows Removed by Join Filter: ")
				if !ok {
					continue
				}
				var k int
				_, err := fmt.Sscan(removed, &k)
				require.NoError(t, err, line)
				t.Logf("%s: %s", name, strings.TrimSpace(line))
				require.Less(t, k, limit, "%s: pairs of items and tasks compared and thrown away:\n%s", name, plan)
			}
		}
		return results
	}

	// A small call first (the connection's generic plans are made for one
	// row on each side whatever the first call's size), then a large one.
	created := 0
	for i, limit := range []int{4, n - 4} {
		for _, r := range complete(fmt.Sprintf("call %d, %d items", i+1, limit), limit) {
			require.Equal(t, "completed", r.Status)
			created += r.Created
		}
	}
	require.Equal(t, n/2, created, "one child per spawner")
	var open, children int
	require.NoError(t, pool.QueryRow(ctx, `select count(*) filter (where status <> 'completed' and stage_key <> 's2' or (stage_key = 's2' and parent_task_id is null and status <> 'completed')),
		count(*) filter (where parent_task_id is not null)
		from public.ai_tasks where user_id = $1`, heavy).Scan(&open, &children))
	require.Zero(t, open, "every claimed task completed")
	require.Equal(t, n/2, children, "the spawners' children")
}

// callReading makes one call (sql, returning one row scanned into out) as
// the user in a transaction of its own on conn, and returns the rows of
// ai_tasks the call read (sequential reads and index fetches, counted in the
// transaction).
func callReading(ctx context.Context, t *testing.T, conn beginner, user uuid.UUID, sql string, out any, args ...any) int64 {
	t.Helper()
	return callReadingTable(ctx, t, conn, "public.ai_tasks", user, sql, out, args...)
}

// beginner is a pool or one of its connections.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// callReadingTable is callReading for the rows of table read; for
// uuid.Nil it calls as the test's own role instead of a user.
func callReadingTable(ctx context.Context, t *testing.T, conn beginner, table string, user uuid.UUID, sql string, out any, args ...any) int64 {
	t.Helper()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if user != uuid.Nil {
		dbtest.AsUser(ctx, t, tx, user)
	}
	read := func() int64 {
		var n int64
		require.NoError(t, tx.QueryRow(ctx, `select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
			from pg_stat_xact_all_tables where relid = $1::regclass`, table).Scan(&n))
		return n
	}
	before := read()
	require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(out))
	rows := read() - before
	require.NoError(t, tx.Commit(ctx))
	return rows
}

// twoTenants migrates a fresh database and adds two users: heavy (whom the
// tests give thousands of tasks) and light.
func twoTenants(ctx context.Context, t *testing.T) (pool *pgxpool.Pool, heavy, light uuid.UUID) {
	t.Helper()
	pool = emptyDB(ctx, t)
	_, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
	require.NoError(t, err)
	heavy, light = uuid.New(), uuid.New()
	for _, u := range []uuid.UUID{heavy, light} {
		_, err := pool.Exec(ctx, "insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)", u, u.String()+"@plan.test")
		require.NoError(t, err)
	}
	return pool, heavy, light
}

// explainingConn opens a connection of its own (so a function's cached
// plans are reused from call to call) on which auto_explain prints the plan
// of every statement, nested ones included, as a notice passed to plan;
// settings (SQL) run after. It is closed when the test ends.
func explainingConn(ctx context.Context, t *testing.T, pool *pgxpool.Pool, plan func(string), settings string) *pgx.Conn {
	t.Helper()
	cfg := pool.Config().ConnConfig.Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plan(n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	_, err = conn.Exec(ctx, `load 'auto_explain'`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on; set auto_explain.log_level = notice`)
	require.NoError(t, err)
	if settings != "" {
		_, err = conn.Exec(ctx, settings)
		require.NoError(t, err)
	}
	return conn
}

// completion is one item of complete_tasks' result.
type completion struct {
	Status  string `json:"status"`
	Created int    `json:"created"`
}

// claimAndComplete claims the user's next limit tasks on conn and completes
// them in one complete_tasks call, each call in a transaction of its own. It
// returns the first task's stage key, the completions, and the rows of
// ai_tasks the completion read (callReading).
func claimAndComplete(ctx context.Context, t *testing.T, conn *pgxpool.Conn, user uuid.UUID, limit int) (string, []completion, int64) {
	t.Helper()
	var out struct {
		Tasks []struct {
			ID       uuid.UUID `json:"id"`
			StageKey string    `json:"stage_key"`
		} `json:"tasks"`
	}
	callReading(ctx, t, conn, user, "select public.claim_tasks('plan-test', 300, $1, null, true)", &out, limit)
	require.Len(t, out.Tasks, limit, "tasks claimed")
	items := make([]map[string]any, len(out.Tasks))
	for i, c := range out.Tasks {
		items[i] = map[string]any{"task_id": c.ID, "output": map[string]any{"a": i}}
	}
	var results []completion
	rows := callReading(ctx, t, conn, user, "select public.complete_tasks('plan-test', $1::json)", &results, items)
	require.Len(t, results, limit, "completions")
	return out.Tasks[0].StageKey, results, rows
}

// addLightOwners adds n users with one due task each (an average owner of
// one task, once the statistics are made).
func addLightOwners(ctx context.Context, t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	_, err := pool.Exec(ctx, `with u as (
			insert into auth.users (id, aud, role, email)
			select gen_random_uuid(), 'authenticated', 'authenticated', 'light-' || gen_random_uuid() || '@plan.test' from generate_series(1, $1::int)
			returning id)
		insert into public.ai_tasks (status, input_data, user_id, stage_key, run_after)
		select 'plan', '{}', u.id, 'k', now() - interval '1 minute' from u`, n)
	require.NoError(t, err)
}

// No statement of the SQL API is JIT-compiled. PostgreSQL compiles a
// statement whose estimated cost passes jit_above_cost (default 100,000) on
// every execution (the code is not kept between executions), and the
// estimate of a generic or parameterised plan can pass it however little the
// statement reads: the sweeper's due_tasks spent 536 ms in LLVM per call to
// read 165 buffers (docs/performance.md, eighth round). Every function the
// service or the front end calls sets jit = off for its own statements;
// this test lowers jit_above_cost to 0, so that every statement not covered
// would be compiled, and reads the plans auto_explain prints.
func TestSQLAPINeverJITCompiled(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, user, _ := twoTenants(ctx, t)

	// Every function of the SQL API, found in the catalog: a new one that
	// forgets the setting fails here. Trigger functions run inside the
	// caller's statement and are not entry points; task_status_bucket is an
	// inlinable SQL expression (a SET clause would stop its inlining).
	rows, err := pool.Query(ctx, `select p.oid::regprocedure::text from pg_proc p
		where p.pronamespace = 'public'::regnamespace and p.prorettype <> 'trigger'::regtype
		  and p.proname <> 'task_status_bucket'
		  and not coalesce('jit=off' = any(p.proconfig), false)`)
	require.NoError(t, err)
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, missing, "functions of the SQL API without set jit = off")

	var jitAvailable bool
	require.NoError(t, pool.QueryRow(ctx, "select pg_jit_available()").Scan(&jitAvailable))
	if !jitAvailable {
		// The catalog check above still holds; the plans below cannot show
		// JIT on a server built without LLVM.
		t.Log("this server has no JIT provider: the plans are not checked")
		return
	}

	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key)
		select 'plan', '{}', $1, 'k' from generate_series(1, 20)`, user)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `create function public.jit_probe() returns bigint language plpgsql as
		$$ begin return (select count(*) from public.ai_tasks); end $$`)
	require.NoError(t, err)

	// The test's own statements (top level) are compiled too at
	// jit_above_cost 0; only the nested statements count.
	const setClaims = "select set_config('request.jwt.claims', $1, true)"
	top := []string{setClaims}
	var mu sync.Mutex
	var compiled []string
	conn := explainingConn(ctx, t, pool, func(plan string) {
		if strings.Contains(plan, "JIT:") {
			mu.Lock()
			compiled = append(compiled, plan)
			mu.Unlock()
		}
	}, "set jit = on; set jit_above_cost = 0")
	nested := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
	next:
		for _, m := range compiled {
			for _, sql := range top {
				if strings.Contains(m, "Query Text: "+sql+"\n") {
					continue next
				}
			}
			out = append(out, m)
		}
		compiled = nil
		return out
	}
	// call runs sql in a transaction of its own, as the user when user is
	// not nil (as PostgREST does), and scans its one value into out.
	call := func(user *uuid.UUID, sql string, out any, args ...any) {
		t.Helper()
		top = append(top, sql)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if user != nil {
			_, err := tx.Exec(ctx, "set local role authenticated")
			require.NoError(t, err)
			claims, err := json.Marshal(dbtest.UserClaims(*user))
			require.NoError(t, err)
			_, err = tx.Exec(ctx, setClaims, string(claims))
			require.NoError(t, err)
		}
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(out))
		require.NoError(t, tx.Commit(ctx))
	}

	// The probe: a function without the setting has its statement compiled,
	// so the check below sees JIT where it happens.
	var n int64
	call(nil, "select public.jit_probe()", &n)
	require.Len(t, nested(), 1, "the nested statement of a function without jit = off is compiled at jit_above_cost 0")

	// The sweeper's calls (as the service), then a claim and a completion
	// as the owner.
	call(nil, "select public.due_tasks(1000, 1)", new(json.RawMessage))
	call(nil, "select public.requeue_expired_leases()", new(json.RawMessage))
	call(nil, "select public.fold_batch_counters()", new(int))
	var claimed struct {
		Tasks []struct {
			ID uuid.UUID `json:"id"`
		} `json:"tasks"`
	}
	call(&user, "select public.claim_tasks('jit-test', 300, 10, null, true)", &claimed)
	require.Len(t, claimed.Tasks, 10)
	items := make([]map[string]any, len(claimed.Tasks))
	for i, c := range claimed.Tasks {
		items[i] = map[string]any{"task_id": c.ID, "output": map[string]any{"a": i}}
	}
	var results []completion
	call(&user, "select public.complete_tasks('jit-test', $1::json)", &results, items)
	require.Len(t, results, 10)
	var one []struct {
		Task struct {
			ID uuid.UUID `json:"id"`
		} `json:"task"`
	}
	call(&user, "select public.claim_tasks('jit-test', 300, 1)", &one)
	require.Len(t, one, 1)
	call(&user, "select public.complete_task($1, 'jit-test', '{}'::jsonb, '{}'::jsonb)", new(json.RawMessage), one[0].Task.ID)
	require.Empty(t, nested(), "statements of the SQL API compiled by JIT")
}

// A claim by the worker 'warm-up' (the service's Direct.Warm) that finds
// nothing still runs its lease UPDATE and its result's statement, on no
// rows, so that the connection has planned them before its first real
// claim; it returns what any empty claim returns. Any other worker's empty
// claim stops after the walk of the queue.
func TestClaimWarmUpPlansEveryStep(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _, nobody := twoTenants(ctx, t)
	var mu sync.Mutex
	var ran []string
	conn := explainingConn(ctx, t, pool, func(plan string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.Contains(plan, "update public.ai_tasks t"):
			ran = append(ran, "lease")
		case strings.Contains(plan, "from unnest(claimed) u"):
			ran = append(ran, "result")
		}
	}, "")
	claim := func(worker string, compact, columns bool) (string, []string) {
		t.Helper()
		mu.Lock()
		ran = nil
		mu.Unlock()
		var out json.RawMessage
		callReading(ctx, t, conn, nobody, "select public.claim_tasks($1, 300, 1, null, $2, p_columns => $3)", &out, worker, compact, columns)
		mu.Lock()
		defer mu.Unlock()
		return string(out), ran
	}
	for _, shape := range []struct{ compact, columns bool }{{true, true}, {true, false}, {false, false}} {
		out, steps := claim("warm-up", shape.compact, shape.columns)
		require.Equal(t, []string{"lease", "result"}, steps, "the warm-up's claim runs every step")
		other, none := claim("worker-1", shape.compact, shape.columns)
		require.Empty(t, none, "an empty claim stops after the walk")
		require.JSONEq(t, other, out, "the warm-up's claim returns what an empty claim returns")
	}
}

// plannedForTheirValues runs call(conn, i) eight times on one explaining
// connection (past the five custom plans plpgsql makes before it weighs a
// generic one), reads the plan of the nested statement whose text contains
// match in each call, and returns the calls whose plan was made for that
// call's values (it shows literal); the others must show generic, a pattern
// of the generic plan.
func plannedForTheirValues(ctx context.Context, t *testing.T, pool *pgxpool.Pool, match, literal, generic string, call func(conn *pgx.Conn, i int)) []int {
	t.Helper()
	var mu sync.Mutex
	var plans []string
	conn := explainingConn(ctx, t, pool, func(plan string) {
		if strings.Contains(plan, match) {
			mu.Lock()
			plans = append(plans, plan)
			mu.Unlock()
		}
	}, "")
	for i := range 8 {
		call(conn, i)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, plans, 8, "the statement's plan, once per call, printed by auto_explain")
	var custom []int
	for i, p := range plans {
		if strings.Contains(p, literal) {
			custom = append(custom, i+1)
			continue
		}
		require.Regexp(t, generic, p, "call %d: the generic plan", i+1)
	}
	return custom
}

// complete_tasks reads its items' templates with a generic plan, made once
// per connection: planned for each call's ids (a custom plan, as plpgsql
// keeps making when the generic plan's estimate is higher), it cost about
// 0.75 ms of planning per call, the templates' row level security
// included, against 0.05 ms to run.
func TestCompleteTasksTemplatesPlannedOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, user, _ := twoTenants(ctx, t)
	const tpl = "planned-once-tpl"
	_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, user_id) values ($1, 'x', 'k', $2)`, tpl, user)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, prompt_template_id)
		select 'plan', '{}', $1, 'k', $2 from generate_series(1, 20)`, user, tpl)
	require.NoError(t, err)

	custom := plannedForTheirValues(ctx, t, pool, "any(tpl_ids)", tpl, `id = ANY \(\$\d+\)`, func(conn *pgx.Conn, i int) {
		var claimed struct {
			Tasks []struct {
				ID uuid.UUID `json:"id"`
			} `json:"tasks"`
		}
		callReading(ctx, t, conn, user, "select public.claim_tasks('planned-once', 300, 2, null, true)", &claimed)
		require.Len(t, claimed.Tasks, 2)
		items := make([]map[string]any, len(claimed.Tasks))
		for j, c := range claimed.Tasks {
			items[j] = map[string]any{"task_id": c.ID, "output": map[string]any{"n": i}}
		}
		var done []completion
		callReading(ctx, t, conn, user, "select public.complete_tasks('planned-once', $1)", &done, items)
		require.Equal(t, []completion{{Status: "completed"}, {Status: "completed"}}, done)
	})
	require.Empty(t, custom, "calls whose plan of the templates' read was made for their own template ids")
}

// claim_tasks builds its result with a generic plan, made once per
// connection: planned for each call, as plpgsql kept doing for claims of a
// task or a few (the generic plan's estimate of ten claimed rows looked
// dearer than a custom plan's one), its planning was a third of a one-task
// claim.
func TestClaimResultPlannedOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, user, _ := twoTenants(ctx, t)
	_, err := pool.Exec(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key)
		select 'plan', '{}', $1, 'k' from generate_series(1, 20)`, user)
	require.NoError(t, err)

	custom := plannedForTheirValues(ctx, t, pool, "from unnest(claimed) u", user.String(), `user_id = \$\d+`, func(conn *pgx.Conn, i int) {
		var claimed json.RawMessage
		callReading(ctx, t, conn, user, "select public.claim_tasks('planned-once', 300, 1, null, $1)", &claimed, i%2 == 0)
		require.Contains(t, string(claimed), user.String(), "call %d claimed a task", i+1)
	})
	require.Empty(t, custom, "calls whose plan of the claim's result was made for their own owner and rows")
}

// Every function of the SQL API calls orchable.engine_on and
// orchable.require_user once per call, and every completion that closes a
// barrier calls orchable.upstream_stages. A SQL-language function that is not
// inlined (a SET clause, a recursive query) is parsed and planned again in
// every transaction that calls it (about 40 us of an empty complete_tasks
// call's 0.4 ms, and 0.4-0.5 ms of a closing, pgbench); PL/pgSQL keeps its plans
// for the connection. upstream_stages keeps a generic plan: left to the plan
// cache it made a custom plan on every call.
func TestPerCallHelpersKeepTheirPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _, _ := twoTenants(ctx, t)
	rows, err := pool.Query(ctx, `select p.oid::regprocedure::text, l.lanname, coalesce(array_to_string(p.proconfig, ' '), '')
		from pg_proc p join pg_language l on l.oid = p.prolang
		where p.oid in ('orchable.engine_on()'::regprocedure, 'orchable.require_user(text)'::regprocedure,
		                'orchable.upstream_stages(text, uuid, uuid)'::regprocedure)`)
	require.NoError(t, err)
	funcs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([3]string, error) {
		var f [3]string
		return f, r.Scan(&f[0], &f[1], &f[2])
	})
	require.NoError(t, err)
	require.Len(t, funcs, 3)
	for _, f := range funcs {
		require.Equal(t, "plpgsql", f[1], "the language of %s", f[0])
		if f[0] == "orchable.upstream_stages(text,uuid,uuid)" {
			require.Contains(t, f[2], "plan_cache_mode=force_generic_plan", "the settings of %s", f[0])
		}
	}
}

// orchable.upstream_stages: the stages of every template from which the given
// one can be reached, among the owner's and the successor's author's
// templates, through branches and loops; another tenant's template naming
// ours as its successor is no part of it.
func TestUpstreamStagesOfAPipeline(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, owner, other := twoTenants(ctx, t)
	author := uuid.New()
	_, err := pool.Exec(ctx, "insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)", author, author.String()+"@plan.test")
	require.NoError(t, err)
	p := "us-" + uuid.NewString()[:8] + "-"
	for _, tpl := range []struct {
		id, stage string
		next      []string
		user      uuid.UUID
	}{
		{"a", "sa", []string{"b"}, owner},
		{"b", "sb", []string{"c"}, owner},
		{"x", "sx", []string{"c"}, author}, // the successor's author's branch
		{"c", "sc", []string{"d"}, owner},
		{"d", "sd", []string{"b", "e"}, owner}, // a loop back to b
		{"e", "se", nil, author},
		{"evil", "sevil", []string{"c", "e"}, other}, // another tenant's
		{"lone", "slone", nil, owner},
	} {
		next := make([]string, 0, len(tpl.next))
		for _, n := range tpl.next {
			next = append(next, p+n)
		}
		nextJSON, err := json.Marshal(next)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, next_stage_template_ids, user_id)
			values ($1, 'x', $2, $3, $4)`, p+tpl.id, tpl.stage, nextJSON, tpl.user)
		require.NoError(t, err)
	}
	for _, c := range []struct {
		tpl  string
		want []string
	}{
		{"e", []string{"sa", "sb", "sc", "sd", "sx"}},
		{"c", []string{"sa", "sb", "sc", "sd", "sx"}}, // through the loop, c reaches itself
		{"a", []string{}},
		{"lone", []string{}},
	} {
		// Seven calls each: past the five after which the plan cache may
		// change the plan it uses.
		for range 7 {
			var got []string
			require.NoError(t, pool.QueryRow(ctx, "select orchable.upstream_stages($1, $2, $3)", p+c.tpl, owner, author).Scan(&got))
			require.ElementsMatch(t, c.want, got, "upstream of %s", c.tpl)
		}
	}
}

// A large completion has its server process keep the memory calls free
// (orchable.keep_heap, docs/performance.md, twenty-eighth round). With
// glibc's defaults a statement that builds a few MB gives them back to the
// kernel when it ends and faults them in again the next time, about 2,500
// faults a run here; once the process has been through keep_heap, the
// same statement runs again on the memory it kept. The server's /proc is
// read (the test server is this machine's).
func TestCompleteTasksKeepsHeap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	const build = "select cardinality(array_agg(repeat('x', 1000))) from generate_series(1, 5000)" // about 5 MB

	// Each case on a connection of its own: the allocator's state is its
	// server process's.
	connect := func() (*pgx.Conn, int) {
		c, err := pgx.Connect(ctx, dbtest.URL(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.WithoutCancel(ctx)) })
		var pid int
		require.NoError(t, c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
		return c, pid
	}
	faults := func(c *pgx.Conn, pid int) int64 {
		before := backendMinflt(t, pid)
		_, err := c.Exec(ctx, build)
		require.NoError(t, err)
		return backendMinflt(t, pid) - before
	}
	kept := func(c *pgx.Conn) string {
		var v string
		require.NoError(t, c.QueryRow(ctx, "select coalesce(current_setting('orchable.heap_kept', true), '')").Scan(&v))
		return v
	}
	// complete_tasks as the user, with n items naming no task of theirs
	// (each answered PT404), committed or rolled back.
	complete := func(c *pgx.Conn, n int, commit bool) {
		tx, err := c.Begin(ctx)
		require.NoError(t, err)
		dbtest.AsUser(ctx, t, tx, user)
		items := make([]map[string]any, n)
		for i := range items {
			items[i] = map[string]any{"task_id": uuid.NewString(), "output": map[string]any{}}
		}
		body, err := json.Marshal(items)
		require.NoError(t, err)
		var res []map[string]any
		require.NoError(t, tx.QueryRow(ctx, "select public.complete_tasks('w', $1::json)", string(body)).Scan(&res))
		require.Len(t, res, n)
		require.Equal(t, "PT404", res[0]["code"])
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
	}

	// The default: every run maps its memory afresh.
	c, pid := connect()
	faults(c, pid)
	require.Greater(t, faults(c, pid), int64(1000), "a second run without keep_heap")
	require.Greater(t, faults(c, pid), int64(1000), "a third run without keep_heap")

	// 99 items leave the process as it was; a call rolled back too.
	c, _ = connect()
	complete(c, 99, true)
	require.Empty(t, kept(c))
	complete(c, 100, false)
	require.Empty(t, kept(c), "the mark of a call rolled back")

	// 100 items: the process keeps what it frees.
	c, pid = connect()
	complete(c, 100, true)
	require.Equal(t, "on", kept(c))
	faults(c, pid)
	require.Less(t, faults(c, pid), int64(100), "a second run after keep_heap")
	require.Less(t, faults(c, pid), int64(100), "a third run after keep_heap")
}

// backendMinflt reads a server process's minor page faults so far.
func backendMinflt(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(tb, err, "the test server's processes must be this machine's")
	s := string(b)
	// The fields after the command's closing parenthesis; minflt is the
	// tenth field of the line.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, err := strconv.ParseInt(f[7], 10, 64)
	require.NoError(tb, err)
	return n
}

// The barrier's two scope reads, for each kind of scope (batch, launch, root)
// and each status of a task: orchable.scope_has_open says whether the owner
// has an unfinished task of the given stages in the scope (the unfinished
// statuses keep a barrier open, the finished ones do not), and
// orchable.scope_tasks returns the owner's tasks of those stages in the
// scope, whatever their status (what the closing completion merges). A task
// of another stage, or another tenant's task carrying our scope ids, is in
// neither; the root of a lineage is part of its root scope. The probes are
// one statement (docs/performance.md, thirty-fifth round); each question is
// asked seven times, past the five calls after which a cached plan may
// change.
func TestBarrierScopeReadsEveryKindAndStatus(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, owner, other := twoTenants(ctx, t)
	var batch uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.task_batches (created_by) values ($1) returning id", owner).Scan(&batch))
	launch, root := uuid.New(), uuid.New()
	_, err := pool.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, stage_key, completed_at)
		values ($1, 'completed', '{}', $2, 'r', now())`, root, owner)
	require.NoError(t, err)
	// Finished tasks of the stage asked about, in every scope: the probes
	// pass over them, the closing read returns them.
	rows, err := pool.Query(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, batch_id, launch_id, root_task_id, parent_task_id, completed_at)
		select 'completed', '{}', $1, 's1', $2, $3, $4, $4, now() from generate_series(1, 5) returning id`, owner, batch, launch, root)
	require.NoError(t, err)
	finished, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	var statuses []string
	require.NoError(t, pool.QueryRow(ctx, "select enum_range(null::public.ai_task_status)::text[]").Scan(&statuses))
	open := map[string]bool{"processing": true, "plan": true, "generated": true, "awaiting_approval": true, "pending": true, "running": true}

	// ask runs sql (one of the two functions, then the scope's arguments
	// and the stages) as the owner, through PostgREST's role, seven times,
	// and returns the one answer it gave every time.
	ask := func(sql, kind string, stages []string, scan func(pgx.Row) (any, error)) any {
		t.Helper()
		args := map[string]any{"batch": nil, "launch": nil, "root": nil}
		args[kind] = map[string]uuid.UUID{"batch": batch, "launch": launch, "root": root}[kind]
		var got any
		for i := range 7 {
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			dbtest.AsUser(ctx, t, tx, owner)
			v, err := scan(tx.QueryRow(ctx, sql, owner, args["batch"], args["launch"], args["root"], stages))
			require.NoError(t, err)
			require.NoError(t, tx.Rollback(ctx))
			if i > 0 {
				require.Equal(t, got, v, "%s scope, stages %v: the same answer on every call", kind, stages)
			}
			got = v
		}
		return got
	}
	hasOpen := func(kind string, stages []string) bool {
		t.Helper()
		return ask("select orchable.scope_has_open($1, $2, $3, $4, $5)", kind, stages, func(r pgx.Row) (any, error) {
			var v bool
			return v, r.Scan(&v)
		}).(bool)
	}
	scopeTasks := func(kind string, stages []string) []uuid.UUID {
		t.Helper()
		return ask("select coalesce(array_agg(t.id order by t.id), '{}') from orchable.scope_tasks($1, $2, $3, $4, $5) t", kind, stages, func(r pgx.Row) (any, error) {
			var v []uuid.UUID
			return v, r.Scan(&v)
		}).([]uuid.UUID)
	}
	// with adds one task of user and stage in every scope with the status
	// for the length of f, and gives f its id.
	with := func(user uuid.UUID, stage, status string, f func(id uuid.UUID)) {
		t.Helper()
		// Written with the engine's setting on, past the trigger that
		// refuses another tenant's lineage: the row an attacker would
		// need, as the attacks suite forges it.
		var id uuid.UUID
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
		require.NoError(t, err)
		require.NoError(t, tx.QueryRow(ctx, `insert into public.ai_tasks (status, input_data, user_id, stage_key, batch_id, launch_id, root_task_id, parent_task_id)
			values ($1, '{}', $2, $3, $4, $5, $6, $6) returning id`, status, user, stage, batch, launch, root).Scan(&id))
		require.NoError(t, tx.Commit(ctx))
		defer func() {
			_, err := pool.Exec(ctx, "delete from public.ai_tasks where id = $1", id)
			require.NoError(t, err)
		}()
		f(id)
	}
	sorted := func(ids ...uuid.UUID) []uuid.UUID {
		out := slices.Clone(ids)
		slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		return out
	}

	for _, kind := range []string{"batch", "launch", "root"} {
		require.False(t, hasOpen(kind, []string{"s0", "s1"}), "%s scope with only finished tasks", kind)
		require.Equal(t, sorted(finished...), scopeTasks(kind, []string{"s0", "s1"}), "%s scope with only finished tasks: read", kind)
		for _, status := range statuses {
			with(owner, "s1", status, func(id uuid.UUID) {
				require.Equal(t, open[status], hasOpen(kind, []string{"s0", "s1"}), "%s scope, a %s task of a stage asked about", kind, status)
				require.Equal(t, open[status], hasOpen(kind, []string{"s1"}), "%s scope, a %s task of the one stage asked about", kind, status)
				require.False(t, hasOpen(kind, []string{"s0", "s2"}), "%s scope, a %s task of a stage not asked about", kind, status)
				require.Equal(t, sorted(append(finished, id)...), scopeTasks(kind, []string{"s1", "s0", "s1"}), "%s scope, a %s task: read", kind, status)
				require.Empty(t, scopeTasks(kind, []string{"s0", "s2"}), "%s scope, a %s task of a stage not asked about: read", kind, status)
			})
			// Another tenant's task with our scope ids (a row PostgREST
			// would refuse for the batch and the root, and can write for
			// the launch) is not ours.
			with(other, "s1", status, func(uuid.UUID) {
				require.False(t, hasOpen(kind, []string{"s0", "s1"}), "%s scope, another tenant's %s task", kind, status)
				require.Equal(t, sorted(finished...), scopeTasks(kind, []string{"s1"}), "%s scope, another tenant's %s task: read", kind, status)
			})
		}
	}
	// The root of a lineage is part of its root scope: read with its stage,
	// and open while it is.
	require.Equal(t, []uuid.UUID{root}, scopeTasks("root", []string{"r"}), "the root of a lineage, read")
	require.Empty(t, scopeTasks("batch", []string{"r"}), "the root is in no batch")
	_, err = pool.Exec(ctx, "update public.ai_tasks set status = 'processing', completed_at = null where id = $1", root)
	require.NoError(t, err)
	require.True(t, hasOpen("root", []string{"r"}), "a processing root of a stage asked about")
	require.False(t, hasOpen("root", []string{"s1"}), "a processing root of a stage not asked about")
	require.False(t, hasOpen("batch", []string{"r"}), "the root is in no batch")
}
