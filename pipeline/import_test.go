package pipeline_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

type importBundle struct {
	pool *pgxpool.Pool
	db   *supabase.Direct
}

func importSetup(t *testing.T) *importBundle {
	t.Helper()
	pool := dbtest.Pool(t)
	return &importBundle{pool: pool, db: supabase.NewDirect(pool, nil)}
}

// user creates a user and returns its id and an identity acting as it.
func (b *importBundle) user(ctx context.Context, t *testing.T) (uuid.UUID, supabase.Identity) {
	t.Helper()
	uid := dbtest.CreateUser(ctx, t, b.pool)
	claims, err := json.Marshal(dbtest.UserClaims(uid))
	require.NoError(t, err)
	return uid, supabase.Identity{Token: "test", Claims: claims}
}

type templateState struct {
	UserID    uuid.UUID
	CreatedBy uuid.UUID
	Template  string
	IsActive  bool
	Next      []string
	Config    map[string]any
}

// template reads a template as the table owner (bypassing RLS).
func (b *importBundle) template(ctx context.Context, t *testing.T, id string) templateState {
	t.Helper()
	var s templateState
	require.NoError(t, b.pool.QueryRow(ctx,
		`select user_id, created_by, template, is_active, next_stage_template_ids, stage_config
		 from public.prompt_templates where id = $1`, id).
		Scan(&s.UserID, &s.CreatedBy, &s.Template, &s.IsActive, &s.Next, &s.Config))
	return s
}

func (b *importBundle) count(ctx context.Context, t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, sql, args...).Scan(&n))
	return n
}

func TestImport(t *testing.T) { //nolint:tparallel // the subtests build on the first import and on each other, in order
	t.Parallel()

	ctx := t.Context()
	tb := importSetup(t)
	alice, asAlice := tb.user(ctx, t)
	bundle := loadFixture(t, "orc-02-lesson-plan")
	plan, err := bundle.Plan(alice)
	require.NoError(t, err)

	res, err := pipeline.Import(ctx, tb.db, asAlice, bundle)
	require.NoError(t, err)

	require.Equal(t, plan.Config.ID, res.ConfigID)
	require.Equal(t, []string{plan.Templates[0].ID, plan.Templates[1].ID, plan.Templates[2].ID}, res.TemplateIDs)
	require.Equal(t, plan.Templates[0].ID, res.RootTemplateID)
	require.Equal(t, 3, tb.count(ctx, t, "select count(*) from public.prompt_templates where organization_code = $1 and user_id = $2",
		res.ConfigID.String(), alice))
	require.Equal(t, 1, tb.count(ctx, t, "select count(*) from public.lab_orchestrator_configs where id = $1 and created_by = $2 and jsonb_array_length(steps) = 3",
		res.ConfigID, alice))

	mapper := tb.template(ctx, t, res.TemplateIDs[0])
	require.Equal(t, alice, mapper.UserID)
	require.Equal(t, alice, mapper.CreatedBy)
	require.True(t, mapper.IsActive)
	require.Equal(t, []string{res.TemplateIDs[1]}, mapper.Next)
	designer := tb.template(ctx, t, res.TemplateIDs[1])
	require.Equal(t, "1:N", designer.Config["cardinality"])
	require.Equal(t, "output_data", designer.Config["split_path"])
	require.Equal(t, []any{"mapper"}, designer.Config["dependsOn"])

	t.Run("ReimportUpdatesInPlace", func(t *testing.T) { //nolint:paralleltest // in order: builds on the import above
		changed := loadFixture(t, "orc-02-lesson-plan")
		changed.Steps[1].Prompt = "changed %%input_data%%"

		again, err := pipeline.Import(ctx, tb.db, asAlice, changed)
		require.NoError(t, err)

		require.Equal(t, res.ConfigID, again.ConfigID)
		require.Equal(t, res.TemplateIDs, again.TemplateIDs)
		require.Zero(t, again.Deactivated)
		require.Equal(t, 3, tb.count(ctx, t, "select count(*) from public.prompt_templates where organization_code = $1", res.ConfigID.String()))
		require.Equal(t, 1, tb.count(ctx, t, "select count(*) from public.lab_orchestrator_configs where id = $1", res.ConfigID))
		require.Equal(t, "changed %%input_data%%", tb.template(ctx, t, res.TemplateIDs[1]).Template)
		require.Equal(t, alice, tb.template(ctx, t, res.TemplateIDs[1]).UserID)
	})

	t.Run("OtherUserCannotOverwrite", func(t *testing.T) { //nolint:paralleltest // in order: builds on the import above
		_, asBob := tb.user(ctx, t)
		args := map[string]any{"p_config": plan.Config, "p_templates": plan.Templates}
		for i := range plan.Templates {
			plan.Templates[i].Template = "hijacked"
		}

		// Bob sends Alice's ids: he gets private ids of his own (no error
		// that would tell him Alice's ids exist), and Alice's rows are
		// untouched.
		var got pipeline.ImportResult
		require.NoError(t, tb.db.RPC(ctx, asBob, "import_pipeline", args, &got))
		require.NotEqual(t, res.ConfigID, got.ConfigID)
		for i, id := range got.TemplateIDs {
			require.NotEqual(t, res.TemplateIDs[i], id)
		}
		require.NotEqual(t, "hijacked", tb.template(ctx, t, res.TemplateIDs[0]).Template)
		require.Equal(t, alice, tb.template(ctx, t, res.TemplateIDs[0]).UserID)

		// Templates alone (a config id of Bob's own): the same.
		args["p_config"] = pipeline.ConfigRow{ID: uuid.New(), Name: "bob", Steps: json.RawMessage("[]")}
		var again pipeline.ImportResult
		require.NoError(t, tb.db.RPC(ctx, asBob, "import_pipeline", args, &again))
		require.Equal(t, got.TemplateIDs, again.TemplateIDs, "private ids are stable across re-imports")
		require.Equal(t, alice, tb.template(ctx, t, res.TemplateIDs[0]).UserID)

		// Bob importing the same bundle gets his own copy.
		bobs, err := pipeline.Import(ctx, tb.db, asBob, bundle)
		require.NoError(t, err)
		require.NotEqual(t, res.ConfigID, bobs.ConfigID)
	})

	t.Run("LaunchFromRoot", func(t *testing.T) { //nolint:paralleltest // in order: builds on the import above
		var launched struct {
			BatchID uuid.UUID   `json:"batch_id"`
			TaskIDs []uuid.UUID `json:"task_ids"`
		}
		err := tb.db.RPC(ctx, asAlice, "launch_batch", map[string]any{
			"p_template_id": res.RootTemplateID,
			"p_rows":        []map[string]any{{"batch_number": 1, "lo_count": 1, "topics": []string{"Photosynthesis"}}},
		}, &launched)
		require.NoError(t, err)

		require.NotEqual(t, uuid.Nil, launched.BatchID)
		require.Len(t, launched.TaskIDs, 1)
		require.Equal(t, 1, tb.count(ctx, t,
			"select count(*) from public.ai_tasks where batch_id = $1 and stage_key = 'mapper' and task_type = 'pedagogical_mapping' and user_id = $2",
			launched.BatchID, alice))
	})
}

