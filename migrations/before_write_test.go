package migrations_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// The row trigger on ai_tasks gives the engine's updates the same result on
// its short path (every default already satisfied) as on the full one: the
// lease goes with processing, updated_at moves, and a NULL or 'pending' an
// update writes still gets its default.
func TestBeforeWriteEngineUpdates(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)

	type row struct {
		Status           string
		LockedBy         *string
		LockedUntil      *time.Time
		Extra            string
		RetryCount       int
		Attempts         int
		StepNumber       int
		HierarchyPath    string
		RequiresApproval bool
		RunAfterSet      bool
		UpdatedAt        time.Time
	}
	var id uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `insert into public.ai_tasks (user_id, retry_count, step_number, extra)
		values ($1, 2, 3, '{"k": 1}') returning id`, user).Scan(&id))
	// engine runs one update as the engine (orchable.engine = on, as the
	// SQL API sets it) and returns the row.
	engine := func(set string) row {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "update public.ai_tasks set "+set+" where id = $1", id)
		require.NoError(t, err)
		var r row
		require.NoError(t, tx.QueryRow(ctx, `select status, locked_by, locked_until, extra::text, retry_count, attempts, step_number,
			hierarchy_path::text, requires_approval, run_after is not null, updated_at from public.ai_tasks where id = $1`, id).
			Scan(&r.Status, &r.LockedBy, &r.LockedUntil, &r.Extra, &r.RetryCount, &r.Attempts, &r.StepNumber,
				&r.HierarchyPath, &r.RequiresApproval, &r.RunAfterSet, &r.UpdatedAt))
		require.NoError(t, tx.Commit(ctx))
		return r
	}
	var before time.Time
	require.NoError(t, pool.QueryRow(ctx, "select updated_at from public.ai_tasks where id = $1", id).Scan(&before))

	// A claim: the lease is kept, updated_at moves.
	r := engine("status = 'processing', locked_by = 'w1', locked_until = now() + interval '5 minutes', attempts = attempts + 1")
	require.Equal(t, "processing", r.Status)
	require.NotNil(t, r.LockedBy)
	require.Equal(t, "w1", *r.LockedBy)
	require.NotNil(t, r.LockedUntil)
	require.Equal(t, 1, r.Attempts)
	require.True(t, r.UpdatedAt.After(before), "updated_at moves")

	// A completion that leaves the lease in place: leaving processing drops it.
	r = engine("status = 'completed', output_data = '{\"a\": 1}'")
	require.Equal(t, "completed", r.Status)
	require.Nil(t, r.LockedBy, "leaving processing drops the lease")
	require.Nil(t, r.LockedUntil)
	require.JSONEq(t, `{"k": 1}`, r.Extra)
	require.Equal(t, 2, r.RetryCount)
	require.Equal(t, 3, r.StepNumber)

	// Back to processing, then an update that writes NULLs and 'pending':
	// each default applies as for any other writer.
	engine("status = 'processing', locked_by = 'w2', locked_until = now() + interval '5 minutes'")
	r = engine(`status = 'pending', extra = null, retry_count = null, attempts = null, step_number = null,
		hierarchy_path = null, requires_approval = null, run_after = null`)
	require.Equal(t, "plan", r.Status, "'pending' is stored as plan")
	require.Nil(t, r.LockedBy)
	require.Nil(t, r.LockedUntil)
	require.JSONEq(t, `{}`, r.Extra)
	require.Equal(t, 2, r.RetryCount, "a NULL keeps the old value")
	require.Equal(t, 1, r.Attempts)
	require.Equal(t, 3, r.StepNumber)
	require.JSONEq(t, `[]`, r.HierarchyPath)
	require.False(t, r.RequiresApproval)
	require.True(t, r.RunAfterSet)

	// 'pending' alone, every other column set, is still stored as plan.
	engine("status = 'processing', locked_by = 'w3', locked_until = now() + interval '5 minutes'")
	r = engine("status = 'pending'")
	require.Equal(t, "plan", r.Status)
	require.Nil(t, r.LockedBy)

	// One NULL alone takes the full path too, and the lease still goes.
	engine("status = 'processing', locked_by = 'w4', locked_until = now() + interval '5 minutes'")
	r = engine("status = 'failed', extra = null")
	require.Equal(t, "failed", r.Status)
	require.Nil(t, r.LockedBy)
	require.JSONEq(t, `{}`, r.Extra)
}

