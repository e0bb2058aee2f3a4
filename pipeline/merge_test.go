package pipeline_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// N:1 merges as the original made them (reference/original-behaviour.md
// §3.4): with merge_path (default output_data) each completed parent
// contributes the elements of the array at that key of its output, a scalar
// there is appended, and a parent without the key contributes its whole
// output.
func TestMergeConcatenatesMergePath(t *testing.T) { //nolint:tparallel // each case claims every ready task it can see, so they run one at a time
	t.Parallel()
	ctx := t.Context()
	b := setup(t)

	for _, tt := range []struct { //nolint:paralleltest // one at a time, see above
		name      string
		mergePath string // "" = the default
		outputs   []map[string]any
		want      []any
	}{
		{"DefaultOutputDataArrays", "", []map[string]any{
			{"output_data": []any{"a1", "a2"}}, {"output_data": []any{"b1"}}, {"output_data": []any{"c1", "c2", "c3"}},
		}, []any{"a1", "a2", "b1", "c1", "c2", "c3"}},
		{"ScalarAppendedAndMissingKeyWhole", "questions", []map[string]any{
			{"questions": []any{map[string]any{"q": 1}}}, {"questions": "single"}, {"other": true},
		}, []any{map[string]any{"q": 1.0}, "single", map[string]any{"other": true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			user := dbtest.CreateUser(ctx, t, b.pool)
			id, _ := claimsIdentity{}.Identity(ctx, user)
			p := "mg-" + uuid.NewString()[:8] + "-"
			cfg := map[string]any{"cardinality": "N:1"}
			if tt.mergePath != "" {
				cfg["merge_path"] = tt.mergePath
			}
			b.templates(ctx, t, user,
				stage{id: p + "A", key: "part", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "M"}},
				stage{id: p + "M", key: "merged", prompt: "x", cfg: cfg},
			)
			rows := make([]map[string]any, len(tt.outputs))
			for i := range rows {
				rows[i] = map[string]any{"i": i}
			}
			batch := b.launch(ctx, t, user, p+"A", rows...)
			var claimed []struct {
				Task struct {
					ID       uuid.UUID `json:"id"`
					Sequence int       `json:"sequence"`
				} `json:"task"`
			}
			require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "mg", "p_limit": 10}, &claimed))
			require.Len(t, claimed, len(tt.outputs))
			for _, c := range claimed {
				require.NoError(t, b.db.RPC(ctx, id, "complete_task", map[string]any{
					"p_task_id": c.Task.ID, "p_worker": "mg", "p_output": tt.outputs[c.Task.Sequence], "p_usage": map[string]any{},
				}, nil))
			}
			var raw []byte
			require.NoError(t, b.pool.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'merged'", batch).Scan(&raw))
			var in map[string]any
			require.NoError(t, json.Unmarshal(raw, &in))
			key := tt.mergePath
			if key == "" {
				key = "output_data"
			}
			require.Equal(t, tt.want, in[key], "merged input %s", raw)
			require.EqualValues(t, len(tt.outputs), in["_merged_from_count"])
		})
	}
}

