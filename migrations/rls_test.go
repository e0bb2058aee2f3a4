package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// The RLS matrix: actors (owner, other user, anon) × every table × select /
// insert / update / delete × own, other and public rows × expected outcome.

type outcome string

const (
	allowed  outcome = "allowed"  // the statement affects/sees the row
	filtered outcome = "filtered" // the statement succeeds but sees/affects nothing
	denied   outcome = "denied"   // 42501 (no privilege or WITH CHECK violation)
)

// rlsTable describes how to make, insert, update and identify rows of a table.
type rlsTable struct {
	name      string
	hasPublic bool
	// serviceOnly: users may do nothing at all (deltas).
	serviceOnly bool
	// appendOnly: users may read, insert and delete but never update (logs).
	appendOnly bool
	// seed creates a row owned by owner (as the table owner) and returns its id.
	seed func(ctx context.Context, tx pgx.Tx, f *rlsFixture, owner uuid.UUID, public bool) (string, error)
	// insert returns an INSERT statement creating a row owned by owner.
	insert func(f *rlsFixture, owner uuid.UUID) (string, []any)
	// touch is the column set in the UPDATE probe.
	touch string
	// key is the row identifier column.
	key string
}

type rlsFixture struct {
	users    map[string]uuid.UUID // "a", "b"
	batch    map[uuid.UUID]uuid.UUID
	template map[uuid.UUID]string
	key      map[uuid.UUID]uuid.UUID
}

func rlsTables() []rlsTable {
	return []rlsTable{
		{
			name: "ai_tasks", key: "id", touch: "error_message = 'x'",
			seed: func(ctx context.Context, tx pgx.Tx, f *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.ai_tasks (user_id, batch_id, prompt_template_id) values ($1, $2, $3) returning id",
					owner, f.batch[owner], f.template[owner]).Scan(&id)
				return id, err
			},
			insert: func(f *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.ai_tasks (user_id, batch_id) values ($1, $2)", []any{owner, f.batch[owner]}
			},
		},
		{
			name: "task_batches", key: "id", touch: "name = 'x'",
			seed: func(ctx context.Context, tx pgx.Tx, _ *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.task_batches (name, created_by) values ('b', $1) returning id", owner).Scan(&id)
				return id, err
			},
			insert: func(_ *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.task_batches (name, created_by) values ('n', $1)", []any{owner}
			},
		},
		{
			name: "prompt_templates", key: "id", touch: "name = 'x'", hasPublic: true,
			seed: func(ctx context.Context, tx pgx.Tx, _ *rlsFixture, owner uuid.UUID, public bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.prompt_templates (template, user_id, is_public) values ('t', $1, $2) returning id", owner, public).Scan(&id)
				return id, err
			},
			insert: func(_ *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.prompt_templates (template, created_by) values ('t', $1)", []any{owner}
			},
		},
		{
			name: "custom_components", key: "id", touch: "name = 'x'", hasPublic: true,
			seed: func(ctx context.Context, tx pgx.Tx, _ *rlsFixture, owner uuid.UUID, public bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.custom_components (name, code, created_by, is_public) values ('c', 'x', $1, $2) returning id", owner, public).Scan(&id)
				return id, err
			},
			insert: func(_ *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.custom_components (name, code, created_by) values ('c', 'x', $1)", []any{owner}
			},
		},
		{
			name: "lab_orchestrator_configs", key: "id", touch: "name = 'x'", hasPublic: true,
			seed: func(ctx context.Context, tx pgx.Tx, _ *rlsFixture, owner uuid.UUID, public bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.lab_orchestrator_configs (name, steps, created_by, is_public) values ('o', '[]', $1, $2) returning id", owner, public).Scan(&id)
				return id, err
			},
			insert: func(_ *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.lab_orchestrator_configs (name, steps, created_by) values ('o', '[]', $1)", []any{owner}
			},
		},
		{
			name: "user_api_keys", key: "id", touch: "priority = 2",
			seed: func(ctx context.Context, tx pgx.Tx, _ *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'k-' || gen_random_uuid(), 'secret') returning id", owner).Scan(&id)
				return id, err
			},
			insert: func(_ *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'new', 'x')", []any{owner}
			},
		},
		{
			name: "api_key_health", key: "user_api_key_id", touch: "total_requests = 5",
			seed: func(ctx context.Context, tx pgx.Tx, f *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var keyID string
				if err := tx.QueryRow(ctx, "insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'h-' || gen_random_uuid(), 'secret') returning id", owner).Scan(&keyID); err != nil {
					return "", err
				}
				_, err := tx.Exec(ctx, "insert into public.api_key_health (user_api_key_id, user_id) values ($1, $2)", keyID, owner)
				return keyID, err
			},
			insert: func(f *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.api_key_health (user_api_key_id, user_id) values ($1, $2)", []any{f.key[owner], owner}
			},
		},
		{
			name: "api_key_usage_log", key: "id", touch: "success = true", appendOnly: true,
			seed: func(ctx context.Context, tx pgx.Tx, f *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.api_key_usage_log (user_api_key_id, user_id, job_id) values ($1, $2, 'j') returning id", f.key[owner], owner).Scan(&id)
				return id, err
			},
			insert: func(f *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.api_key_usage_log (user_api_key_id, user_id, job_id) values ($1, $2, 'j2')", []any{f.key[owner], owner}
			},
		},
		{
			name: "task_batch_counter_deltas", key: "id", touch: "d_total = 9", serviceOnly: true,
			seed: func(ctx context.Context, tx pgx.Tx, f *rlsFixture, owner uuid.UUID, _ bool) (string, error) {
				var id string
				err := tx.QueryRow(ctx, "insert into public.task_batch_counter_deltas (batch_id, user_id) values ($1, $2) returning id::text", f.batch[owner], owner).Scan(&id)
				return id, err
			},
			insert: func(f *rlsFixture, owner uuid.UUID) (string, []any) {
				return "insert into public.task_batch_counter_deltas (batch_id, user_id) values ($1, $2)", []any{f.batch[owner], owner}
			},
		},
	}
}