// The row trigger's WHEN skips ai_tasks_before_write only when the function
// would return the row unchanged. Every insert and update below, as the
// engine and as a client, leaves the same row in ai_tasks (the trigger with
// its WHEN) as in a copy of the table whose trigger always runs the
// function; and the engine's writes that already set what the function
// would set do skip it.
func TestBeforeWriteSkippedOnlyWhenUnchanged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	other := dbtest.CreateUser(ctx, t, pool)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := tx.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	exec(`create temp table before_write_ref (like public.ai_tasks including defaults) on commit drop`)
	exec(`create trigger before_write_ref before insert or update on pg_temp.before_write_ref
		for each row execute function public.ai_tasks_before_write()`)
	// auth.uid() is the user (a client's approved_by, an insert without
	// user_id).
	exec(`select set_config('request.jwt.claims', $1, true)`, `{"sub": "`+user.String()+`", "role": "authenticated"}`)
	engine := func(on bool) {
		t.Helper()
		v := ""
		if on {
			v = "on"
		}
		exec(`select set_config('orchable.engine', $1, true)`, v)
	}
	// same runs one statement on both tables (its text with %s for the
	// table) and compares the row of id; it reports whether the trigger ran
	// on ai_tasks.
	same := func(name, stmt string, id uuid.UUID) bool {
		t.Helper()
		exec("savepoint w")
		var errA error
		ran := dbtest.FunctionCalls(ctx, t, tx, "public.ai_tasks_before_write", func() {
			_, errA = tx.Exec(ctx, strings.Replace(stmt, "%s", "public.ai_tasks", 1), id)
		}) > 0
		if errA != nil {
			exec("rollback to savepoint w")
		}
		exec("savepoint r")
		_, errB := tx.Exec(ctx, strings.Replace(stmt, "%s", "pg_temp.before_write_ref", 1), id)
		if errB != nil {
			exec("rollback to savepoint r")
		}
		require.Equal(t, errB == nil, errA == nil, "%s: %v / %v", name, errA, errB)
		if errA != nil {
			return true
		}
		var a, b string
		require.NoError(t, tx.QueryRow(ctx, `select (to_jsonb(a) - 'id')::text, (to_jsonb(b) - 'id')::text
			from public.ai_tasks a, pg_temp.before_write_ref b where a.id = $1 and b.id = $1`, id).Scan(&a, &b))
		require.JSONEq(t, b, a, "%s: the row differs from the trigger's", name)
		return ran
	}

	// Updates, from three starting rows (the same in both tables).
	starts := map[string]string{
		"processing": "'processing', 'w0', now() + interval '5 minutes'",
		"plan":       "'plan', null, null",
		"completed":  "'completed', null, null",
	}
	skipped := 0
	for sname, start := range starts {
		id := uuid.New()
		engine(true)
		for _, tbl := range []string{"public.ai_tasks", "pg_temp.before_write_ref"} {
			exec(`insert into `+tbl+` (id, user_id, status, locked_by, locked_until, attempts, retry_count, step_number, extra, updated_at)
				values ($1, $2, `+start+`, 1, 2, 3, '{"k": 1}', '2000-01-01')`, id, user)
		}
		for _, on := range []bool{true, false} {
			engine(on)
			for _, status := range []string{"", "'processing'", "'completed'", "'pending'", "'plan'", "'failed'"} {
				for _, lease := range []string{
					"", "locked_by = 'w1', locked_until = now() + interval '1 minute'",
					"locked_by = null, locked_until = null", "locked_by = null", "locked_until = null",
				} {
					for _, updated := range []string{"", "now()", "'2001-01-01'"} {
						nulls := []string{""}
						if on && updated == "now()" {
							nulls = append(nulls, "hierarchy_path", "retry_count", "attempts", "step_number",
								"extra", "run_after", "requires_approval", "input_data")
						}
						for _, null := range nulls {
							var set []string
							if status != "" {
								set = append(set, "status = "+status)
							}
							if lease != "" {
								set = append(set, lease)
							}
							if updated != "" {
								set = append(set, "updated_at = "+updated)
							}
							if null != "" {
								set = append(set, null+" = null")
							}
							set = append(set, "approved_by = '"+other.String()+"'", "attempts = attempts + 0")
							if null == "attempts" {
								set = set[:len(set)-1]
							}
							stmt := "update %s set " + strings.Join(set, ", ") + " where id = $1"
							name := fmt.Sprintf("from %s, engine %v: %s", sname, on, stmt)
							exec("savepoint c")
							ran := same(name, stmt, id)
							exec("rollback to savepoint c")
							if !ran {
								skipped++
								require.True(t, on, "%s: a client's write skipped the trigger", name)
							}
						}
					}
				}
			}
		}
	}
	require.Positive(t, skipped, "no engine update skipped the trigger")

	// The WHEN lists each column the function defaults: a default added to
	// the function without its column in the WHEN would be skipped for the
	// engine's writes (the cases above name today's columns only).
	var src, def string
	require.NoError(t, tx.QueryRow(ctx, `select p.prosrc, pg_get_triggerdef(g.oid) from pg_trigger g join pg_proc p on p.oid = g.tgfoid
		where g.tgrelid = 'public.ai_tasks'::regclass and g.tgname = 'trg_ai_tasks_before_write'`).Scan(&src, &def))
	defaulted := regexp.MustCompile(`new\.(\w+) := coalesce\(`).FindAllStringSubmatch(src, -1)
	require.NotEmpty(t, defaulted)
	for _, m := range defaulted {
		require.Contains(t, def, "(new."+m[1]+" IS NOT NULL)", "the trigger's WHEN does not require %s", m[1])
	}

	// Inserts.
	for _, on := range []bool{true, false} {
		engine(on)
		for _, status := range []string{"", "'plan'", "'pending'", "'processing'"} {
			for _, lease := range []string{"", "w1"} {
				for _, updated := range []string{"", "now()", "'2001-01-01'"} {
					nulls := []string{""}
					if on && updated == "now()" {
						nulls = append(nulls, "hierarchy_path", "retry_count", "attempts", "step_number", "extra",
							"input_data", "task_type", "status", "run_after", "requires_approval", "created_at", "user_id")
					}
					for _, null := range nulls {
						cols := []string{"id"}
						vals := []string{"$1"}
						add := func(c, v string) { cols = append(cols, c); vals = append(vals, v) }
						if null != "user_id" {
							add("user_id", "'"+user.String()+"'")
						}
						if status != "" && null != "status" {
							add("status", status)
						}
						if lease != "" {
							add("locked_by", "'"+lease+"'")
							add("locked_until", "now() + interval '1 minute'")
						}
						if updated != "" {
							add("updated_at", updated)
						}
						if null != "" {
							add(null, "null")
						}
						add("approved_by", "'"+other.String()+"'")
						stmt := "insert into %s (" + strings.Join(cols, ", ") + ") values (" + strings.Join(vals, ", ") + ")"
						name := fmt.Sprintf("engine %v: %s", on, stmt)
						if !same(name, stmt, uuid.New()) {
							require.True(t, on, "%s: a client's write skipped the trigger", name)
						}
					}
				}
			}
		}
	}

	// The engine's own two updates of a task skip it: a claim (lease set,
	// updated_at now()) and a completion (lease dropped, updated_at now()).
	id := uuid.New()
	engine(true)
	for _, tbl := range []string{"public.ai_tasks", "pg_temp.before_write_ref"} {
		exec(`insert into `+tbl+` (id, user_id, status) values ($1, $2, 'plan')`, id, user)
	}
	require.False(t, same("claim", `update %s set status = 'processing', locked_by = 'w', locked_until = now() + interval '5 minutes',
		attempts = attempts + 1, started_at = now(), updated_at = now() where id = $1`, id), "a claim runs the trigger")
	require.False(t, same("completion", `update %s set status = 'completed', output_data = '{}', completed_at = now(),
		locked_by = null, locked_until = null, updated_at = now() where id = $1`, id), "a completion runs the trigger")
}

