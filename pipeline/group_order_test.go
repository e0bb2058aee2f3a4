package pipeline_test

import (
	"encoding/json"
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