type rlsCell struct {
	actor, table, op, row string
	expect, got           outcome
	detail                string
}

// expected returns the outcome the policies must produce.
func expected(tbl rlsTable, actor, op, row string) outcome {
	if actor == "anon" {
		return denied
	}
	own := strings.HasPrefix(row, "own")
	public := strings.HasSuffix(row, "public")
	if tbl.serviceOnly {
		return denied
	}
	if tbl.appendOnly && op == "update" {
		return denied
	}
	switch op {
	case "insert":
		if own {
			return allowed
		}
		return denied
	case "select":
		if own || public {
			return allowed
		}
		return filtered
	default: // update, delete
		if own {
			return allowed
		}
		return filtered
	}
}

func newRLSFixture(ctx context.Context, t *testing.T, pool *pgxpool.Pool) *rlsFixture {
	t.Helper()
	f := &rlsFixture{
		users:    map[string]uuid.UUID{"a": dbtest.CreateUser(ctx, t, pool), "b": dbtest.CreateUser(ctx, t, pool)},
		batch:    map[uuid.UUID]uuid.UUID{},
		template: map[uuid.UUID]string{},
		key:      map[uuid.UUID]uuid.UUID{},
	}
	for _, u := range f.users {
		var b uuid.UUID
		require.NoError(t, pool.QueryRow(ctx, "insert into public.task_batches (name, created_by) values ('fixture', $1) returning id", u).Scan(&b))
		f.batch[u] = b
		var tpl string
		require.NoError(t, pool.QueryRow(ctx, "insert into public.prompt_templates (template, user_id) values ('fixture', $1) returning id", u).Scan(&tpl))
		f.template[u] = tpl
		var k uuid.UUID
		require.NoError(t, pool.QueryRow(ctx, "insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'fixture-key', 'x') returning id", u).Scan(&k))
		f.key[u] = k
	}
	return f
}

