package pipeline_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// A set-based claim or completion counts its status changes once per batch
// (orchable.count_moves), not once per task (the row trigger), and the
// counters stay exact through every path: the claim, the completion of
// tasks with successors (one at a time, each counted by the row trigger),
// the one-by-one fallback when an item raises, and the leaf UPDATE.
func TestBatchCountersPerStatement(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "bc-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "first", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "second", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}},
	)
	rows := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"row": i}
		}
		return out
	}
	b1 := b.launch(ctx, t, b.user, p+"A", rows(4)...)
	b2 := b.launch(ctx, t, b.user, p+"A", rows(3)...)
	batches := []uuid.UUID{b1, b2}

	// call runs one engine function as the user in its own transaction and
	// returns its result and the delta rows of moves (d_total = 0) that
	// transaction wrote for the two batches. The fold before it leaves none
	// committed, and only this test moves these batches' tasks.
	call := func(sql string, args ...any) (json.RawMessage, int) {
		t.Helper()
		dbtest.FoldCounters(ctx, t, b.pool)
		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, b.user)
		var out json.RawMessage
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&out))
		_, err = tx.Exec(ctx, "reset role")
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.QueryRow(ctx, "select count(*) from public.task_batch_counter_deltas where batch_id = any($1) and d_total = 0", batches).Scan(&n))
		require.NoError(t, tx.Commit(ctx))
		return out, n
	}
	type task struct {
		ID      uuid.UUID `json:"id"`
		BatchID uuid.UUID `json:"batch_id"`
	}
	claim := func(want int) map[uuid.UUID][]uuid.UUID {
		t.Helper()
		out, n := call("select public.claim_tasks('bc', 300, 100, null, true)")
		var c struct {
			Tasks []task `json:"tasks"`
		}
		require.NoError(t, json.Unmarshal(out, &c))
		require.Len(t, c.Tasks, want)
		require.Equal(t, 2, n, "one delta row per batch for the claim")
		by := map[uuid.UUID][]uuid.UUID{}
		for _, x := range c.Tasks {
			by[x.BatchID] = append(by[x.BatchID], x.ID)
		}
		return by
	}
	items := func(ids ...uuid.UUID) []map[string]any {
		out := make([]map[string]any, len(ids))
		for i, id := range ids {
			out[i] = map[string]any{"task_id": id, "output": map[string]any{"ok": i}}
		}
		return out
	}
	complete := func(items []map[string]any) ([]map[string]any, int) {
		t.Helper()
		out, n := call("select public.complete_tasks('bc', $1::json)", items)
		var res []map[string]any
		require.NoError(t, json.Unmarshal(out, &res))
		require.Len(t, res, len(items))
		return res, n
	}

	first := claim(7)
	// Batch 2's three first-stage tasks have a 1:1 successor: completed by
	// one UPDATE with their children made by one INSERT, and counted once
	// for the batch.
	res, n := complete(items(first[b2]...))
	for _, r := range res {
		require.EqualValues(t, 1, r["created"], "%v", r)
	}
	require.Equal(t, 1, n, "one delta row per batch for tasks completed with their successors set-based")
	// Batch 1's four and an item of no task: the group raises and is redone
	// item by item, each counted by the row trigger.
	res, n = complete(append(items(first[b1]...), map[string]any{"task_id": uuid.New(), "output": map[string]any{}}))
	for _, r := range res[:4] {
		require.EqualValues(t, 1, r["created"], "%v", r)
	}
	require.Contains(t, res[4], "error")
	require.Equal(t, 4, n, "the fallback counts each task")

	second := claim(7)
	res, n = complete(items(append(second[b1], second[b2]...)...))
	require.Equal(t, 2, n, "one delta row per batch for the leaf completion")
	for _, r := range res { // every item a leaf: the early return's results
		require.Equal(t, map[string]any{"status": "completed", "created": 0.0, "waiting": 0.0}, r)
	}

	dbtest.FoldCounters(ctx, t, b.pool)
	for batch, want := range map[uuid.UUID]int{b1: 8, b2: 6} {
		var total, pending, processing, completed, failed, recount int
		require.NoError(t, b.pool.QueryRow(ctx, `select total_tasks, pending_tasks, processing_tasks, completed_tasks, failed_tasks,
			(select count(*) from public.ai_tasks t where t.batch_id = b.id and t.status = 'completed')
			from public.task_batches b where id = $1`, batch).Scan(&total, &pending, &processing, &completed, &failed, &recount))
		require.Equal(t, []int{want, 0, 0, want, 0, want}, []int{total, pending, processing, completed, failed, recount}, "batch %s", batch)
	}
}

// A claim counts its moves only when a claimed task is in a batch: for
// tasks inserted alone (no batch) it does not call orchable.count_moves at
// all, whose call alone was about a tenth of a one-task claim
// (docs/performance.md, twenty-fourth round). Tasks of a batch are still
// counted, once per batch.
func TestClaimCountsOnlyTasksInBatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cb-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}})
	_, err := b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, step_number, stage_key, prompt_template_id)
		select 'generic', 'plan', '{}', $1, 1, 'only', $2 from generate_series(1, 3)`, b.user, p+"A")
	require.NoError(t, err)

	// claim claims up to ten of the user's tasks in a transaction of its
	// own and returns the tasks' batches and how many times that
	// transaction called count_moves (pg_stat_xact_user_functions, with
	// every function tracked for the transaction).
	claim := func() ([]*uuid.UUID, int64) {
		t.Helper()
		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		var out json.RawMessage
		calls := dbtest.FunctionCalls(ctx, t, tx, "orchable.count_moves", func() {
			dbtest.AsUser(ctx, t, tx, b.user)
			require.NoError(t, tx.QueryRow(ctx, "select public.claim_tasks('cb', 300, 10, null, true)").Scan(&out))
		})
		require.NoError(t, tx.Commit(ctx))
		var c struct {
			Tasks []struct {
				BatchID *uuid.UUID `json:"batch_id"`
			} `json:"tasks"`
		}
		require.NoError(t, json.Unmarshal(out, &c))
		batches := make([]*uuid.UUID, len(c.Tasks))
		for i, x := range c.Tasks {
			batches[i] = x.BatchID
		}
		return batches, calls
	}

	batches, calls := claim()
	require.Len(t, batches, 3)
	for _, id := range batches {
		require.Nil(t, id)
	}
	require.Zero(t, calls, "a claim of tasks in no batch counts nothing")

	batch := b.launch(ctx, t, b.user, p+"A", map[string]any{"row": 0}, map[string]any{"row": 1})
	batches, calls = claim()
	require.Len(t, batches, 2)
	for _, id := range batches {
		require.Equal(t, batch, *id)
	}
	require.Equal(t, int64(1), calls, "a claim of tasks in a batch counts them, once")
	dbtest.FoldCounters(ctx, t, b.pool)
	var processing, pending int
	require.NoError(t, b.pool.QueryRow(ctx, "select processing_tasks, pending_tasks from public.task_batches where id = $1", batch).Scan(&processing, &pending))
	require.Equal(t, 2, processing)
	require.Zero(t, pending)
}