// A feeder's completion does not read the rest of its owner's tasks, and
// the completion that closes an N:1 merge reads its scope once, however
// large the owner's other work is and however long the connection has
// lived: run as the owner (row level security applies) with
// plan_cache_mode = force_generic_plan (the plan a pooled connection caches
// after five executions). Reads are the transaction's own statistics
// (pg_stat_get_xact_*): rows fetched from the heap and index entries read.
// Index entries of the scope's dead row versions (left by the launch and
// the claims until vacuum) are read too, so the bound on entries is a few
// per scope task; the owner's other batch is 100 times the scope.
// Before the fix this test read 5,303 index entries for a feeder, and
// 20,358 rows and 31,366 entries for the closing completion (the scope
// index ANDed with the owner's index, the scope read four times); after it
// 3 rows and 4 entries, and 55 rows and 160 entries.
func TestBarrierReadsOnlyItsScope(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	user := dbtest.CreateUser(ctx, t, b.pool)
	id, _ := claimsIdentity{}.Identity(ctx, user)
	p := "scope-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, user,
		stage{id: p + "A", key: "part", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "M"}},
		stage{id: p + "M", key: "merged", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
	)
	const scope, others = 50, 5000
	rows := make([]map[string]any, scope)
	for i := range rows {
		rows[i] = map[string]any{"i": i}
	}
	batch := b.launch(ctx, t, user, p+"A", rows...)
	// The owner's other batch of the same stage, finished.
	other := b.launch(ctx, t, user, p+"A", map[string]any{"i": -1})
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (id, task_type, status, input_data, output_data, user_id, batch_id, launch_id,
			root_task_id, step_number, stage_key, prompt_template_id, sequence, attempts, completed_at)
		select g.id, 'part', 'completed', '{}', '{"output_data": ["other"]}', b.user_id, b.batch_id, b.launch_id,
			g.id, 1, 'part', $3, g.n, 1, now()
		from (select gen_random_uuid() as id, n from generate_series(1, $2::int) n) g,
			(select user_id, batch_id, launch_id from public.ai_tasks where batch_id = $1 limit 1) b`, other, others, p+"A")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	q, err := b.pool.Query(ctx, "select id from public.ai_tasks where batch_id = $1 order by sequence", batch)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(q, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	require.Len(t, ids, scope)
	var claimed []json.RawMessage
	require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "scope", "p_limit": scope, "p_task_ids": ids}, &claimed))
	require.Len(t, claimed, scope)
	output := func(i int) map[string]any { return map[string]any{"output_data": []any{i}} }
	for i, tid := range ids[:scope-2] {
		require.NoError(t, b.db.RPC(ctx, id, "complete_task", map[string]any{
			"p_task_id": tid, "p_worker": "scope", "p_output": output(i), "p_usage": map[string]any{},
		}, nil))
	}

	as := dbtest.TestTx(ctx, t)
	dbtest.AsUser(ctx, t, as, user)
	_, err = as.Exec(ctx, "set local plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	type reads struct{ rows, entries int64 }
	read := func() reads {
		var r reads
		require.NoError(t, as.QueryRow(ctx, `select
				(select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_xact_all_tables where relid = 'public.ai_tasks'::regclass),
				(select coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::bigint from pg_index where indrelid = 'public.ai_tasks'::regclass)`,
		).Scan(&r.rows, &r.entries))
		return r
	}
	complete := func(i int) reads {
		before := read()
		_, err := as.Exec(ctx, "select public.complete_task($1, 'scope', $2, '{}')", ids[i], output(i))
		require.NoError(t, err)
		after := read()
		return reads{after.rows - before.rows, after.entries - before.entries}
	}
	feeder := complete(scope - 2)
	closing := complete(scope - 1)
	t.Logf("a feeder's completion read %d rows and %d index entries; the closing one %d and %d (scope %d, the owner's other batch %d)",
		feeder.rows, feeder.entries, closing.rows, closing.entries, scope, others)
	require.Less(t, feeder.rows, int64(20), "rows read by a feeder's completion")
	require.Less(t, feeder.entries, int64(5*scope), "index entries read by a feeder's completion (two probes)")
	require.Less(t, closing.rows, int64(scope+20), "rows read by the closing completion: the scope once")
	require.Less(t, closing.entries, int64(10*scope), "index entries read by the closing completion")

	var raw []byte
	require.NoError(t, as.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'merged'", batch).Scan(&raw))
	var in map[string]any
	require.NoError(t, json.Unmarshal(raw, &in))
	want := make([]any, scope)
	for i := range want {
		want[i] = float64(i)
	}
	require.Equal(t, want, in["output_data"], "merged items in sequence order")
	require.EqualValues(t, scope, in["_merged_from_count"])
}

// A claim reads about what it claims, however long the queue: the queue is
// walked from the head of the runnable index, named ids are fetched by
// primary key. (An earlier attempt at generic plans broke both: a generic
// plan estimates the average tenant's queue, hash-joined the whole table to
// update the claimed rows, and ANDed in the owner's whole index. The queue
// walk is now generic with sorts disabled while it is planned, and the
// claimed rows are updated by row version: TestClaimPlanForEveryTenant,
// docs/performance.md.)
func TestClaimReadsOnlyWhatItClaims(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	user := dbtest.CreateUser(ctx, t, b.pool)
	p := "claimreads-" + uuid.NewString()[:8]
	b.templates(ctx, t, user, stage{id: p, key: "k", prompt: "x"})
	const queue = 5000
	_, err := b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, prompt_template_id, run_after)
		select 'generic', 'plan', '{}', $1, 'k', $2, now() - make_interval(secs => $3 - n) from generate_series(1, $3::int) n`, user, p, queue)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, "analyze public.ai_tasks")
	require.NoError(t, err)
	var last []uuid.UUID
	q, err := b.pool.Query(ctx, "select id from public.ai_tasks where user_id = $1 order by run_after desc limit 3", user)
	require.NoError(t, err)
	last, err = pgx.CollectRows(q, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)

	// One connection, so the function's cached plan is reused; one
	// transaction per claim, as the service makes them.
	conn, err := b.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	type reads struct{ rows, entries int64 }
	claim := func(limit int, ids []uuid.UUID) (int, reads) {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, user)
		read := func() reads {
			var r reads
			require.NoError(t, tx.QueryRow(ctx, `select
				(select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_xact_all_tables where relid = 'public.ai_tasks'::regclass),
				(select coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::bigint from pg_index where indrelid = 'public.ai_tasks'::regclass)`,
			).Scan(&r.rows, &r.entries))
			return r
		}
		before := read()
		var out []byte
		require.NoError(t, tx.QueryRow(ctx, "select public.claim_tasks('reads', 300, $1, $2)::text", limit, ids).Scan(&out))
		after := read()
		require.NoError(t, tx.Commit(ctx))
		var claimed []json.RawMessage
		require.NoError(t, json.Unmarshal(out, &claimed))
		return len(claimed), reads{after.rows - before.rows, after.entries - before.entries}
	}
	// Enough calls for the plan cache to settle (custom plans, then maybe a
	// generic one), each measured. The runnable index keeps the entries of
	// tasks claimed before until no snapshot can see them (parallel tests
	// hold snapshots), so a later call walks over those too: about 10 more
	// per call, against the 5,000 of a walk of the whole queue.
	for i := range 8 {
		n, r := claim(10, nil)
		require.Equal(t, 10, n)
		require.Less(t, r.rows, int64(60), "call %d: rows read claiming 10 from a queue of %d", i, queue)
		require.Less(t, r.entries, int64(40+12*(i+1)), "call %d: index entries read claiming 10 from a queue of %d", i, queue)
	}
	n, r := claim(10, last)
	require.Equal(t, 3, n)
	t.Logf("claiming 3 named tasks at the tail of a %d-task queue read %d rows and %d index entries", queue, r.rows, r.entries)
	require.Less(t, r.rows, int64(30), "rows read claiming 3 named tasks")
	require.Less(t, r.entries, int64(30), "index entries read claiming 3 named tasks")
}