// runMatrix runs every cell; brokenSQL (optional) runs first in each cell's
// transaction as the table owner, to prove a broken policy is caught.
func runMatrix(ctx context.Context, t *testing.T, pool *pgxpool.Pool, f *rlsFixture, tables []rlsTable, brokenSQL string) []rlsCell {
	t.Helper()
	a, b := f.users["a"], f.users["b"]
	var cells []rlsCell
	for _, tbl := range tables {
		// Seed rows: A's private (and public) rows; the actor decides own/other.
		rows := map[string]map[uuid.UUID]string{} // kind -> owner -> id
		for _, public := range []bool{false, true} {
			if public && !tbl.hasPublic {
				continue
			}
			kind := map[bool]string{false: "private", true: "public"}[public]
			rows[kind] = map[uuid.UUID]string{}
			for _, owner := range []uuid.UUID{a, b} {
				tx, err := pool.Begin(ctx)
				require.NoError(t, err)
				id, err := tbl.seed(ctx, tx, f, owner, public)
				require.NoError(t, err, tbl.name)
				require.NoError(t, tx.Commit(ctx))
				rows[kind][owner] = id
			}
		}
		for _, actor := range []string{"a", "b", "anon"} {
			for _, op := range []string{"select", "insert", "update", "delete"} {
				for kind, byOwner := range rows {
					for _, ownerName := range []string{"a", "b"} {
						owner := f.users[ownerName]
						rowLabel := "other " + kind
						if actor == ownerName {
							rowLabel = "own " + kind
						}
						if op == "insert" && kind == "public" {
							continue // insert probes do not depend on visibility
						}
						got, detail := probe(ctx, t, pool, tbl, f, actor, op, owner, byOwner[owner], brokenSQL)
						cells = append(cells, rlsCell{
							actor: actor, table: tbl.name, op: op, row: rowLabel,
							expect: expected(tbl, actor, op, rowLabel), got: got, detail: detail,
						})
					}
				}
			}
		}
	}
	return cells
}

// beginWith begins a transaction and runs brokenSQL (DDL, if any) in it.
// The DDL's exclusive lock waits at most 50 ms and is retried: the package's
// other tests share this database, and a test that holds a transaction open
// on the table while it waits on another session (as
// TestFreeTierSubmitWaitsForTheUsersLock does) would otherwise wait forever
// behind the queued DDL, which waits on that test (a hang seen in CI).
func beginWith(ctx context.Context, t *testing.T, pool *pgxpool.Pool, brokenSQL string) pgx.Tx {
	t.Helper()
	for {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		if brokenSQL == "" {
			return tx
		}
		_, err = tx.Exec(ctx, "set local lock_timeout = '50ms'")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, brokenSQL)
		if err == nil {
			_, err = tx.Exec(ctx, "set local lock_timeout = 0")
			require.NoError(t, err)
			return tx
		}
		_ = tx.Rollback(context.WithoutCancel(ctx))
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr) && pgErr.Code == "55P03", "%v", err)
		require.NoError(t, ctx.Err())
	}
}

func probe(ctx context.Context, t *testing.T, pool *pgxpool.Pool, tbl rlsTable, f *rlsFixture, actor, op string, owner uuid.UUID, rowID, brokenSQL string) (outcome, string) {
	t.Helper()
	tx := beginWith(ctx, t, pool, brokenSQL)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if actor == "anon" {
		dbtest.AsAnon(ctx, t, tx)
	} else {
		dbtest.AsUser(ctx, t, tx, f.users[actor])
	}
	var (
		sql  string
		args []any
	)
	switch op {
	case "select":
		sql, args = fmt.Sprintf("select 1 from public.%s where %s::text = $1", tbl.name, tbl.key), []any{rowID}
	case "update":
		sql, args = fmt.Sprintf("update public.%s set %s where %s::text = $1", tbl.name, tbl.touch, tbl.key), []any{rowID}
	case "delete":
		sql, args = fmt.Sprintf("delete from public.%s where %s::text = $1", tbl.name, tbl.key), []any{rowID}
	case "insert":
		sql, args = tbl.insert(f, owner)
	}
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return denied, pgErr.Message
		}
		return outcome("error"), err.Error()
	}
	if tag.RowsAffected() > 0 {
		return allowed, ""
	}
	return filtered, ""
}

