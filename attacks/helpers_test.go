package attacks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// ---------------------------------------------------------------------------
// The results table.
// ---------------------------------------------------------------------------

type cell struct {
	attack, path, expected, outcome string
	ok                              bool
}

var results struct { //nolint:gochecknoglobals // one table per test binary
	sync.Mutex

	rows []cell
}

// record adds a row to the table and fails the test, naming the attack,
// when the outcome is not the expected one.
func record(t *testing.T, attack, path, expected, outcome string, ok bool) {
	t.Helper()
	results.Lock()
	results.rows = append(results.rows, cell{attack, path, expected, outcome, ok})
	results.Unlock()
	if !ok {
		t.Errorf("ATTACK SUCCEEDED: %s (%s): expected %s, got %s", attack, path, expected, outcome)
	}
}

func printTable() {
	results.Lock()
	defer results.Unlock()
	rows := append([]cell(nil), results.rows...)
	results.rows = nil // each test prints the rows it recorded
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].attack < rows[j].attack })
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-4s %-66s %-16s %-40s %s\n", "ok", "attack", "path", "expected", "outcome")
	failed := 0
	for _, r := range rows {
		mark := "ok"
		if !r.ok {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(&b, "%-4s %-66s %-16s %-40s %s\n", mark, r.attack, r.path, r.expected, r.outcome)
	}
	fmt.Fprintf(&b, "%d attacks, %d held, %d failed\n", len(rows), len(rows)-failed, failed)
	fmt.Fprint(os.Stdout, b.String())
}

// ---------------------------------------------------------------------------
// Two tenants on one database.
// ---------------------------------------------------------------------------

type world struct {
	pool *pgxpool.Pool
	db   *supabase.Direct
	a, b uuid.UUID // victim, attacker
}

func newWorld(t *testing.T, pool *pgxpool.Pool) *world {
	t.Helper()
	ctx := t.Context()
	return &world{pool: pool, db: supabase.NewDirect(pool, nil), a: dbtest.CreateUser(ctx, t, pool), b: dbtest.CreateUser(ctx, t, pool)}
}

func identity(user uuid.UUID) supabase.Identity {
	b, _ := json.Marshal(dbtest.UserClaims(user))
	return supabase.Identity{Claims: b}
}

// worldIdentity is the dispatcher's IdentitySource for the direct transport,
// for the world's own users only. A test that runs the service's loop must
// not work the tasks of the package's other tests: its sweeper wakes the
// owner of every due task in the shared database, and once completed a task
// ForgeBatchCounters had just launched, which then saw its victim's batch
// counted (a failure seen in CI).
type worldIdentity struct{ users []uuid.UUID }

func (w worldIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	if !slices.Contains(w.users, user) {
		return supabase.Identity{}, fmt.Errorf("user %s belongs to another test", user)
	}
	return identity(user), nil
}

// as runs one statement as the user, exactly as PostgREST runs a request
// (set local role authenticated and request.jwt.claims, one transaction).
func (w *world) as(ctx context.Context, t *testing.T, user uuid.UUID, sql string, args ...any) (pgconn.CommandTag, error) { //nolint:unparam // the shape of pgx Exec
	t.Helper()
	tx, err := w.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, user)
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return tag, err
	}
	return tag, tx.Commit(ctx)
}

// asRow runs a query as the user and scans one row.
func (w *world) asRow(ctx context.Context, t *testing.T, user uuid.UUID, sql string, args []any, dest ...any) error {
	t.Helper()
	tx, err := w.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, user)
	if err := tx.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// forge runs a statement as the database owner with the engine setting on:
// what an attacker could do only if the row trigger did not protect engine
// columns. Used for the defence-in-depth replays.
func (w *world) forge(ctx context.Context, t *testing.T, sql string, args ...any) {
	t.Helper()
	tx, err := w.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, sql, args...)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
}

func (w *world) rpc(ctx context.Context, user uuid.UUID, fn string, args map[string]any, out any) error {
	return w.db.RPC(ctx, identity(user), fn, args, out)
}

func pgCode(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code
	}
	if se, ok := errors.AsType[*supabase.Error](err); ok {
		return se.Code
	}
	if err != nil {
		return "error"
	}
	return "ok"
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code + " " + pgErr.Message
	}
	return err.Error()
}

type stage struct {
	id, key  string
	cfg      map[string]any
	next     []string
	isPublic bool
}

