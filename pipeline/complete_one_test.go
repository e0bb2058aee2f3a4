package pipeline_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase/dbtest"
)

// complete_task calls spawn_successors only for a task with successors:
// from its template, from the launcher's snapshot in extra, or from its own
// next_task_config. A leaf completes without it (the same result, about
// 170 us less), and a task waiting for approval spawns nothing either. The
// task's template and its successors' ids are looked up once, by
// complete_task, and handed to spawn_successors (about 50 us less for a
// spawner): the template lookups are complete_task's and one per successor.
func TestCompleteTaskSpawnsOnlyWithSuccessors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cs-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "next", key: "next", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}},
		stage{id: p + "leaf", key: "leaf", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}},
		stage{id: p + "head", key: "head", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "next"}},
		stage{id: p + "gate", key: "gate", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "next"}, approval: true},
	)
	id, err := claimsIdentity{}.Identity(ctx, b.user)
	require.NoError(t, err)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cs"}, b.db, b.gen)

	for _, c := range []struct {
		name     string
		template string
		extra    string // the task's extra
		ntc      any    // the task's next_task_config
		status   string // after the completion
		created  int
		spawns   int64 // calls of spawn_successors
		lookups  int64 // calls of usable_template
		resolves int64 // calls of successor_ids
	}{
		{name: "leaf", template: p + "leaf", extra: `{}`, status: "completed", lookups: 1, resolves: 1},
		{name: "successor of its template", template: p + "head", extra: `{}`, status: "completed", created: 1, spawns: 1, lookups: 2, resolves: 1},
		{
			name: "successor in the launcher's snapshot", template: p + "leaf", extra: `{"next_stage_configs": [{"template_id": "` + p + `next"}]}`,
			status: "completed", created: 1, spawns: 1, lookups: 2, resolves: 1,
		},
		{
			name: "successor in next_task_config", template: p + "leaf", extra: `{}`, ntc: `{"next_stage_template_ids": ["` + p + `next"]}`,
			status: "completed", created: 1, spawns: 1, lookups: 2, resolves: 1,
		},
		{name: "waiting for approval", template: p + "gate", extra: `{}`, status: "generated", lookups: 1},
	} {
		var task uuid.UUID
		require.NoError(t, b.pool.QueryRow(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, step_number, stage_key, prompt_template_id, extra, next_task_config)
			select 'generic', 'plan', '{}', $1, 1, stage_key, id, $3::jsonb, $4::jsonb from public.prompt_templates where id = $2 returning id`,
			b.user, c.template, c.extra, c.ntc).Scan(&task), c.name)
		claimed, err := r.Claim(ctx, id, 1, []uuid.UUID{task})
		require.NoError(t, err, c.name)
		require.Len(t, claimed, 1, c.name)

		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		var out json.RawMessage
		calls := dbtest.CallCounts(ctx, t, tx, func() {
			dbtest.AsUser(ctx, t, tx, b.user)
			require.NoError(t, tx.QueryRow(ctx, `select public.complete_task($1, 'cs', '{"v": 1}', '{"total_token_count": 3}')`, task).Scan(&out), c.name)
		}, "orchable.spawn_successors", "orchable.usable_template", "orchable.successor_ids")
		require.NoError(t, tx.Commit(ctx))

		var res struct {
			Status  string `json:"status"`
			Created int    `json:"created"`
		}
		require.NoError(t, json.Unmarshal(out, &res))
		require.Equal(t, c.status, res.Status, c.name)
		require.Equal(t, c.created, res.Created, c.name)
		require.Equal(t, c.spawns, calls["orchable.spawn_successors"], "%s: calls of spawn_successors", c.name)
		require.Equal(t, c.lookups, calls["orchable.usable_template"], "%s: calls of usable_template", c.name)
		require.Equal(t, c.resolves, calls["orchable.successor_ids"], "%s: calls of successor_ids", c.name)
		var status string
		var tokens, children int
		require.NoError(t, b.pool.QueryRow(ctx, `select status, total_token_count, (select count(*) from public.ai_tasks c where c.parent_task_id = t.id)
			from public.ai_tasks t where t.id = $1`, task).Scan(&status, &tokens, &children), c.name)
		require.Equal(t, c.status, status, c.name)
		require.Equal(t, 3, tokens, c.name)
		require.Equal(t, c.created, children, c.name)
	}
}