// privilegeVariants are the databases every privilege and RLS check runs on:
// the migrations on the plain shim, and on the shim plus Supabase's pre-2026
// default privileges (ALL on every new table, function and sequence to
// anon, authenticated and service_role).
func privilegeVariants(t *testing.T) map[string]*pgxpool.Pool {
	t.Helper()
	return map[string]*pgxpool.Pool{"default": dbtest.Pool(t), "legacy-default-privileges": dbtest.LegacyPool(t)}
}

func TestRLSMatrix(t *testing.T) {
	t.Parallel()
	for name, pool := range privilegeVariants(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testRLSMatrix(t, pool)
		})
	}
}

func testRLSMatrix(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	f := newRLSFixture(ctx, t, pool)

	cells := runMatrix(ctx, t, pool, f, rlsTables(), "")
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %-26s %-7s %-15s %-9s %s\n", "actor", "table", "op", "row", "expect", "got")
	failures := 0
	for _, c := range cells {
		mark := ""
		if c.got != c.expect {
			mark = "  <-- MISMATCH " + c.detail
			failures++
		}
		fmt.Fprintf(&b, "%-6s %-26s %-7s %-15s %-9s %s%s\n", c.actor, c.table, c.op, c.row, c.expect, c.got, mark)
	}
	t.Logf("RLS matrix: %d cells (3 actors × %d tables × 4 operations × own/other/public rows)\n%s", len(cells), len(rlsTables()), b.String())
	require.Zero(t, failures, "RLS matrix mismatches")
	require.Greater(t, len(cells), 250)
}

// A deliberately broken policy must make the matrix fail.
func TestRLSMatrixCatchesBrokenPolicy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	f := newRLSFixture(ctx, t, pool)
	tables := rlsTables()[:1] // ai_tasks
	broken := "drop policy ai_tasks_select_own on public.ai_tasks; create policy ai_tasks_select_own on public.ai_tasks for select to authenticated using (true)"
	cells := runMatrix(ctx, t, pool, f, tables, broken)
	mismatches := 0
	for _, c := range cells {
		if c.got != c.expect {
			mismatches++
		}
	}
	t.Logf("broken select policy on ai_tasks: %d of %d cells mismatch", mismatches, len(cells))
	require.Positive(t, mismatches)
}

// Cross-tenant references that RLS must refuse beyond plain ownership.
func TestRLSCrossTenantReferences(t *testing.T) {
	t.Parallel()
	for name, pool := range privilegeVariants(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testRLSCrossTenantReferences(t, pool)
		})
	}
}

