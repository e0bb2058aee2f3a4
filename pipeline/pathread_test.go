package pipeline_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestPathsReadOncePerTask: a completion reads a split's array from its
// parent's output once per parent for its bounds and once more to make the
// children, and a merge reads each merged feeder's output once
// (orchable.json_path). Written as subqueries the planner flattened, each
// read ran once per mention of its value: 46,000 reads per 13,000
// pipeline tasks in throughput-pipeline instead of 12,000
// (docs/performance.md, twenty-sixth round).
func TestPathsReadOncePerTask(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "pr-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "mapper", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "designer", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "C"}},
		stage{id: p + "C", key: "validator", prompt: "x", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "isolated"}},
	)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"r": 1}, map[string]any{"r": 2})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "pr"}, b.db, b.gen)

	// complete completes the items in one complete_tasks call, in a
	// transaction of its own with every function tracked, and returns the
	// results and how many times the call read a path.
	complete := func(items []map[string]any) ([]map[string]any, int64) {
		t.Helper()
		body, err := json.Marshal(items)
		require.NoError(t, err)
		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		var res []map[string]any
		n := dbtest.FunctionCalls(ctx, t, tx, "orchable.json_path", func() {
			dbtest.AsUser(ctx, t, tx, b.user)
			require.NoError(t, tx.QueryRow(ctx, "select public.complete_tasks('pr', $1::json)", string(body)).Scan(&res))
		})
		require.NoError(t, tx.Commit(ctx))
		require.Len(t, res, len(items))
		return res, n
	}

	// Two mappers, each split into three designers: two reads per mapper.
	mappers, err := r.Claim(ctx, id, 100, nil)
	require.NoError(t, err)
	require.Len(t, mappers, 2)
	var items []map[string]any
	for _, c := range mappers {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"items": []string{"a", "b", "c"}}})
	}
	res, reads := complete(items)
	for _, x := range res {
		require.EqualValues(t, 3, x["created"], "%v", x)
	}
	require.EqualValues(t, 4, reads, "each mapper's array read twice: for its bounds, then for its children")

	// The six designers in one call: both scopes close, each merging its
	// three designers' outputs, one read per designer.
	designers, err := r.Claim(ctx, id, 100, nil)
	require.NoError(t, err)
	require.Len(t, designers, 6)
	items = items[:0]
	for i, c := range designers {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"output_data": []int{i}}})
	}
	res, reads = complete(items)
	created := 0
	for _, x := range res {
		require.Equal(t, "completed", x["status"], "%v", x)
		created += int(x["created"].(float64))
	}
	require.Equal(t, 2, created, "each scope closes once")
	require.EqualValues(t, 6, reads, "each merged designer's output read once")

	// What was merged: each validator holds its own three designers' items.
	var merged []int
	require.NoError(t, b.pool.QueryRow(ctx, `select coalesce(jsonb_agg(v::int order by v::int), '[]')::text from public.ai_tasks t,
		jsonb_array_elements_text(t.input_data -> 'output_data') v where t.user_id = $1 and t.stage_key = 'validator'`, b.user).Scan(jsonText{&merged}))
	require.Equal(t, []int{0, 1, 2, 3, 4, 5}, merged)
}

// jsonText scans a JSON text into v.
type jsonText struct{ v any }

func (j jsonText) Scan(src any) error {
	s, _ := src.(string)
	return json.Unmarshal([]byte(s), j.v)
}
