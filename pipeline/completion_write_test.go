package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// failingWrites is a DB whose completion writes fail (as a statement timeout
// would on a real project) while failures lasts.
type failingWrites struct {
	supabase.DB

	failures atomic.Int64
	writes   atomic.Int64
}

func (f *failingWrites) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	if fn == "complete_task" || fn == "complete_tasks" {
		f.writes.Add(1)
		if f.failures.Add(-1) >= 0 {
			return supabase.NewError("57014", "canceling statement due to statement timeout", "", "", true)
		}
	}
	return f.DB.RPC(ctx, id, fn, args, out)
}

// TestCompletionWriteFailureNeverCallsTheModelAgain: a valid answer whose
// completion cannot be written is written again, and when that cannot
// succeed the task fails with the reason; the model is called once either
// way (before, the lease expired and the task ran the model again).
func TestCompletionWriteFailureNeverCallsTheModelAgain(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		givenFails   int64
		expectStatus string
	}{
		{"WrittenOnRetry", 2, "completed"},
		{"NeverWritable", 1 << 30, "failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			p := "cw" + uuid.NewString()[:6]
			b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo valid", cfg: map[string]any{"cardinality": "1:1"}})
			b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 1})

			db := &failingWrites{DB: b.db}
			db.failures.Store(tt.givenFails)
			e := &engine{finished: make(chan pipeline.Result, 16)}
			r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cw-" + p}, db, b.gen)
			d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, ClaimBatch: 1, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
			d.Start(ctx)
			t.Cleanup(func() { _ = d.Stop(context.Background()) })
			e.disps = append(e.disps, d)
			b.quiesce(ctx, t, e, b.user)

			rows := b.tree(ctx, t, b.user)
			require.Len(t, rows, 1)
			require.Equal(t, tt.expectStatus, rows[0].Status, rows[0].ErrorMessage)
			require.EqualValues(t, 1, b.gen.calls.Load(), "the model is called once for an answer that was valid")
			if tt.expectStatus == "failed" {
				require.Contains(t, rows[0].ErrorMessage, "output was valid but could not be written")
				require.Contains(t, rows[0].ErrorMessage, "57014")
				require.EqualValues(t, 4, db.writes.Load(), "the write is tried four times")
			} else {
				require.JSONEq(t, `{"value":"valid"}`, string(rows[0].Output))
			}
		})
	}
}