func testRLSCrossTenantReferences(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	f := newRLSFixture(ctx, t, pool)
	a, b := f.users["a"], f.users["b"]

	var publicTpl string
	require.NoError(t, pool.QueryRow(ctx, "insert into public.prompt_templates (template, user_id, is_public) values ('p', $1, true) returning id", b).Scan(&publicTpl))
	var privateCfg, publicCfg uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.lab_orchestrator_configs (name, created_by, is_public) values ('private', $1, false) returning id", b).Scan(&privateCfg))
	require.NoError(t, pool.QueryRow(ctx, "insert into public.lab_orchestrator_configs (name, created_by, is_public) values ('public', $1, true) returning id", b).Scan(&publicCfg))

	tests := []struct {
		name   string
		sql    string
		args   []any
		expect outcome
	}{
		{"TaskIntoOthersBatch", "insert into public.ai_tasks (user_id, batch_id) values ($1, $2)", []any{a, f.batch[b]}, denied},
		{"TaskOnOthersPrivateTemplate", "insert into public.ai_tasks (user_id, prompt_template_id) values ($1, $2)", []any{a, f.template[b]}, denied},
		{"TaskOnOthersPublicTemplate", "insert into public.ai_tasks (user_id, prompt_template_id) values ($1, $2)", []any{a, publicTpl}, allowed},
		{"TaskForOtherUser", "insert into public.ai_tasks (user_id) values ($1)", []any{b}, denied},
		{"MoveOwnTaskIntoOthersBatch", "update public.ai_tasks set batch_id = $2 where user_id = $1", []any{a, f.batch[b]}, denied},
		{"MoveOwnTaskOntoOthersPrivateTemplate", "update public.ai_tasks set prompt_template_id = $2 where user_id = $1", []any{a, f.template[b]}, denied},
		{"MoveOwnTaskOntoOthersPublicTemplate", "update public.ai_tasks set prompt_template_id = $2 where user_id = $1", []any{a, publicTpl}, allowed},
		{"PointOwnBatchAtOthersPrivateConfig", "update public.task_batches set orchestrator_config_id = $2 where created_by = $1", []any{a, privateCfg}, denied},
		{"PointOwnBatchAtOthersPrivateConfigByOldName", "update public.task_batches set orchestrator_id = $2 where created_by = $1", []any{a, privateCfg}, denied},
		{"PointOwnBatchAtOthersPublicConfig", "update public.task_batches set orchestrator_config_id = $2 where created_by = $1", []any{a, publicCfg}, allowed},
		{"ReadOthersKeys", "select 1 from public.user_api_keys where user_id = $1 and $2::uuid is not null", []any{b, a}, filtered},
		{"HealthForOthersKey", "insert into public.api_key_health (user_api_key_id, user_id) values ($2, $1)", []any{a, f.key[b]}, denied},
		{"UsageLogOnOthersKey", "insert into public.api_key_usage_log (user_api_key_id, user_id) values ($2, $1)", []any{a, f.key[b]}, denied},
		{"TemplateOwnedByOther", "insert into public.prompt_templates (template, created_by) values ('x', $2) returning $1::uuid", []any{a, b}, denied},
		{"TakeOverOthersPublicTemplate", "update public.prompt_templates set template = 'mine' where id = $2 and $1::uuid is not null", []any{a, publicTpl}, filtered},
		{"CallServiceOnlyFunction", "select public.due_tasks(10) where $1::uuid is not null and $2::uuid is not null", []any{a, b}, denied},
		{"FoldCounters", "select public.fold_batch_counters() where $1::uuid is not null and $2::uuid is not null", []any{a, b}, denied},
	}
	// Seed a task for A so the update probe has a row.
	_, err := pool.Exec(ctx, "insert into public.ai_tasks (user_id, batch_id) values ($1, $2)", a, f.batch[a])
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			dbtest.AsUser(ctx, t, tx, a)
			tag, err := tx.Exec(ctx, tt.sql, tt.args...)
			got := filtered
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "42501":
				got = denied
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tag.RowsAffected() > 0:
				got = allowed
			}
			require.Equal(t, tt.expect, got)
		})
	}

	t.Run("AnonCannotCallAnyFunction", func(t *testing.T) {
		t.Parallel()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		// Every function in public and orchable that anon could execute.
		rows, err := tx.Query(ctx, `
select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'orchable') and has_function_privilege('anon', p.oid, 'execute')
  and p.prokind = 'f'`)
		require.NoError(t, err)
		fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, fns, "functions (volatile or stable) executable by anon")
	})

	t.Run("NothingExecutableByPublic", func(t *testing.T) {
		t.Parallel()
		rows, err := pool.Query(ctx, `
select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
where n.nspname in ('public', 'orchable') and p.prokind = 'f' and a.grantee = 0 and a.privilege_type = 'EXECUTE'`)
		require.NoError(t, err)
		fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, fns, "functions executable by PUBLIC")
	})

	t.Run("ServiceAndTriggerFunctionsNotForUsers", func(t *testing.T) {
		t.Parallel()
		rows, err := pool.Query(ctx, `
select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'orchable') and p.prokind = 'f'
  and has_function_privilege('authenticated', p.oid, 'execute')
  and (p.prorettype = 'trigger'::regtype
       or p.proname in ('due_tasks', 'requeue_expired_leases', 'fold_batch_counters', 'set_engine_limits'))`)
		require.NoError(t, err)
		fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, fns, "service-only or trigger functions executable by authenticated")
	})

	t.Run("NoDangerousTablePrivileges", func(t *testing.T) {
		t.Parallel()
		// anon: nothing on any table of ours; authenticated: no TRUNCATE,
		// REFERENCES or TRIGGER, and nothing on the deltas table; no
		// sequence usable by either.
		rows, err := pool.Query(ctx, `
select c.relname || ' ' || r.rolname || ' ' || pr.p
from pg_class c join pg_namespace n on n.oid = c.relnamespace
cross join (values ('anon'), ('authenticated')) r(rolname)
cross join (values ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('REFERENCES'), ('TRIGGER')) pr(p)
where n.nspname = 'public' and c.relkind in ('r', 'v')
  and has_table_privilege(r.rolname, c.oid, pr.p)
  and (r.rolname = 'anon' or pr.p in ('TRUNCATE', 'REFERENCES', 'TRIGGER') or c.relname = 'task_batch_counter_deltas')
union all
select c.relname || ' ' || r.rolname || ' USAGE'
from pg_class c join pg_namespace n on n.oid = c.relnamespace
cross join (values ('anon'), ('authenticated')) r(rolname)
where n.nspname = 'public' and c.relkind = 'S' and has_sequence_privilege(r.rolname, c.oid, 'USAGE')`)
		require.NoError(t, err)
		bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, bad)
	})

	t.Run("FunctionsCreatedLaterAreNotPublic", func(t *testing.T) {
		t.Parallel()
		// A later migration (run as the migrating role) that forgets its
		// revoke must not hand the function to PUBLIC or anon.
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		_, err = tx.Exec(ctx, "create function public.orchable_probe_later() returns int language sql as 'select 1'")
		require.NoError(t, err)
		var anon, public bool
		require.NoError(t, tx.QueryRow(ctx, `select has_function_privilege('anon', 'public.orchable_probe_later()', 'execute'),
			exists (select 1 from pg_proc p cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
			        where p.oid = 'public.orchable_probe_later()'::regprocedure and a.grantee = 0)`).Scan(&anon, &public))
		require.False(t, anon, "anon can execute a function created later")
		require.False(t, public, "PUBLIC can execute a function created later")
	})

	t.Run("NoSecurityDefinerWithoutSearchPath", func(t *testing.T) {
		t.Parallel()
		rows, err := pool.Query(ctx, `
select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'orchable') and p.prosecdef
  and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c where c like 'search_path=%')`)
		require.NoError(t, err)
		fns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, fns)
	})

	t.Run("NoWritePolicyUsingTrue", func(t *testing.T) {
		t.Parallel()
		rows, err := pool.Query(ctx, `
select tablename || '.' || policyname from pg_policies
where schemaname = 'public' and cmd <> 'SELECT'
  and (coalesce(qual, '') in ('true', '') and coalesce(with_check, '') in ('true', ''))`)
		require.NoError(t, err)
		bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, bad)
	})

	t.Run("EveryTableHasRLS", func(t *testing.T) {
		t.Parallel()
		rows, err := pool.Query(ctx, `select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity`)
		require.NoError(t, err)
		bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Empty(t, bad)
	})
}
