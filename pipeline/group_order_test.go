package pipeline_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

// One complete_tasks call holding a split parent and feeders of the merge
// its split feeds must not close the merge before the parent's children
// exist: a completed task is one whose successors are created. Mapper M1
// splits into two designers; mapper M2 (one designer) and M1's two designers
// are then completed in one call, in every order; the merge over the batch
// must hold all three designers' outputs. (Completing the whole call with
// one UPDATE before any task spawned let a designer's barrier check see M2
// completed with no child yet, and close over two outputs: TestAcceptance
// caught it once in a dozen CI runs.)
func TestCompleteTasksSplitParentAndFeedersInOneCall(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "go-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "M", key: "mapper", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "D"}},
		stage{id: p + "D", key: "designer", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "V"}},
		stage{id: p + "V", key: "validator", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
	)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "go"}, b.db, b.gen)
	complete := func(items ...map[string]any) {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "go", "p_items": items}, &res))
		for _, x := range res {
			require.NotContains(t, x, "error", "%v", x)
		}
	}
	item := func(task uuid.UUID, out any) map[string]any { return map[string]any{"task_id": task, "output": out} }
	claim := func(ids ...uuid.UUID) []pipeline.Claimed {
		t.Helper()
		c, err := r.Claim(ctx, id, 100, ids)
		require.NoError(t, err)
		require.Len(t, c, len(ids))
		return c
	}

	orders := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for n, order := range orders {
		batch := b.launch(ctx, t, b.user, p+"M", map[string]any{"r": 1}, map[string]any{"r": 2})
		var mappers []uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, "select array_agg(id order by sequence) from public.ai_tasks where batch_id = $1", batch).Scan(&mappers))
		m1, m2 := mappers[0], mappers[1]
		claim(m1)
		complete(item(m1, map[string]any{"items": []string{"a", "b"}}))
		var designers []uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, "select array_agg(id) from public.ai_tasks where batch_id = $1 and stage_key = 'designer'", batch).Scan(&designers))
		require.Len(t, designers, 2)
		claim(m2, designers[0], designers[1])
		group := []map[string]any{
			item(designers[0], map[string]any{"output_data": []string{"d1"}}),
			item(designers[1], map[string]any{"output_data": []string{"d2"}}),
			item(m2, map[string]any{"items": []string{"c"}}),
		}
		complete(group[order[0]], group[order[1]], group[order[2]])
		var d3 uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, "select id from public.ai_tasks where batch_id = $1 and stage_key = 'designer' and parent_task_id = $2", batch, m2).Scan(&d3))
		claim(d3)
		complete(item(d3, map[string]any{"output_data": []string{"d3"}}))

		var input json.RawMessage
		require.NoError(t, b.pool.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'validator'", batch).Scan(&input))
		var in struct {
			OutputData []string `json:"output_data"`
			Count      int      `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key
		}
		require.NoError(t, json.Unmarshal(input, &in))
		require.ElementsMatch(t, []string{"d1", "d2", "d3"}, in.OutputData, "order %d %v", n, order)
		require.Equal(t, 3, in.Count)
	}
}

// Feeders of a barrier are completed set-based, but only of one barrier per
// call: a barrier upstream of another must be settled before the other is
// checked. Rows R1 and R2 each split into parts that feed merge1 (one per
// row, "isolated"); each merge1 task feeds merge2 (one over the batch). One
// call completes R1's merge1 task (a feeder of merge2) with R2's two parts
// (feeders of merge1). merge2 must wait for R2's merge1 task: checked while
// R2's parts were completed but their merge1 not yet made, it closed over
// R1 alone. Both template orders are run, as the classification takes the
// barriers in template order (so each barrier is once the set-based one),
// and the items in both orders.
func TestCompleteTasksFeedersOfTwoBarriersInOneCall(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "tb"}, b.db, b.gen)
	item := func(task uuid.UUID, out any) map[string]any { return map[string]any{"task_id": task, "output": out} }
	complete := func(items ...map[string]any) {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "tb", "p_items": items}, &res))
		require.Len(t, res, len(items))
		for _, x := range res {
			require.Equal(t, "completed", x["status"], "%v", x)
		}
	}
	claim := func(ids ...uuid.UUID) {
		t.Helper()
		c, err := r.Claim(ctx, id, 100, ids)
		require.NoError(t, err)
		require.Len(t, c, len(ids))
	}
	ids := func(q string, args ...any) []uuid.UUID {
		t.Helper()
		var out []uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, q, args...).Scan(&out))
		return out
	}

	for _, merge1First := range []bool{true, false} {
		for _, reversed := range []bool{false, true} {
			p := "tb-" + uuid.NewString()[:8] + "-"
			m1, parts := p+"b-merge1", p+"a-parts"
			if merge1First {
				m1, parts = p+"a-merge1", p+"b-parts"
			}
			b.templates(ctx, t, b.user,
				stage{id: p + "rows", key: "rows", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{parts}},
				stage{id: parts, key: "parts", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{m1}},
				stage{id: m1, key: "merge1", prompt: "x", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "isolated"}, next: []string{p + "merge2"}},
				stage{id: p + "merge2", key: "merge2", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
			)
			batch := b.launch(ctx, t, b.user, p+"rows", map[string]any{"r": 1}, map[string]any{"r": 2})
			rows := ids("select array_agg(id order by sequence) from public.ai_tasks where batch_id = $1", batch)
			claim(rows...)
			complete(item(rows[0], map[string]any{"items": []string{"a", "b"}}), item(rows[1], map[string]any{"items": []string{"c", "d"}}))
			r1 := ids("select array_agg(id) from public.ai_tasks where batch_id = $1 and stage_key = 'parts' and root_task_id = $2", batch, rows[0])
			r2 := ids("select array_agg(id) from public.ai_tasks where batch_id = $1 and stage_key = 'parts' and root_task_id = $2", batch, rows[1])
			require.Len(t, r1, 2)
			require.Len(t, r2, 2)
			claim(r1...)
			complete(item(r1[0], map[string]any{"output_data": []string{"a"}}), item(r1[1], map[string]any{"output_data": []string{"b"}}))
			merge1R1 := ids("select array_agg(id) from public.ai_tasks where batch_id = $1 and stage_key = 'merge1'", batch)
			require.Len(t, merge1R1, 1, "R1's merge1 closes over its two parts")

			claim(merge1R1[0], r2[0], r2[1])
			group := []map[string]any{
				item(merge1R1[0], map[string]any{"output_data": []string{"m1-r1"}}),
				item(r2[0], map[string]any{"output_data": []string{"c"}}),
				item(r2[1], map[string]any{"output_data": []string{"d"}}),
			}
			if reversed {
				group[0], group[2] = group[2], group[0]
			}
			complete(group...)
			require.Empty(t, ids("select coalesce(array_agg(id), '{}') from public.ai_tasks where batch_id = $1 and stage_key = 'merge2'", batch),
				"merge2 waits for R2's merge1 (merge1 first %v, reversed %v)", merge1First, reversed)
			merge1R2 := ids("select array_agg(id) from public.ai_tasks where batch_id = $1 and stage_key = 'merge1' and id <> $2", batch, merge1R1[0])
			require.Len(t, merge1R2, 1, "R2's merge1 closes over its two parts in the same call")

			claim(merge1R2[0])
			complete(item(merge1R2[0], map[string]any{"output_data": []string{"m1-r2"}}))
			var in struct {
				OutputData []string `json:"output_data"`
				Count      int      `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key
			}
			var input json.RawMessage
			require.NoError(t, b.pool.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'merge2'", batch).Scan(&input))
			require.NoError(t, json.Unmarshal(input, &in))
			require.ElementsMatch(t, []string{"m1-r1", "m1-r2"}, in.OutputData, "merge1 first %v, reversed %v", merge1First, reversed)
			require.Equal(t, 2, in.Count)
		}
	}
}

