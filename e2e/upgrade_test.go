package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
)

// TestFrontendSupabaseJSOnUpgradedDatabase runs the supabase-js front-end
// flow on a database that had the original orchable schema, with a few of
// its rows, and was upgraded in place by `orchable migrate` (run twice).
// The migrations package's upgrade test checks the rows in detail.
func TestFrontendSupabaseJSOnUpgradedDatabase(t *testing.T) {
	t.Parallel()
	frontendFlow(t, stackOpts{InProcGemini: true, Original: true, Env: map[string]string{"SWEEP_INTERVAL": "200ms"}})
}

// originalHubAsset is a hub_assets row of the original database: the
// front-end flow publishes its pipeline with it (the original's foreign key
// from lab_orchestrator_configs.hub_asset_id stays).
const originalHubAsset = "6f726368-6162-4c65-8000-000000000001"

// createOriginalSchema gives the empty database at url the local shim and
// the original orchable schema, with a user's half-finished batch in it.
func createOriginalSchema(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sql, err := os.ReadFile(filepath.Join("..", "migrations", "testdata", "original_schema.sql"))
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	for _, q := range []string{
		migrations.ShimSQL(), string(sql),
		`insert into public.hub_assets (id, name) values ('` + originalHubAsset + `', 'hub')`, `
with u as (
  insert into auth.users (id, aud, role, email) values (gen_random_uuid(), 'authenticated', 'authenticated', 'legacy@example.test')
  returning id
), b as (
  insert into public.task_batches (name, created_by, status, total_tasks) select 'legacy', id, 'processing', 4 from u returning id, created_by
)
insert into public.ai_tasks (task_type, status, user_id, batch_id, input_data, output_data)
select 'legacy', s::public.ai_task_status, b.created_by, b.id, '{"topic": "t"}',
       case when s = 'completed' then '{"ok": true}'::jsonb end
from b, unnest(array['completed', 'running', 'pending', 'failed']) s`,
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err)
	}
}
