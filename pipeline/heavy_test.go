package pipeline_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

// TestHeavyCallsFitSupabaseTimeouts runs the heaviest calls a user makes
// under Supabase's per-role settings (authenticated: statement_timeout 8 s;
// the authenticator: 8 s statement and lock timeouts), which the direct
// transport applies as PostgREST does: a launch of MaxLaunchRows rows and a
// completion that splits into MAX_SPLIT_ITEMS children. It prints the time
// each took.
func TestHeavyCallsFitSupabaseTimeouts(t *testing.T) { //nolint:tparallel // the subtests time one heavy call each, one at a time
	t.Parallel()
	if testing.Short() {
		t.Skip("heavy")
	}
	b := setup(t)
	ctx := t.Context()
	var timeout string
	require.NoError(t, b.pool.QueryRow(ctx, `select coalesce((select split_part(c, '=', 2) from pg_roles r, unnest(r.rolconfig) c
		where r.rolname = 'authenticated' and c like 'statement_timeout=%'), 'none')`).Scan(&timeout))
	require.NotEqual(t, "none", timeout, "the shim gives authenticated Supabase's statement_timeout")

	p := "hv" + uuid.NewString()[:6]
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "splitter", prompt: "FAKE split 1", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "each", prompt: "FAKE echo {{item}}", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)

	t.Run("Launch10000Rows", func(t *testing.T) { //nolint:paralleltest // timed one at a time
		// handlers.MaxLaunchRows: the most rows the API launches at once.
		// (launch_batch itself accepts 100,000, which takes longer than 8 s:
		// measured 10,000 in 0.7 s, 40,000 in 7.7 s on a loaded test box.)
		rows := make([]map[string]any, 10_000)
		for i := range rows {
			rows[i] = map[string]any{"input_data": fmt.Sprintf("row %d with some text to make it realistic", i), "lo_code": fmt.Sprintf("LO-%d", i)}
		}
		start := time.Now()
		var out struct {
			TaskIDs []uuid.UUID `json:"task_ids"`
		}
		require.NoError(t, b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": p + "A", "p_rows": rows}, &out))
		require.Len(t, out.TaskIDs, len(rows))
		t.Logf("heavy: launch_batch rows=%d took=%s (authenticated statement_timeout=%s)", len(rows), time.Since(start).Round(time.Millisecond), timeout)
	})

	t.Run("CompleteWithSplitOf10000", func(t *testing.T) { //nolint:paralleltest // timed one at a time
		var launched struct {
			TaskIDs []uuid.UUID `json:"task_ids"`
		}
		require.NoError(t, b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": p + "A", "p_rows": []map[string]any{{"x": 1}}}, &launched))
		worker := "hv-" + p
		var claimed []json.RawMessage
		require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": worker, "p_lease_seconds": 300, "p_limit": 1, "p_task_ids": launched.TaskIDs}, &claimed))
		require.Len(t, claimed, 1)
		items := make([]int, 10_000)
		for i := range items {
			items[i] = i
		}
		start := time.Now()
		var out json.RawMessage
		err := b.db.RPC(supabase.Idempotent(ctx), id, "complete_task", map[string]any{
			"p_task_id": launched.TaskIDs[0], "p_worker": worker, "p_output": map[string]any{"items": items}, "p_usage": map[string]any{},
		}, &out)
		require.NoError(t, err)
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where parent_task_id = $1", launched.TaskIDs[0]).Scan(&n))
		require.Equal(t, len(items), n)
		t.Logf("heavy: complete_task split=%d took=%s", len(items), time.Since(start).Round(time.Millisecond))
	})
}
