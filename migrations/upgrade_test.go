package migrations_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
)

//go:embed testdata/original_schema.sql
var originalSchemaSQL string

// sharedTables are the tables orchable shares with the original.
var sharedTables = []string{ //nolint:gochecknoglobals // a constant list; Go has no constant slices
	"ai_tasks", "task_batches", "prompt_templates", "custom_components",
	"lab_orchestrator_configs", "user_api_keys", "api_key_health", "api_key_usage_log",
}

// upgradeSeed is what the original database holds before the upgrade.
type upgradeSeed struct {
	owner, other                 uuid.UUID
	split, approval, misc        uuid.UUID // batches
	splitRoot, freshRoot, failed uuid.UUID // batch split
	running, pending, processing uuid.UUID // children of splitRoot
	awaiting, awaitingChild      uuid.UUID // batch approval
	approved, generated, orphan  uuid.UUID // batch misc
}

// seedOriginal writes rows as the original system left them: a batch with a
// half-finished split (the parent completed, its children completed,
// running, pending and processing), a root never started and a failed one;
// a pending approval whose child n8n had already inserted; tasks in every
// other old status, one without user_id; double-counted batch counters;
// plaintext keys (a personal and a free-pool one) with health and usage
// rows.
// With oldEnum, the enum lacks generated and skipped (an older original
// project), and no task has them.
func seedOriginal(ctx context.Context, t *testing.T, db *pgxpool.Pool, oldEnum bool) upgradeSeed {
	t.Helper()
	s := upgradeSeed{owner: dbtest.CreateUser(ctx, t, db), other: dbtest.CreateUser(ctx, t, db)}
	for _, p := range []*uuid.UUID{
		&s.split, &s.approval, &s.misc, &s.splitRoot, &s.freshRoot, &s.failed, &s.running,
		&s.pending, &s.processing, &s.awaiting, &s.awaitingChild, &s.approved, &s.generated, &s.orphan,
	} {
		*p = uuid.New()
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := db.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	exec(`insert into public.user_profiles (id, email, role, tier) values ($1, 'owner@example.test', 'user', 'premium')`, s.owner)
	exec(`insert into public.lab_orchestrator_configs (name, steps, created_by) values ('pipeline', '[{"id": "s1"}]', $1)`, s.owner)
	exec(`insert into public.custom_components (name, code, created_by) values ('card', 'export default 1', $1)`, s.owner)
	// Templates: item tasks are split from gen's output items (1:N on the
	// successor, as orchable reads it); review
	// needs approval and is followed by publish.
	exec(`insert into public.prompt_templates (id, name, template, created_by, stage_key, stage_config, next_stage_template_ids, requires_approval) values
		('up-gen', 'gen', 'Generate %%input%%', $1, 'gen', '{"cardinality": "1:1"}', '["up-item"]', false),
		('up-item', 'item', 'Item %%item%%', $1, 'item', '{"cardinality": "1:N", "split_path": "items"}', '[]', false),
		('up-review', 'review', 'Review %%input%%', $1, 'review', '{"cardinality": "1:1"}', '["up-publish"]', true),
		('up-publish', 'publish', 'Publish %%input%%', $1, 'publish', '{"cardinality": "1:1"}', '[]', false)`, s.owner)
	exec(`insert into public.task_batches (id, name, created_by, status, total_tasks, pending_tasks, completed_tasks) values
		($1, 'split', $4, 'processing', 12, 3, 4), ($2, 'approval', $4, 'pending', 4, 4, 0), ($3, 'misc', $4, 'completed', 8, 0, 8)`,
		s.split, s.approval, s.misc, s.owner)
	task := `insert into public.ai_tasks (id, task_type, status, user_id, batch_id, parent_task_id, root_task_id, prompt_template_id,
		stage_key, step_number, input_data, output_data, started_at, completed_at, requires_approval, n8n_execution_id)
		values ($1, 'gen', $2::text::public.ai_task_status, $3, $4, $5, $6, $7, $8, $9, $10, $11,
		        case when $2::text <> 'plan' then now() - interval '1 hour' end,
		        case when $2::text in ('completed', 'failed', 'awaiting_approval', 'approved', 'generated', 'skipped', 'cancelled') then now() - interval '30 minutes' end,
		        $12, 'n8n-1')`
	root := func(id uuid.UUID, status string, batch uuid.UUID, tpl, stage string, out any, approval bool) {
		t.Helper()
		exec(task, id, status, s.owner, batch, nil, id, tpl, stage, 1, `{"topic": "t"}`, out, approval)
	}
	child := func(id uuid.UUID, status string, owner any, batch, parent uuid.UUID, tpl, stage string, out any) {
		t.Helper()
		exec(task, id, status, owner, batch, parent, parent, tpl, stage, 2, `{"item": "x"}`, out, false)
	}
	root(s.splitRoot, "completed", s.split, "up-gen", "gen", `{"items": ["a", "b", "c", "d"]}`, false)
	child(uuid.New(), "completed", s.owner, s.split, s.splitRoot, "up-item", "item", `{"ok": 1}`)
	child(s.running, "running", s.owner, s.split, s.splitRoot, "up-item", "item", nil)
	child(s.pending, "pending", nil, s.split, s.splitRoot, "up-item", "item", nil) // n8n wrote no user_id
	child(s.processing, "processing", s.owner, s.split, s.splitRoot, "up-item", "item", nil)
	root(s.freshRoot, "plan", s.split, "up-gen", "gen", nil, false)
	root(s.failed, "failed", s.split, "up-gen", "gen", nil, false)
	root(s.awaiting, "awaiting_approval", s.approval, "up-review", "review", `{"draft": 1}`, true)
	child(s.awaitingChild, "plan", s.owner, s.approval, s.awaiting, "up-publish", "publish", nil)
	root(s.approved, "approved", s.misc, "up-review", "review", `{"draft": 2}`, true)
	child(uuid.New(), "completed", s.owner, s.misc, s.approved, "up-publish", "publish", `{"published": 2}`)
	if !oldEnum {
		root(s.generated, "generated", s.misc, "up-item", "item", `{"ok": 2}`, false)
		root(uuid.New(), "skipped", s.misc, "up-item", "item", nil, false)
	}
	root(uuid.New(), "cancelled", s.misc, "up-item", "item", nil, false)
	// A task nobody owns (no user, no batch, no parent, no template owner).
	exec(`insert into public.ai_tasks (id, task_type, status) values ($1, 'legacy', 'completed')`, s.orphan)

	var personal, pool uuid.UUID
	require.NoError(t, db.QueryRow(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'mine', 'AIzaPlainOwnerKey') returning id`, s.owner).Scan(&personal))
	require.NoError(t, db.QueryRow(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted, pool_type) values ($1, 'pool', 'AIzaPlainPoolKey', 'free_pool') returning id`, s.other).Scan(&pool))
	exec(`insert into public.api_key_health (user_api_key_id, total_requests) values ($1, 3), ($2, 1)`, personal, pool)
	exec(`insert into public.api_key_usage_log (user_api_key_id, job_id, success) values ($1, $2, true), ($1, $3, false)`, personal, s.splitRoot, s.failed)
	exec(`insert into public.user_usage (user_id, month, task_count) values ($1, '2026-11', 7)`, s.owner)
	exec(`insert into public.notifications (user_id, type, task_id) values ($1, 'STARTED', $2)`, s.owner, s.splitRoot)
	exec(`insert into public.user_subscriptions (user_id, tier) values ($1, 'premium')`, s.owner)
	exec(`insert into public.ai_model_settings (model_id, name, free_tier_rpm, free_tier_tpm, free_tier_rpd) values ('gemini-test', 'Test', 5, 250000, 20)`)
	return s
}

