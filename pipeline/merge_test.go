package pipeline_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
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