func (w *world) templates(ctx context.Context, t *testing.T, owner uuid.UUID, stages ...stage) {
	t.Helper()
	for _, s := range stages {
		cfg, _ := json.Marshal(s.cfg)
		next, _ := json.Marshal(append([]string{}, s.next...))
		_, err := w.as(ctx, t, owner, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, is_public)
			values ($1, 'Answer for %%input_data%%', $2, $3, $4, $5)`, s.id, s.key, cfg, next, s.isPublic)
		require.NoError(t, err)
	}
}

type launched struct {
	BatchID  uuid.UUID   `json:"batch_id"`
	LaunchID uuid.UUID   `json:"launch_id"`
	TaskIDs  []uuid.UUID `json:"task_ids"`
}

func (w *world) launch(ctx context.Context, t *testing.T, user uuid.UUID, root string, rows ...map[string]any) launched {
	t.Helper()
	var out launched
	require.NoError(t, w.rpc(ctx, user, "launch_batch", map[string]any{"p_template_id": root, "p_rows": rows}, &out))
	return out
}

// drive claims and completes the user's runnable tasks through the SQL API
// until none is left; each output carries a secret naming its owner.
func (w *world) drive(ctx context.Context, t *testing.T, user uuid.UUID, secret string) {
	t.Helper()
	for range 50 {
		var claimed []struct {
			Task struct {
				ID       uuid.UUID `json:"id"`
				StageKey *string   `json:"stage_key"`
			} `json:"task"`
		}
		require.NoError(t, w.rpc(ctx, user, "claim_tasks", map[string]any{"p_worker": "drive", "p_limit": 100}, &claimed))
		if len(claimed) == 0 {
			return
		}
		for _, c := range claimed {
			out := map[string]any{"secret": secret, "items": []string{secret + "-1", secret + "-2"}, "output_data": []string{secret}}
			require.NoError(t, w.rpc(ctx, user, "complete_task", map[string]any{
				"p_task_id": c.Task.ID, "p_worker": "drive", "p_output": out, "p_usage": map[string]any{},
			}, nil))
		}
	}
	t.Fatal("drive: tasks kept appearing")
}

// snapshot is a digest of every row a user owns (tasks and batches), to show
// that an attack left them exactly as they were.
func (w *world) snapshot(ctx context.Context, t *testing.T, user uuid.UUID) string {
	t.Helper()
	var s string
	require.NoError(t, w.pool.QueryRow(ctx, `
select coalesce(md5(string_agg(x, '|' order by x)), '') from (
  select t.id::text || t.status::text || coalesce(t.input_data::text, '') || coalesce(t.output_data::text, '') ||
         coalesce(t.completed_at::text, '') || coalesce(t.idempotency_key, '') as x
  from public.ai_tasks t where t.user_id = $1
  union all
  select b.id::text || b.status || coalesce(b.launch_id::text, '') from public.task_batches b where b.created_by = $1) s`,
		user).Scan(&s))
	return s
}

// leaked counts the attacker's rows whose content holds the victim's secret
// or that point at the victim's rows.
func (w *world) leaked(ctx context.Context, t *testing.T, secret string) int {
	t.Helper()
	var n int
	require.NoError(t, w.pool.QueryRow(ctx, `
select count(*) from public.ai_tasks t
where t.user_id = $1 and (coalesce(t.input_data::text, '') like '%' || $2 || '%'
   or coalesce(t.output_data::text, '') like '%' || $2 || '%'
   or t.parent_task_id in (select id from public.ai_tasks where user_id = $3)
   or t.root_task_id in (select id from public.ai_tasks where user_id = $3)
   or t.prompt_template_id in (select id from public.prompt_templates where user_id = $3 and not is_public))`,
		w.b, secret, w.a).Scan(&n))
	return n
}

// contentLeaked counts the attacker's rows whose content holds the
// victim's secret.
func (w *world) contentLeaked(ctx context.Context, t *testing.T, secret string) int {
	t.Helper()
	var n int
	require.NoError(t, w.pool.QueryRow(ctx, `
select count(*) from public.ai_tasks t
where t.user_id = $1 and (coalesce(t.input_data::text, '') like '%' || $2 || '%'
   or coalesce(t.output_data::text, '') like '%' || $2 || '%')`, w.b, secret).Scan(&n))
	return n
}

// waitFor polls a condition on the database (bounded, no fixed sleep).
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// echoModel answers every prompt with a JSON object holding a secret; it
// stands in for Gemini in the service-loop attacks.
type echoModel struct{ secret string }

func (m echoModel) Generate(_ context.Context, _ model.Request) (model.Response, error) {
	b, _ := json.Marshal(map[string]any{"secret": m.secret, "output_data": []string{m.secret}})
	return model.Response{Output: b}, nil
}

var _ = pgx.ErrNoRows