func TestImportDeactivatesDroppedStages(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	tb := importSetup(t)
	_, asUser := tb.user(ctx, t)
	full, err := pipeline.Import(ctx, tb.db, asUser, loadFixture(t, "orc-02-lesson-plan"))
	require.NoError(t, err)

	shorter := loadFixture(t, "orc-02-lesson-plan")
	shorter.Steps = shorter.Steps[:2]
	res, err := pipeline.Import(ctx, tb.db, asUser, shorter)
	require.NoError(t, err)

	require.Equal(t, 1, res.Deactivated)
	require.Equal(t, full.TemplateIDs[:2], res.TemplateIDs)
	require.False(t, tb.template(ctx, t, full.TemplateIDs[2]).IsActive)
	require.Empty(t, tb.template(ctx, t, full.TemplateIDs[1]).Next)
}

func TestImportEveryFixture(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	tb := importSetup(t)
	_, asUser := tb.user(ctx, t)
	for _, dir := range []string{"orc-01-quiz-gen", "orc-02-lesson-plan", "orc-05-social-media", "orc-09-code-review", "orc-10-lesson-plan-advanced"} {
		b := loadFixture(t, dir)
		res, err := pipeline.Import(ctx, tb.db, asUser, b)
		require.NoError(t, err, dir)
		require.Len(t, res.TemplateIDs, len(b.Steps), dir)
	}
}

func TestImportRefused(t *testing.T) {
	t.Parallel()

	ctx := t.Context()
	tb := importSetup(t)
	bundle := loadFixture(t, "orc-05-social-media")

	_, err := pipeline.Import(ctx, tb.db, supabase.Identity{}, bundle)
	require.ErrorIs(t, err, pipeline.ErrNoOwner)

	plan, err := bundle.Plan(uuid.New())
	require.NoError(t, err)
	err = tb.db.RPC(ctx, supabase.Identity{}, "import_pipeline",
		map[string]any{"p_config": plan.Config, "p_templates": plan.Templates}, nil)
	require.ErrorIs(t, err, supabase.ErrForbidden, "anon may not call import_pipeline")

	_, asUser := tb.user(ctx, t)
	err = tb.db.RPC(ctx, asUser, "import_pipeline", map[string]any{"p_config": plan.Config, "p_templates": []any{}}, nil)
	require.ErrorIs(t, err, supabase.ErrBadRequest)
	require.ErrorContains(t, err, "p_templates must be a non-empty JSON array")
}