// A claim from a cursor (p_after_*, the "after" of the owner's previous
// claim) starts where that claim stopped: it does not step over the index
// entries of the tasks claimed before it, which stay in the runnable index
// until vacuum removes them, so a claim deep in a large batch costs what one
// at its head does. A task behind the cursor is claimed when the part ahead
// cannot fill the claim, and by any claim from the head. A lone half of a
// cursor is refused.
func TestClaimFromCursorSkipsWhatWasClaimed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	user := dbtest.CreateUser(ctx, t, b.pool)
	const queue = 5000
	_, err := b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, run_after)
		select 'generic', 'plan', jsonb_build_object('n', n), $1, 'k', now() - interval '1 day' + make_interval(secs => n) from generate_series(1, $2::int) n`, user, queue)
	require.NoError(t, err)

	type cursor struct {
		RunAfter *string    `json:"run_after"`
		ID       *uuid.UUID `json:"id"`
	}
	type claimed struct {
		ns     []int // input n of each claimed task (the result is in no particular order)
		after  *cursor
		blocks int64 // blocks of the runnable index the call fetched
	}
	conn, err := b.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// One transaction per claim, committed, as the service makes them.
	claimAs := func(who uuid.UUID, limit int, after *cursor) (claimed, error) {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, who)
		blocks := func() int64 {
			var n int64
			require.NoError(t, tx.QueryRow(ctx, "select pg_stat_get_xact_blocks_fetched('public.ai_tasks_user_runnable_idx'::regclass)").Scan(&n))
			return n
		}
		var ra, id any
		if after != nil {
			ra, id = after.RunAfter, after.ID
		}
		before := blocks()
		var out []byte
		if err := tx.QueryRow(ctx, "select public.claim_tasks('cursor', 300, $1, null, true, $2, $3)::text", limit, ra, id).Scan(&out); err != nil {
			return claimed{}, err
		}
		c := claimed{blocks: blocks() - before}
		require.NoError(t, tx.Commit(ctx))
		var res struct {
			Tasks []struct {
				InputData struct {
					N int `json:"n"`
				} `json:"input_data"`
			} `json:"tasks"`
			After *cursor `json:"after"`
		}
		require.NoError(t, json.Unmarshal(out, &res))
		for _, task := range res.Tasks {
			c.ns = append(c.ns, task.InputData.N)
		}
		c.after = res.After
		return c, nil
	}
	claim := func(limit int, after *cursor) (claimed, error) { return claimAs(user, limit, after) }
	seq := func(from, to int) []int {
		var s []int
		for n := from; n <= to; n++ {
			s = append(s, n)
		}
		return s
	}

	// 4,000 tasks claimed from the head, in queue order; each claim says
	// where it stopped.
	var after *cursor
	for i := range 8 {
		c, err := claim(500, nil)
		require.NoError(t, err)
		require.ElementsMatch(t, seq(500*i+1, 500*i+500), c.ns)
		require.NotNil(t, c.after)
		after = c.after
	}

	// The next 10 from the cursor, and the 10 after them from the head:
	// queue order either way, but from the head the walk steps over the
	// 4,000 entries claimed before (tens of index pages), from the cursor
	// it does not.
	fromCursor, err := claim(10, after)
	require.NoError(t, err)
	require.ElementsMatch(t, seq(4001, 4010), fromCursor.ns)
	fromHead, err := claim(10, nil)
	require.NoError(t, err)
	require.ElementsMatch(t, seq(4011, 4020), fromHead.ns)
	t.Logf("claiming 10 after 4,000 claimed: %d index blocks from the cursor, %d from the head", fromCursor.blocks, fromHead.blocks)
	require.LessOrEqual(t, fromCursor.blocks, int64(8), "index blocks fetched claiming from the cursor")
	require.GreaterOrEqual(t, fromHead.blocks, int64(25), "index blocks fetched claiming from the head (the entries of the tasks claimed before)")

	// A task behind the cursor (made runnable with an old run_after): a
	// claim the part ahead fills leaves it; one it cannot fill takes it
	// too.
	_, err = b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, run_after)
		values ('generic', 'plan', '{"n": 0}', $1, 'k', now() - interval '2 days')`, user)
	require.NoError(t, err)
	ahead, err := claim(5, fromHead.after)
	require.NoError(t, err)
	require.ElementsMatch(t, seq(4021, 4025), ahead.ns, "the part ahead fills the claim; the task behind waits")
	rest, err := claim(1000, ahead.after)
	require.NoError(t, err)
	require.ElementsMatch(t, append([]int{0}, seq(4026, queue)...), rest.ns, "the part ahead cannot fill the claim: the task behind too")
	last, err := claim(10, rest.after)
	require.NoError(t, err)
	require.Empty(t, last.ns)
	require.Nil(t, last.after, "no cursor from a claim that took nothing")

	// Half a cursor is refused.
	_, err = claim(10, &cursor{RunAfter: rest.after.RunAfter})
	require.ErrorContains(t, err, "p_after_run_after and p_after_id go together")

	// A cursor says only where the caller's own queue is walked from:
	// another tenant who knows this owner's task keys claims its own tasks
	// with them, and nothing of this owner's.
	_, err = b.pool.Exec(ctx, `update public.ai_tasks set status = 'plan', locked_by = null, locked_until = null
		from (select set_config('orchable.engine', 'on', true)) e where user_id = $1 and (input_data ->> 'n')::int <= 3`, user)
	require.NoError(t, err)
	other := dbtest.CreateUser(ctx, t, b.pool)
	_, err = b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, run_after)
		select 'generic', 'plan', jsonb_build_object('n', 100 + n), $1, 'k', now() - interval '1 day' + make_interval(secs => n) from generate_series(1, 3) n`, other)
	require.NoError(t, err)
	got, err := claimAs(other, 1000, ahead.after)
	require.NoError(t, err)
	require.ElementsMatch(t, []int{101, 102, 103}, got.ns, "with the owner's cursor: the caller's own tasks")
	inf := "-infinity"
	got, err = claimAs(other, 1000, &cursor{RunAfter: &inf, ID: &uuid.UUID{}})
	require.NoError(t, err)
	require.Empty(t, got.ns, "with a cursor before every key: nothing more of the caller's, nothing of the owner's")
	var mine int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and status = 'plan'", user).Scan(&mine))
	require.Equal(t, 4, mine, "the owner's runnable tasks (n 0–3) are still runnable")
}

// A claim that finds fewer due tasks than it may take asks whether the
// owner has a batch with a start delay, and reads only such batches to
// answer: not every batch the owner ever launched.
func TestClaimDoesNotReadTheOwnersBatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	user := dbtest.CreateUser(ctx, t, b.pool)
	const batches = 5000
	_, err := b.pool.Exec(ctx, `insert into public.task_batches (name, status, created_by)
		select 'old ' || n, 'completed', $1 from generate_series(1, $2::int) n`, user, batches)
	require.NoError(t, err)
	var delayed uuid.UUID
	require.NoError(t, b.pool.QueryRow(ctx, `insert into public.task_batches (name, status, created_by, execution_delay_seconds)
		values ('delayed', 'processing', $1, 60) returning id`, user).Scan(&delayed))
	_, err = b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, batch_id)
		values ('generic', 'plan', '{}', $1, 'k', null), ('generic', 'plan', '{}', $1, 'k', $2), ('generic', 'plan', '{}', $1, 'k', $2)`, user, delayed)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, "analyze public.task_batches")
	require.NoError(t, err)

	conn, err := b.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	claim := func() (int, int64) {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, user)
		read := func() int64 {
			var n int64
			require.NoError(t, tx.QueryRow(ctx, `select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
				from pg_stat_xact_all_tables where relid = 'public.task_batches'::regclass`).Scan(&n))
			return n
		}
		before := read()
		var out []byte
		require.NoError(t, tx.QueryRow(ctx, "select public.claim_tasks('batches', 300, 10, null, true)::text").Scan(&out))
		rows := read() - before
		require.NoError(t, tx.Commit(ctx))
		var res struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		require.NoError(t, json.Unmarshal(out, &res))
		return len(res.Tasks), rows
	}
	// The task in no batch, and one task of the delayed batch (one start
	// per interval); then nothing is due until the interval has passed.
	n, rows := claim()
	t.Logf("a claim of 2 tasks read %d rows of task_batches (the owner has %d batches)", rows, batches+1)
	require.Equal(t, 2, n)
	require.Less(t, rows, int64(20), "rows of task_batches read by a claim that was not full")
	n, rows = claim()
	t.Logf("an empty claim read %d rows of task_batches", rows)
	require.Zero(t, n)
	require.Less(t, rows, int64(20), "rows of task_batches read by a claim that found nothing")
}