// A claim and a completion (the two updates of every task) set what the
// row trigger would, so neither runs ai_tasks_before_write; the rows are
// what the trigger made of them before: the lease with processing and
// gone with completed, updated_at moved. Each call is its own
// transaction, as the service makes them.
func TestEngineUpdatesSkipTheRowTrigger(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	_, err := pool.Exec(ctx, `insert into public.ai_tasks (user_id, status, input_data, stage_key, updated_at)
		select $1, 'plan', '{}', 'k', '2000-01-01' from generate_series(1, 5)`, user)
	require.NoError(t, err)

	type row struct {
		Status     string
		LockedBy   *string
		UpdatedNow bool
	}
	// call runs sql as the user in a transaction of its own, and returns
	// how many times the trigger function ran and the user's rows after it.
	call := func(sql string, out any, args ...any) (int64, []row) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		n := dbtest.FunctionCalls(ctx, t, tx, "public.ai_tasks_before_write", func() {
			dbtest.AsUser(ctx, t, tx, user)
			require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(out))
		})
		r, err := tx.Query(ctx, `select status::text, locked_by, updated_at = now() from public.ai_tasks where user_id = $1`, user)
		require.NoError(t, err)
		rows, err := pgx.CollectRows(r, pgx.RowToStructByPos[row])
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		return n, rows
	}

	var claimed struct {
		Tasks []struct {
			ID uuid.UUID `json:"id"`
		} `json:"tasks"`
	}
	n, rows := call("select public.claim_tasks('w-skip', 300, 5, null, true)", &claimed)
	require.Len(t, claimed.Tasks, 5)
	require.Zero(t, n, "claim_tasks ran the row trigger")
	for _, r := range rows {
		require.Equal(t, "processing", r.Status)
		require.NotNil(t, r.LockedBy)
		require.Equal(t, "w-skip", *r.LockedBy)
		require.True(t, r.UpdatedNow, "updated_at moves")
	}

	items := make([]map[string]any, len(claimed.Tasks))
	for i, c := range claimed.Tasks {
		items[i] = map[string]any{"task_id": c.ID, "output": map[string]any{"a": i}}
	}
	var results []struct {
		Status string `json:"status"`
	}
	n, rows = call("select public.complete_tasks('w-skip', $1::json)", &results, items)
	require.Len(t, results, 5)
	require.Zero(t, n, "complete_tasks ran the row trigger")
	for i, r := range results {
		require.Equal(t, "completed", r.Status, i)
	}
	for _, r := range rows {
		require.Equal(t, "completed", r.Status)
		require.Nil(t, r.LockedBy, "the lease goes with processing")
		require.True(t, r.UpdatedNow, "updated_at moves")
	}
}
