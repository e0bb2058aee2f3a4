package attacks_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// TestBounds are the fan-out and loop drills of SPEC §14 (issue #13 part 2):
// a tenant's own templates cannot make one completion write without bound
// or loop forever. Each prints its figures. The caps are the defaults
// (orchable.engine_limits: 10,000 items per split, 64 MiB of child input
// per completion, depth 100).
func TestBounds(t *testing.T) { //nolint:tparallel // runs before the parallel tests, so its printed timings are its own
	t.Cleanup(printTable)
	pool := dbtest.Pool(t)

	// completeSplit completes one task of B whose stage splits its output's
	// items into a child stage, and reports the result and how long the
	// completion took.
	completeSplit := func(t *testing.T, w *world, input map[string]any, items []any) (map[string]any, time.Duration, int) {
		t.Helper()
		ctx := t.Context()
		p := "B-" + uuid.NewString()[:8]
		w.templates(ctx, t, w.b,
			stage{id: p + "-a", key: "a", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-b"}},
			stage{id: p + "-b", key: "b", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}},
		)
		l := w.launch(ctx, t, w.b, p+"-a", input)
		var claimed []json.RawMessage
		require.NoError(t, w.rpc(ctx, w.b, "claim_tasks", map[string]any{"p_worker": "bounds", "p_limit": 1, "p_task_ids": l.TaskIDs}, &claimed))
		require.Len(t, claimed, 1)
		var res map[string]any
		start := time.Now()
		require.NoError(t, w.rpc(ctx, w.b, "complete_task", map[string]any{
			"p_task_id": l.TaskIDs[0], "p_worker": "bounds", "p_output": map[string]any{"items": items}, "p_usage": map[string]any{},
		}, &res))
		took := time.Since(start)
		var children int
		require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where parent_task_id = $1", l.TaskIDs[0]).Scan(&children))
		return res, took, children
	}

	t.Run("Split100k", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, pool)
		items := make([]any, 100_000)
		for i := range items {
			items[i] = i
		}
		res, took, children := completeSplit(t, w, map[string]any{"x": 1}, items)
		msg, _ := res["error"].(string)
		t.Logf("100,000-item split: status=%v children=%d in %s; %s", res["status"], children, took.Round(time.Millisecond), msg)
		record(t, "7 bounds: 100,000-item split", "SQL as PostgREST", "refused at MAX_SPLIT_ITEMS",
			fmt.Sprintf("status=%v children=%d in %s", res["status"], children, took.Round(time.Millisecond)),
			res["status"] == "failed" && children == 0 && strings.Contains(msg, "MAX_SPLIT_ITEMS"))
	})

	t.Run("Split1MBx300", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, pool)
		items := make([]any, 300)
		for i := range items {
			items[i] = i
		}
		res, took, children := completeSplit(t, w, map[string]any{"doc": strings.Repeat("x", 1<<20)}, items)
		msg, _ := res["error"].(string)
		t.Logf("1 MiB input × 300-item split: status=%v children=%d in %s; %s", res["status"], children, took.Round(time.Millisecond), msg)
		record(t, "7 bounds: 1 MiB input split 300 ways (~300 MB)", "SQL as PostgREST", "refused at MAX_CHILD_INPUT_BYTES",
			fmt.Sprintf("status=%v children=%d in %s", res["status"], children, took.Round(time.Millisecond)),
			res["status"] == "failed" && children == 0 && strings.Contains(msg, "MAX_CHILD_INPUT_BYTES"))
	})

	t.Run("SplitWithinCaps", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, pool)
		items := make([]any, 10_000)
		for i := range items {
			items[i] = i
		}
		res, took, children := completeSplit(t, w, map[string]any{"x": 1}, items)
		var bytes int64
		require.NoError(t, w.pool.QueryRow(t.Context(), "select coalesce(sum(pg_column_size(input_data)), 0) from public.ai_tasks where user_id = $1 and stage_key = 'b'", w.b).Scan(&bytes))
		t.Logf("10,000-item split (at the cap): status=%v children=%d, %d bytes of child input, in %s", res["status"], children, bytes, took.Round(time.Millisecond))
		record(t, "7 bounds: 10,000-item split (at the cap)", "SQL as PostgREST", "all children created",
			fmt.Sprintf("children=%d bytes=%d in %s", children, bytes, took.Round(time.Millisecond)), res["status"] == "completed" && children == 10_000)
	})

	t.Run("TemplateLoop", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, pool)
		ctx := t.Context()
		p := "B-" + uuid.NewString()[:8]
		w.templates(ctx, t, w.b,
			stage{id: p + "-ping", key: "ping", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-pong"}},
			stage{id: p + "-pong", key: "pong", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-ping"}},
		)
		w.launch(ctx, t, w.b, p+"-ping", map[string]any{"x": 1})
		start := time.Now()
		for range 200 {
			var claimed []struct {
				Task struct {
					ID uuid.UUID `json:"id"`
				} `json:"task"`
			}
			require.NoError(t, w.rpc(ctx, w.b, "claim_tasks", map[string]any{"p_worker": "loop", "p_limit": 10}, &claimed))
			if len(claimed) == 0 {
				break
			}
			for _, c := range claimed {
				require.NoError(t, w.rpc(ctx, w.b, "complete_task", map[string]any{
					"p_task_id": c.Task.ID, "p_worker": "loop", "p_output": map[string]any{"n": 1}, "p_usage": map[string]any{},
				}, nil))
			}
		}
		var steps int
		var msg string
		require.NoError(t, w.pool.QueryRow(ctx, `select count(*), coalesce(max(error_message) filter (where status = 'failed'), '')
			from public.ai_tasks where user_id = $1`, w.b).Scan(&steps, &msg))
		t.Logf("ping → pong → ping loop: stopped after %d tasks in %s: %.200s", steps, time.Since(start).Round(time.Millisecond), msg)
		record(t, "7 bounds: template loop ping → pong → ping", "SQL as PostgREST", "stopped at MAX_LINEAGE_DEPTH naming the cycle",
			fmt.Sprintf("tasks=%d", steps), steps == 100 && strings.Contains(msg, "MAX_LINEAGE_DEPTH") && strings.Contains(msg, "loops: ping → pong → ping"))
	})
}