func tableCounts(ctx context.Context, t *testing.T, db *pgxpool.Pool) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range append([]string{"user_profiles", "user_usage", "notifications", "user_subscriptions", "ai_model_settings"}, sharedTables...) {
		var n int
		require.NoError(t, db.QueryRow(ctx, "select count(*) from public."+tbl).Scan(&n))
		out[tbl] = n
	}
	return out
}

// columns lists the shared tables' columns and whether they are NOT NULL.
func columns(ctx context.Context, t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(ctx, `select table_name || '.' || column_name || ' ' || is_nullable
		from information_schema.columns where table_schema = 'public' and table_name = any($1) order by 1`, sharedTables)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// policies lists the row-level security policies on the shared tables.
func policies(ctx context.Context, t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(ctx, `select tablename || ': ' || policyname || ' ' || cmd || ' ' || permissive || ' ' || roles::text
		|| ' using ' || coalesce(qual, '-') || ' check ' || coalesce(with_check, '-')
		from pg_policies where schemaname = 'public' and tablename = any($1) order by 1`, sharedTables)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// An original orchable database, with rows in every old status, upgraded in
// place by `orchable migrate` (run twice): no row is lost (rows the engine
// must not run as they are go to orchable.upgrade_archive, with a reason),
// no function name is overloaded, the policies on the shared tables are
// exactly a new database's, counters equal a recount, statuses follow the
// mapping of docs/schema.md §9.3, and the engine, driven through the SQL API
// as the owner, finishes the pending work: the half-finished split, the
// never-started root and its new children, the retried failure and the
// approval.
//
// OlderEnum: the original's enum lacks values of this schema (generated and
// skipped); the upgrade rebuilds the type through text, with the views
// over ai_tasks.
func TestUpgradeOriginalDatabase(t *testing.T) {
	t.Parallel()
	t.Run("CurrentEnum", func(t *testing.T) { t.Parallel(); testUpgrade(t, false, false) })
	t.Run("OlderEnum", func(t *testing.T) { t.Parallel(); testUpgrade(t, true, false) })
	t.Run("DBPush", func(t *testing.T) { t.Parallel(); testUpgrade(t, false, true) })
}

// testUpgrade upgrades an original database with orchable migrate (twice),
// or, with push, statement by statement in one transaction per file as
// supabase db push applies migrations/.
func testUpgrade(t *testing.T, oldEnum, push bool) {
	t.Helper()
	ctx := t.Context()
	db := emptyDB(ctx, t)
	schema := originalSchemaSQL
	if oldEnum {
		schema = strings.Replace(schema, "'completed', 'generated', 'failed', 'cancelled', 'skipped');", "'completed', 'failed', 'cancelled');", 1)
		require.NotEqual(t, originalSchemaSQL, schema)
	}
	_, err := db.Exec(ctx, migrations.ShimSQL())
	require.NoError(t, err)
	_, err = db.Exec(ctx, schema)
	require.NoError(t, err)
	s := seedOriginal(ctx, t, db, oldEnum)
	before := tableCounts(ctx, t, db)

	if push {
		all, err := migrations.All()
		require.NoError(t, err)
		for _, m := range all {
			tx, err := db.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a failed statement must not hold the connection
			for _, stmt := range migrations.SplitStatements(m.SQL) {
				_, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
				require.NoError(t, err, "%s: %.80s", m.File, stmt)
			}
			require.NoError(t, tx.Commit(ctx))
		}
	} else {
		res, err := migrations.Migrate(ctx, db, &migrations.Config{Local: true})
		require.NoError(t, err)
		require.NotEmpty(t, res.Applied)
		res, err = migrations.Migrate(ctx, db, &migrations.Config{Local: true})
		require.NoError(t, err)
		require.Empty(t, res.Applied, "the second run applies nothing")
	}

	// No row lost: every row is in its table or in the archive.
	after := tableCounts(ctx, t, db)
	rows, err := db.Query(ctx, `select table_name, count(*) from orchable.upgrade_archive group by 1`)
	require.NoError(t, err)
	archived := map[string]int{}
	for rows.Next() {
		var tbl string
		var n int
		require.NoError(t, rows.Scan(&tbl, &n))
		archived[tbl] = n
	}
	require.NoError(t, rows.Err())
	for tbl, n := range before {
		require.Equal(t, n, after[tbl]+archived[tbl], "rows of %s", tbl)
	}
	require.Equal(t, map[string]int{"ai_tasks": 2}, archived, "the child inserted before its parent's approval, and the task without an owner")
	var reason string
	require.NoError(t, db.QueryRow(ctx, `select reason from orchable.upgrade_archive where row_data ->> 'id' = $1`, s.awaitingChild.String()).Scan(&reason))
	require.Contains(t, reason, "before its parent completed")

	// No overloaded function: one signature per name in public and orchable.
	rows, err = db.Query(ctx, `select n.nspname || '.' || p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
		where n.nspname in ('public', 'orchable') group by 1 having count(*) > 1`)
	require.NoError(t, err)
	overloaded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, overloaded)
	var approveArgs string
	require.NoError(t, db.QueryRow(ctx, `select pg_get_function_identity_arguments('public.approve_task'::regproc)`).Scan(&approveArgs))
	require.NotContains(t, approveArgs, "p_user_id")

	// Every column a new database has on the shared tables is there, with
	// the same nullability (types may be the original's wider or narrower
	// ones, e.g. varchar(255) for text).
	require.Equal(t, columns(ctx, t, dbtest.Pool(t)), columns(ctx, t, db))

	// The policies on the shared tables are exactly a new database's.
	require.Equal(t, policies(ctx, t, dbtest.Pool(t)), policies(ctx, t, db))
	var trig int
	require.NoError(t, db.QueryRow(ctx, `select count(*) from pg_trigger where tgname = 'trigger_update_batch_counters'`).Scan(&trig))
	require.Zero(t, trig)

	// Columns and owners.
	var tplOwner uuid.UUID
	require.NoError(t, db.QueryRow(ctx, `select user_id from public.prompt_templates where id = 'up-gen'`).Scan(&tplOwner))
	require.Equal(t, s.owner, tplOwner)
	var key, poolType string
	require.NoError(t, db.QueryRow(ctx, `select api_key_encrypted, pool_type::text from public.user_api_keys where key_name = 'pool'`).Scan(&key, &poolType))
	require.Equal(t, "AIzaPlainPoolKey", key)
	require.Equal(t, "free_pool", poolType)
	var pendingOwner uuid.UUID
	require.NoError(t, db.QueryRow(ctx, `select user_id from public.ai_tasks where id = $1`, s.pending).Scan(&pendingOwner))
	require.Equal(t, s.owner, pendingOwner, "owner backfilled from the batch")

	// The status mapping.
	status := func(id uuid.UUID) string {
		t.Helper()
		var st string
		require.NoError(t, db.QueryRow(ctx, `select status::text from public.ai_tasks where id = $1`, id).Scan(&st))
		return st
	}
	for id, want := range map[uuid.UUID]string{
		s.running: "plan", s.pending: "plan", s.processing: "plan", s.freshRoot: "plan",
		s.failed: "failed", s.awaiting: "generated", s.approved: "completed",
	} {
		require.Equal(t, want, status(id), "task %s", id)
	}

	// Counters equal a recount, and the status follows the counts.
	counterCheck := func() {
		t.Helper()
		var bad int
		require.NoError(t, db.QueryRow(ctx, `select count(*) from public.task_batches b, lateral (
			select count(*) n, count(*) filter (where public.task_status_bucket(t.status) = 'pending') p,
			       count(*) filter (where public.task_status_bucket(t.status) = 'processing') r,
			       count(*) filter (where public.task_status_bucket(t.status) = 'completed') c,
			       count(*) filter (where public.task_status_bucket(t.status) = 'failed') f
			from public.ai_tasks t where t.batch_id = b.id) x
			where (b.total_tasks, b.pending_tasks, b.processing_tasks, b.completed_tasks, b.failed_tasks) <> (x.n, x.p, x.r, x.c, x.f)`).Scan(&bad))
		require.Zero(t, bad, "batches whose counters differ from a recount")
	}
	if !oldEnum {
		require.Equal(t, "completed", status(s.generated))
	}
	var labels []string
	rows, err = db.Query(ctx, `select enumlabel::text from pg_enum where enumtypid = 'public.ai_task_status'::regtype order by enumsortorder`)
	require.NoError(t, err)
	labels, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"plan", "pending", "running", "processing", "awaiting_approval", "approved",
		"completed", "generated", "failed", "cancelled", "skipped",
	}, labels)
	// The original's own views over ai_tasks survive (recreated when the
	// enum was rebuilt).
	var views int
	require.NoError(t, db.QueryRow(ctx, `select count(*) from pg_views where schemaname = 'public'
		and viewname in ('v_tasks_awaiting_approval', 'ai_tasks_with_template')`).Scan(&views))
	require.Equal(t, 2, views)
	counterCheck()
	var miscStatus string
	require.NoError(t, db.QueryRow(ctx, `select status from public.task_batches where id = $1`, s.misc).Scan(&miscStatus))
	require.Equal(t, "failed", miscStatus, "the misc batch holds a cancelled task")

	// The engine finishes the pending work, as the owner through the SQL API.
	call := func(sql string, args ...any) json.RawMessage {
		t.Helper()
		tx, err := db.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		dbtest.AsUser(ctx, t, tx, s.owner)
		var out json.RawMessage
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&out), sql)
		require.NoError(t, tx.Commit(ctx))
		return out
	}
	call(`select jsonb_build_object() from (select public.retry_failed_task($1)) x`, s.failed)
	call(`select public.approve_task($1)`, s.awaiting)
	completed := 0
	for range 20 {
		var claimed []struct {
			Task struct {
				ID    uuid.UUID `json:"id"`
				Stage string    `json:"stage_key"`
			} `json:"task"`
		}
		require.NoError(t, json.Unmarshal(call(`select public.claim_tasks('upgrade-test', 60, 50)`), &claimed))
		if len(claimed) == 0 {
			break
		}
		for _, c := range claimed {
			out := `{"ok": true}`
			if c.Task.Stage == "gen" {
				out = `{"items": ["x", "y"]}`
			}
			call(`select public.complete_task($1, 'upgrade-test', $2::jsonb)`, c.Task.ID, out)
			completed++
		}
	}
	// running, pending, processing; freshRoot and failed (gen) with 2+2
	// children; the approved review's publish child.
	if completed != 3+2+4+1 {
		rows, _ := db.Query(ctx, `select coalesce(stage_key, '-') || ' ' || status::text || ' ' || coalesce(parent_task_id::text, '-') || ' ' || coalesce(error_message, '') from public.ai_tasks order by created_at`)
		all, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		t.Logf("tasks:\n%s", strings.Join(all, "\n"))
	}
	require.Equal(t, 3+2+4+1, completed)
	dbtest.FoldCounters(ctx, t, db)
	counterCheck()
	for _, b := range []uuid.UUID{s.split, s.approval} {
		var p struct {
			Status  string `json:"status"`
			Pending int    `json:"pending"`
			Failed  int    `json:"failed"`
		}
		require.NoError(t, json.Unmarshal(call(`select public.get_batch_progress($1)`, b), &p))
		require.Equal(t, "completed", p.Status, "batch %s: %+v", b, p)
	}
	checkUpgradedFreeTier(ctx, t, db, s)
}

