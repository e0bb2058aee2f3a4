package pipeline

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// launchedTask is a task of a launched batch with its input.
func launchedTask(input string) Task {
	batch, launch, stage, lo, seq := uuid.New(), uuid.New(), "explain", "LO-7", 3
	return Task{
		ID: uuid.New(), UserID: uuid.New(), TaskType: "generic", StepNumber: 2, StageKey: &stage,
		BatchID: &batch, LaunchID: &launch, LoCode: &lo, Sequence: &seq, InputData: json.RawMessage(input),
	}
}

// TestTaskFieldsOnlyWhenNamed: the runner's prompt reads the task's fields
// only when a placeholder reaches them, and renders what the fields made
// up front give: a field named alone, under an input member of the same
// name (the input wins), in a path, missing, and templates naming only the
// input (which never make them).
func TestTaskFieldsOnlyWhenNamed(t *testing.T) {
	t.Parallel()
	task := launchedTask(`{"question": "What is a verb?", "lo_code": "from the input", "nested": {"id": 1}}`)
	for _, tmpl := range []string{
		"Explain %%question%%.",
		"Task %%id%% of batch %%batch_id%%, step %%step_number%%, stage %%stage_key%%, #%%sequence%%",
		"%%lo_code%% / %%nested.id%% / %%task_type%%",
		"%%launch_id%% then %%input.question%% and {{question}}",
		"%%id.x%%",
		"%%not_a_field%%",
	} {
		eager := Vars{Input: task.InputData, Task: taskFields(&task)}
		lazy := Vars{Input: task.InputData, task: &lazyFields{task: &task}}
		wantPrompt, wantShared, wantErr := RenderShared(tmpl, eager)
		prompt, shared, err := RenderShared(tmpl, lazy)
		require.Equal(t, wantErr, err, tmpl)
		require.Equal(t, wantPrompt, prompt, tmpl)
		require.Equal(t, wantShared, shared, tmpl)
	}

	fields := &lazyFields{task: &task}
	r, err := newResolver(Vars{Input: task.InputData, task: fields})
	require.NoError(t, err)
	v, ok := r.lookup("question")
	require.True(t, ok)
	require.Equal(t, "What is a verb?", v)
	require.Nil(t, fields.fields, "an input member is found without the task's fields")
	v, ok = r.lookup("step_number")
	require.True(t, ok)
	require.Equal(t, "2", v)
	require.Equal(t, taskFields(&task), fields.fields)

	// Made at most once per prompt, however many times the template is
	// walked (documents placed after task text are moved to the front).
	fields = &lazyFields{task: &task}
	docs := map[string]string{"guide": "Be brief."}
	_, _, err = RenderShared("%%id%% asks: %%question%%\n\n%%GLOBAL_CONTEXT%%", Vars{Input: task.InputData, GlobalContext: docs, task: fields})
	require.NoError(t, err)
	made := fields.fields
	require.NotNil(t, made)
	_, ok = (&resolver{vars: Vars{task: fields}}).root("id")
	require.True(t, ok)
	require.Equal(t, reflect.ValueOf(made).Pointer(), reflect.ValueOf(fields.fields).Pointer(), "made once")
}

// BenchmarkRenderPrompt renders a template that names only the input's
// members, with the task's fields made up front ("eager", as before) and
// as the runner renders it now ("lazy").
func BenchmarkRenderPrompt(b *testing.B) {
	task := launchedTask(`{"question": "What is a verb?", "level": "B1", "lo_code": "LO-7"}`)
	tmpl := "Explain %%question%% to a learner at level %%level%% (objective %%lo_code%%)."
	b.Run("eager", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := RenderShared(tmpl, Vars{Input: task.InputData, Task: taskFields(&task)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lazy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := RenderShared(tmpl, Vars{Input: task.InputData, task: &lazyFields{task: &task}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