// What complete_one decides for a feeder stays with complete_one when
// feeders are completed set-based: a feeder at the lineage depth cap fails
// (and its merge closes over the others), a feeder in a cancelled batch
// creates nothing, a feeder whose stage needs approval waits for it.
func TestCompleteTasksFeedersLeftToCompleteOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "fl-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "rows", key: "rows", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "parts"}},
		stage{id: p + "parts", key: "parts", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "merge"}},
		stage{id: p + "merge", key: "merge", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
		stage{id: p + "arows", key: "arows", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "aparts"}},
		stage{id: p + "aparts", key: "aparts", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "amerge"}, approval: true},
		stage{id: p + "amerge", key: "amerge", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
	)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "fl"}, b.db, b.gen)
	item := func(task uuid.UUID, out any) map[string]any { return map[string]any{"task_id": task, "output": out} }
	complete := func(items ...map[string]any) []map[string]any {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "fl", "p_items": items}, &res))
		require.Len(t, res, len(items))
		return res
	}
	claim := func(ids ...uuid.UUID) {
		t.Helper()
		c, err := r.Claim(ctx, id, 100, ids)
		require.NoError(t, err)
		require.Len(t, c, len(ids))
	}
	parts := func(root string, n int) (uuid.UUID, []uuid.UUID) {
		t.Helper()
		batch := b.launch(ctx, t, b.user, root, map[string]any{"r": 1})
		var row uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, "select id from public.ai_tasks where batch_id = $1", batch).Scan(&row))
		claim(row)
		items := make([]string, n)
		for i := range items {
			items[i] = strconv.Itoa(i)
		}
		res := complete(item(row, map[string]any{"items": items}))
		require.EqualValues(t, n, res[0]["created"], "%v", res[0])
		var ids []uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, "select array_agg(id order by sequence) from public.ai_tasks where parent_task_id = $1", row).Scan(&ids))
		claim(ids...)
		return batch, ids
	}
	out := func(s string) map[string]any { return map[string]any{"output_data": []string{s}} }

	// The depth cap: one of three parts is at the last step.
	batch, ids := parts(p+"rows", 3)
	_, err := b.pool.Exec(ctx, "update public.ai_tasks set step_number = (select max_depth from orchable.engine_limits where id) where id = $1", ids[0])
	require.NoError(t, err)
	res := complete(item(ids[0], out("a")), item(ids[1], out("b")), item(ids[2], out("c")))
	require.Equal(t, "failed", res[0]["status"], "%v", res[0])
	require.Contains(t, res[0]["error"], "lineage depth cap")
	require.EqualValues(t, 0, res[0]["created"], "a failed task reports nothing created")
	for _, x := range res[1:] {
		require.Equal(t, map[string]any{"status": "completed", "created": 0.0, "waiting": 1.0}, x)
	}
	var input json.RawMessage
	require.NoError(t, b.pool.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'merge'", batch).Scan(&input))
	var in struct {
		OutputData []string `json:"output_data"`
		Count      int      `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key
		Failed     int      `json:"_failed_count"`      //nolint:tagliatelle // the engine's key
	}
	require.NoError(t, json.Unmarshal(input, &in))
	require.ElementsMatch(t, []string{"b", "c"}, in.OutputData)
	require.Equal(t, 2, in.Count)
	require.Equal(t, 1, in.Failed)

	// A cancelled batch: the parts complete, nothing is created.
	batch, ids = parts(p+"rows", 2)
	require.NoError(t, b.db.RPC(ctx, id, "cancel_batch", map[string]any{"p_batch_id": batch}, nil))
	res = complete(item(ids[0], out("a")), item(ids[1], out("b")))
	for _, x := range res {
		require.Equal(t, map[string]any{"status": "completed", "created": 0.0, "waiting": 0.0}, x)
	}
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where batch_id = $1 and stage_key = 'merge'", batch).Scan(&n))
	require.Zero(t, n)

	// Approval: the parts wait for it, nothing is created.
	batch, ids = parts(p+"arows", 2)
	res = complete(item(ids[0], out("a")), item(ids[1], out("b")))
	for _, x := range res {
		require.Equal(t, "generated", x["status"], "%v", x)
	}
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where batch_id = $1 and stage_key = 'amerge'", batch).Scan(&n))
	require.Zero(t, n)
}

// A task whose only successor is a 1:1 stage or a per-item split is
// completed set-based with its children made by one INSERT. The task and
// its children must be what complete_one makes: the same parent is
// completed both ways (two batches of identical rows, with usage) and every
// column of the task and of its children is compared, ids and times aside;
// a leaf likewise. A split whose output is
// empty (a dead end re-checks the merge downstream) or above its bounds
// stays with complete_one.
func TestCompleteTasksSpawnersMatchCompleteOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "sp-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "rows", key: "rows", prompt: "x", cfg: map[string]any{"cardinality": "1:1", "output_mapping": map[string]any{"keep": "$.k"}}, next: []string{p + "split"}},
		stage{id: p + "split", key: "split", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "parts"}},
		stage{id: p + "parts", key: "parts", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "result.items"}, next: []string{p + "merge"}},
		stage{id: p + "merge", key: "merge", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
		stage{id: p + "leaf", key: "leaf", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}},
	)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "sp"}, b.db, b.gen)
	claim := func(ids ...uuid.UUID) {
		t.Helper()
		c, err := r.Claim(ctx, id, 100, ids)
		require.NoError(t, err)
		require.Len(t, c, len(ids))
	}
	usage := map[string]any{
		"model_id": "m", "api_key_id": uuid.New(), "api_key_name": "k", "prompt_token_count": 3,
		"candidates_token_count": 4, "total_token_count": 7, "response_id": "r", "regenerations": 1, "usage": map[string]any{"u": 1},
	}
	item := func(task uuid.UUID, out any) map[string]any {
		return map[string]any{"task_id": task, "output": out, "usage": usage}
	}
	completeTasks := func(items ...map[string]any) []map[string]any {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "sp", "p_items": items}, &res))
		require.Len(t, res, len(items))
		return res
	}
	completeOne := func(task uuid.UUID, out any) map[string]any {
		t.Helper()
		var res map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_task", map[string]any{"p_worker": "sp", "p_task_id": task, "p_output": out, "p_usage": usage}, &res))
		return res
	}
	// completed returns the task as JSON with what differs between the two
	// ways (its own, its parent's, root's, batch's and launch's ids, and
	// times) replaced or left out: what complete_one and the set-based
	// UPDATE write must be the same.
	completed := func(task uuid.UUID) string {
		t.Helper()
		var out string
		require.NoError(t, b.pool.QueryRow(ctx, `select replace(replace(replace(replace(replace(
				(to_jsonb(t) - 'created_at' - 'updated_at' - 'run_after' - 'started_at' - 'completed_at')::text,
				t.id::text, 'SELF'), coalesce(t.parent_task_id::text, '(none)'), 'PARENT'), coalesce(t.root_task_id::text, '(none)'), 'ROOT'),
				coalesce(t.batch_id::text, '(none)'), 'BATCH'), coalesce(t.launch_id::text, '(none)'), 'LAUNCH')
			from public.ai_tasks t where id = $1`, task).Scan(&out))
		return out
	}
	one := func(q string, args ...any) uuid.UUID {
		t.Helper()
		var x uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, q, args...).Scan(&x))
		return x
	}
	// children returns the parent's children, ordered, as JSON with the
	// ids that differ between the two ways (own, parent, root, batch,
	// launch) replaced.
	children := func(parent uuid.UUID) []string {
		t.Helper()
		root := one("select coalesce(root_task_id, id) from public.ai_tasks where id = $1", parent)
		batch := one("select batch_id from public.ai_tasks where id = $1", parent)
		launch := one("select launch_id from public.ai_tasks where id = $1", parent)
		rows, err := b.pool.Query(ctx, `select replace(replace(replace(replace((to_jsonb(t) - 'id' - 'created_at' - 'updated_at' - 'run_after')::text,
				$1, 'PARENT'), $2, 'ROOT'), $3, 'BATCH'), $4, 'LAUNCH')
			from public.ai_tasks t where parent_task_id = $5 order by sequence`, parent.String(), root.String(), batch.String(), launch.String(), parent)
		require.NoError(t, err)
		var out []string
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			out = append(out, s)
		}
		require.NoError(t, rows.Err())
		return out
	}

	// Two identical rows in two batches: each stage of batch A is completed
	// by complete_task (complete_one), of batch B by complete_tasks.
	ba := b.launch(ctx, t, b.user, p+"rows", map[string]any{"k": "v", "n": 1})
	bb := b.launch(ctx, t, b.user, p+"rows", map[string]any{"k": "v", "n": 1})
	stageOf := func(batch uuid.UUID, stage string) uuid.UUID {
		// A split makes several parts: take the first of each batch, so
		// the two compared are the same part.
		return one("select id from public.ai_tasks where batch_id = $1 and stage_key = $2 order by sequence, id limit 1", batch, stage)
	}
	for _, st := range []struct {
		stage string
		out   map[string]any
		n     int
	}{
		{"rows", map[string]any{"k": "kept", "x": 1}, 1},
		{"split", map[string]any{"result": map[string]any{"items": []any{"a", map[string]any{"b": 2}, 3}}}, 1},
		{"parts", map[string]any{"output_data": []string{"p"}}, 0},
	} {
		pa, pb := stageOf(ba, st.stage), stageOf(bb, st.stage)
		claim(pa, pb)
		ra := completeOne(pa, st.out)
		rb := completeTasks(item(pb, st.out))
		require.Equal(t, "completed", ra["status"], "%v", ra)
		require.Equal(t, ra, rb[0], "stage %s: the same result both ways", st.stage)
		require.Equal(t, completed(pa), completed(pb), "stage %s: the same completed task both ways", st.stage)
		if st.stage == "parts" {
			break
		}
		ca, cb := children(pa), children(pb)
		require.NotEmpty(t, ca)
		require.Equal(t, ca, cb, "stage %s: the same children both ways", st.stage)
	}

	// A leaf (the leaf UPDATE and its early return) writes what complete_one
	// writes too.
	la := stageOf(b.launch(ctx, t, b.user, p+"leaf", map[string]any{"k": "v"}), "leaf")
	lb := stageOf(b.launch(ctx, t, b.user, p+"leaf", map[string]any{"k": "v"}), "leaf")
	claim(la, lb)
	require.Equal(t, completeOne(la, map[string]any{"v": 1}), completeTasks(item(lb, map[string]any{"v": 1}))[0])
	require.Equal(t, completed(la), completed(lb), "a leaf: the same completed task both ways")

	// An empty split is a dead end: it stays with complete_one, which
	// re-checks the merge downstream. Row 1 splits into one part; the part
	// and row 2 (splitting into nothing) complete in one call; the merge
	// closes over the one part.
	bc := b.launch(ctx, t, b.user, p+"split", map[string]any{"r": 1}, map[string]any{"r": 2})
	var splits []uuid.UUID
	require.NoError(t, b.pool.QueryRow(ctx, "select array_agg(id order by sequence) from public.ai_tasks where batch_id = $1", bc).Scan(&splits))
	claim(splits...)
	res := completeTasks(item(splits[0], map[string]any{"result": map[string]any{"items": []string{"only"}}}))
	require.EqualValues(t, 1, res[0]["created"], "%v", res[0])
	part := stageOf(bc, "parts")
	claim(part)
	res = completeTasks(item(part, map[string]any{"output_data": []string{"p"}}),
		item(splits[1], map[string]any{"result": map[string]any{"items": []string{}}}))
	require.Equal(t, map[string]any{"status": "completed", "created": 0.0, "waiting": 1.0}, res[0], "the part waits for row 2")
	require.Equal(t, "completed", res[1]["status"], "%v", res[1])
	var merged struct {
		OutputData []string `json:"output_data"`
		Count      int      `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key
	}
	var input json.RawMessage
	require.NoError(t, b.pool.QueryRow(ctx, "select input_data from public.ai_tasks where batch_id = $1 and stage_key = 'merge'", bc).Scan(&input),
		"the dead end's re-check made the merge")
	require.NoError(t, json.Unmarshal(input, &merged))
	require.Equal(t, []string{"p"}, merged.OutputData)
	require.Equal(t, 1, merged.Count)

	// Above the split bound: complete_one fails the task, and nothing is made.
	var limit int
	require.NoError(t, b.pool.QueryRow(ctx, "select max_split_items from orchable.engine_limits where id").Scan(&limit))
	bd := b.launch(ctx, t, b.user, p+"split", map[string]any{"r": 1})
	big := stageOf(bd, "split")
	claim(big)
	res = completeTasks(item(big, map[string]any{"result": map[string]any{"items": make([]int, limit+1)}}))
	require.Equal(t, "failed", res[0]["status"], "%v", res[0])
	require.Contains(t, res[0]["error"], "MAX_SPLIT_ITEMS")
	var made int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where parent_task_id = $1", big).Scan(&made))
	require.Zero(t, made)
}
