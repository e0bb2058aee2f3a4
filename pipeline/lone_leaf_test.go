package pipeline_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// callLog records the functions the RPCs it passes on call, in order.
type callLog struct {
	supabase.DB

	mu    sync.Mutex
	calls []string
}

func (l *callLog) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	l.mu.Lock()
	l.calls = append(l.calls, fn)
	l.mu.Unlock()
	return l.DB.RPC(ctx, id, fn, args, out)
}

// take returns the calls recorded since the last take.
func (l *callLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

// TestLoneLeafCompletesThroughCompleteTasks: a completion written alone goes
// through complete_tasks when its claim says the task is a leaf (its
// template names no successors, no approval is needed), and through
// complete_task otherwise (a spawner; a task that needs approval). The
// choice is only one of cost: a task the claim could not tell has
// successors of its own (next_task_config) is taken for a leaf and still
// gets its successor, and each task ends as complete_task would leave it.
func TestLoneLeafCompletesThroughCompleteTasks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ll-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "L", key: "leaf", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}},
		stage{id: p + "N", key: "next", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}},
		stage{id: p + "S", key: "spawner", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "N"}},
		stage{id: p + "A", key: "approval", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}, approval: true},
	)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	log := &callLog{DB: b.db}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ll"}, log, b.gen)

	// runAlone claims the user's one due task and runs it: its completion
	// is the only one, so it is written alone.
	runAlone := func(stageKey string) (uuid.UUID, pipeline.Result) {
		t.Helper()
		claimed, err := r.Claim(ctx, id, 10, nil)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		require.Equal(t, stageKey, deref(claimed[0].Task.StageKey))
		log.take()
		return claimed[0].Task.ID, r.Run(ctx, id, &claimed[0])
	}
	status := func(task uuid.UUID) string {
		t.Helper()
		var s string
		require.NoError(t, b.pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", task).Scan(&s))
		return s
	}
	children := func(task uuid.UUID) []string {
		t.Helper()
		var keys []string
		require.NoError(t, b.pool.QueryRow(ctx, "select coalesce(array_agg(stage_key order by stage_key), '{}') from public.ai_tasks where parent_task_id = $1", task).Scan(&keys))
		return keys
	}

	b.launch(ctx, t, b.user, p+"L", map[string]any{"i": 1})
	task, res := runAlone("leaf")
	require.Equal(t, pipeline.OutcomeCompleted, res.Outcome, "%v", res.Err)
	require.Equal(t, []string{"complete_tasks"}, log.take(), "a leaf alone")
	require.Equal(t, "completed", status(task))
	require.Empty(t, children(task))

	b.launch(ctx, t, b.user, p+"S", map[string]any{"i": 2})
	task, res = runAlone("spawner")
	require.Equal(t, pipeline.OutcomeCompleted, res.Outcome, "%v", res.Err)
	require.Equal(t, []string{"complete_task"}, log.take(), "a task with a successor alone")
	require.Equal(t, "completed", status(task))
	require.Equal(t, []string{"next"}, children(task))
	next, res := runAlone("next") // the successor: a leaf
	require.Equal(t, pipeline.OutcomeCompleted, res.Outcome, "%v", res.Err)
	require.Equal(t, []string{"complete_tasks"}, log.take())
	require.Equal(t, "completed", status(next))

	b.launch(ctx, t, b.user, p+"A", map[string]any{"i": 3})
	task, res = runAlone("approval")
	require.Equal(t, pipeline.OutcomeGenerated, res.Outcome, "%v", res.Err)
	require.Equal(t, []string{"complete_task"}, log.take(), "a task that needs approval")
	require.Equal(t, "generated", status(task))

	// A task of the leaf's template with a successor of its own: the claim
	// does not return next_task_config, so it is taken for a leaf, and
	// complete_tasks still creates its successor.
	var own uuid.UUID
	require.NoError(t, b.pool.QueryRow(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, prompt_template_id, next_task_config)
		values ('generic', 'plan', '{"i": 4}', $1, 'leaf', $2, $3) returning id`, b.user, p+"L", `["`+p+`N"]`).Scan(&own))
	task, res = runAlone("leaf")
	require.Equal(t, own, task)
	require.Equal(t, pipeline.OutcomeCompleted, res.Outcome, "%v", res.Err)
	require.Equal(t, []string{"complete_tasks"}, log.take())
	require.Equal(t, "completed", status(task))
	require.Equal(t, []string{"next"}, children(task), "its own successor, made by complete_tasks")
	dbtest.FoldCounters(ctx, t, b.pool)
}