// checkUpgradedFreeTier: the original's free-tier triggers and functions are
// gone (docs/schema.md §9.4), the contract's functions exist once each with
// the contract's argument names and result columns, the original's profile,
// usage, subscription, notification and catalog rows are kept and used: the
// owner's 7 tasks of November 2026 count against the quota, and the pool key
// carries the catalog's free-tier limits.
func checkUpgradedFreeTier(ctx context.Context, t *testing.T, db *pgxpool.Pool, s upgradeSeed) {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(ctx, `select count(*) from pg_trigger
		where tgname in ('trg_task_completed', 'trg_free_tier_start_notify')`).Scan(&n))
	require.Zero(t, n, "the original's free-tier triggers")
	require.NoError(t, db.QueryRow(ctx, `select count(*) from pg_proc p join pg_namespace ns on ns.oid = p.pronamespace
		where ns.nspname = 'public' and p.proname in ('on_task_completed', 'trigger_notification_on_start',
		'increment_user_usage', 'cleanup_expired_free_tasks')`).Scan(&n))
	require.Zero(t, n, "the original's free-tier functions")
	for fn, want := range map[string]string{
		"submit_free_tier_tasks": "p_tasks jsonb|jsonb",
		"get_free_tier_usage":    "|TABLE(month character varying, used integer, \"limit\" integer, remaining integer)",
		"get_user_usage":         "p_user_id uuid|TABLE(month character varying, task_count integer, token_input_count bigint, token_output_count bigint)",
	} {
		var got string
		require.NoError(t, db.QueryRow(ctx, `select string_agg(pg_get_function_identity_arguments(p.oid) || '|' || pg_get_function_result(p.oid), ';')
			from pg_proc p join pg_namespace ns on ns.oid = p.pronamespace where ns.nspname = 'public' and p.proname = $1`, fn).Scan(&got))
		require.Equal(t, want, got, fn)
	}

	// The owner used 7 free tasks in November 2026 under the original: 23
	// more pass, the 24th does not.
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	submit := func(n int) map[string]any {
		t.Helper()
		tx, err := db.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, s.owner)
		tasks := make([]map[string]any, n)
		for i := range tasks {
			tasks[i] = map[string]any{"prompt_template_id": "up-gen", "stage_key": "gen", "input_data": map[string]any{"topic": i}}
		}
		b, _ := json.Marshal(tasks)
		var out map[string]any
		require.NoError(t, tx.QueryRow(ctx, `select orchable.submit_free_tier($1::jsonb, $2)`, b, at).Scan(&out))
		require.NoError(t, tx.Commit(ctx))
		return out
	}
	require.Equal(t, true, submit(23)["success"])
	refused := submit(1)
	require.Equal(t, "QUOTA_EXCEEDED", refused["error"])
	require.InDelta(t, 30, refused["used"], 0)

	// The owner cannot raise the tier the original gave them, nor make a
	// subscription do it.
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, s.owner)
	_, err = tx.Exec(ctx, `update public.user_profiles set role = 'superadmin' where id = $1`, s.owner)
	require.Error(t, err)
	_ = tx.Rollback(ctx)
	tx, err = db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, s.owner)
	_, err = tx.Exec(ctx, `update public.user_subscriptions set tier = 'premium' where user_id = $1`, s.owner)
	require.Error(t, err)
	_ = tx.Rollback(ctx)

	// The pool key, with the catalog's free-tier limits, for the service.
	var key string
	var rpm, tpm, rpd int
	require.NoError(t, db.QueryRow(ctx, `select api_key_encrypted, free_tier_rpm, free_tier_tpm, free_tier_rpd from public.pool_api_keys('gemini-test')`).
		Scan(&key, &rpm, &tpm, &rpd))
	require.Equal(t, "AIzaPlainPoolKey", key)
	require.Equal(t, []int{5, 250000, 20}, []int{rpm, tpm, rpd})
}
