package pipeline_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

// The task columns a prompt may read are the JSON that json.Marshal makes
// of each, strings escaped (a stage key is the user's to choose).
func TestTaskFieldsAreEachColumnsJSON(t *testing.T) {
	t.Parallel()
	batch, launch := uuid.New(), uuid.New()
	stage, lo := `say "hi" <b>\ ünï`+"\n\u2028", "LO-1"
	seq := -7
	task := &pipeline.Task{
		ID: uuid.New(), TaskType: "gen\"eric", StepNumber: 12, StageKey: &stage,
		BatchID: &batch, LaunchID: &launch, LoCode: &lo, Sequence: &seq,
	}
	want := map[string]any{
		"id": task.ID, "task_type": task.TaskType, "step_number": task.StepNumber, "stage_key": stage,
		"batch_id": batch, "launch_id": launch, "lo_code": lo, "sequence": seq,
	}
	got := pipeline.TaskFields(task)
	require.Len(t, got, len(want))
	for k, v := range want {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(b), string(got[k]), "field %s", k)
	}

	// Absent columns are absent, not null.
	got = pipeline.TaskFields(&pipeline.Task{ID: task.ID, TaskType: "generic"})
	require.ElementsMatch(t, []string{"id", "task_type", "step_number"}, slices.Collect(maps.Keys(got)))
}

// BenchmarkTaskFields is the prompt fields of a launched task.
func BenchmarkTaskFields(b *testing.B) {
	batch, launch, stage, seq := uuid.New(), uuid.New(), "summarise", 3
	task := &pipeline.Task{ID: uuid.New(), TaskType: "generic", StepNumber: 2, StageKey: &stage, BatchID: &batch, LaunchID: &launch, Sequence: &seq}
	b.ReportAllocs()
	for b.Loop() {
		_ = pipeline.TaskFields(task)
	}
}
