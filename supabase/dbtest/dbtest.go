// Package dbtest gives each test package its own fresh, migrated PostgreSQL
// database on the local server, and helpers to act as a Supabase user the way
// PostgREST does (set local role + request.jwt.claims).
//
// The first package to need a database builds a template database (the local
// Supabase shim plus every embedded migration), named after a hash of the SQL,
// under an advisory lock; each package then clones it with CREATE DATABASE …
// TEMPLATE, which takes a fraction of a second. Databases are dropped by Main.
//
// TEST_DATABASE_URL selects the server (default
// postgres://postgres@127.0.0.1:5432/postgres); its role must be able to
// create databases and roles.
package dbtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/orchable/orchable/migrations"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

// Package-level state is unavoidable here: one database per test binary
// (STYLE rule 15).
//
//nolint:gochecknoglobals,errname // one database per test package; initErr is its remembered setup error, not a sentinel
var (
	once    sync.Once
	pool    *pgxpool.Pool
	dbName  string
	dbURL   string
	initErr error
)

// AdminURL returns the server URL tests connect to for administration.
func AdminURL() string {
	return cmp.Or(os.Getenv("TEST_DATABASE_URL"), DefaultURL)
}

// Pool returns a pool connected to this test package's database, creating it
// on first use. Tests must not close it.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	once.Do(func() { pool, dbName, dbURL, initErr = setup() })
	if initErr != nil {
		tb.Fatalf("dbtest: %v", initErr)
	}
	return pool
}

// URL returns the connection URL of this test package's database (after
// Pool has been called at least once, which it calls).
func URL(tb testing.TB) string {
	tb.Helper()
	Pool(tb)
	return dbURL
}

// Main runs the tests, then closes the pool, drops the package database and
// checks for leaked goroutines. Call it from TestMain:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
func Main(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if legacyPool != nil {
		legacyPool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, AdminURL()); err == nil {
			_, _ = conn.Exec(ctx, "drop database if exists "+pgx.Identifier{legacyName}.Sanitize()+" with (force)")
			_ = conn.Close(ctx)
		}
		cancel()
	}
	if pool != nil {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, AdminURL()); err == nil {
			_, _ = conn.Exec(ctx, "drop database if exists "+pgx.Identifier{dbName}.Sanitize()+" with (force)")
			_ = conn.Close(ctx)
		}
		cancel()
	}
	if code == 0 {
		// The genai SDK's dependency starts this daemon at init.
		opts = append(opts, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func setup() (*pgxpool.Pool, string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return nil, "", "", fmt.Errorf("connecting to %s (set TEST_DATABASE_URL): %w", redactURL(AdminURL()), err)
	}
	defer admin.Close(ctx)

	tmpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		return nil, "", "", err
	}

	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "orchable_test_" + hex.EncodeToString(rnd[:])
	// Clone under the same lock so no session is connected to the template.
	if _, err := admin.Exec(ctx, "select pg_advisory_lock($1)", templateLockKey); err != nil {
		return nil, "", "", err
	}
	_, err = admin.Exec(ctx, fmt.Sprintf("create database %s template %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize()))
	_, _ = admin.Exec(ctx, "select pg_advisory_unlock($1)", templateLockKey)
	if err != nil {
		return nil, "", "", fmt.Errorf("cloning template %s: %w", tmpl, err)
	}

	// Tests need no durability: skip the WAL flush at commit (it costs
	// ~15 ms per commit on this kind of disk).
	if _, err := admin.Exec(ctx, "alter database "+pgx.Identifier{name}.Sanitize()+" set synchronous_commit = off"); err != nil {
		return nil, "", "", err
	}
	url, err := withDatabase(AdminURL(), name)
	if err != nil {
		return nil, "", "", err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, "", "", err
	}
	cfg.MaxConns = 20
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, "", "", err
	}
	return p, name, url, nil
}

const templateLockKey int64 = 0x6f7263687464 // "orchtd"

// ensureTemplate creates (once per migration content) a migrated template
// database and returns its name.
func ensureTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	all, err := migrations.All()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(migrations.ShimSQL()))
	for _, m := range all {
		h.Write([]byte(m.File))
		h.Write([]byte(m.SQL))
	}
	name := "orchable_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	if _, err := admin.Exec(ctx, "select pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", err
	}
	defer func() {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", templateLockKey)
	}()

	var exists bool
	if err := admin.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Drop stale templates of older migration sets.
	rows, err := admin.Query(ctx, "select datname from pg_database where datname like 'orchable_tmpl_%'")
	if err != nil {
		return "", err
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for _, s := range stale {
		_, _ = admin.Exec(ctx, "drop database if exists "+pgx.Identifier{s}.Sanitize()+" with (force)")
	}

	building := name + "_building"
	_, _ = admin.Exec(ctx, "drop database if exists "+pgx.Identifier{building}.Sanitize()+" with (force)")
	if _, err := admin.Exec(ctx, "create database "+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating template database: %w", err)
	}
	url, err := withDatabase(AdminURL(), building)
	if err != nil {
		return "", err
	}
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		return "", err
	}
	_, err = migrations.Migrate(ctx, p, &migrations.Config{Local: true})
	p.Close()
	if err != nil {
		return "", fmt.Errorf("migrating template database: %w", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("alter database %s rename to %s",
		pgx.Identifier{building}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", fmt.Errorf("renaming template database: %w", err)
	}
	return name, nil
}

func withDatabase(rawURL, db string) (string, error) {
	if _, err := pgx.ParseConfig(rawURL); err != nil {
		return "", fmt.Errorf("parsing TEST_DATABASE_URL: %w", err)
	}
	i := strings.LastIndex(rawURL, "/")
	q := ""
	if j := strings.Index(rawURL[i:], "?"); j >= 0 {
		q = rawURL[i+j:]
	}
	return rawURL[:i+1] + db + q, nil
}

func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if s := strings.Index(u, "://"); s >= 0 && s < at {
			return u[:s+3] + "…" + u[at:]
		}
	}
	return u
}

// TestTx begins a transaction on the package database that is rolled back
// when the test ends.
func TestTx(ctx context.Context, tb testing.TB) pgx.Tx {
	tb.Helper()
	tx, err := Pool(tb).Begin(ctx)
	if err != nil {
		tb.Fatalf("dbtest: begin: %v", err)
	}
	tb.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	return tx
}

// UserClaims returns the claims a Supabase access token of the user carries
// (the subset RLS policies read).
func UserClaims(userID uuid.UUID) map[string]any {
	return map[string]any{
		"sub":          userID.String(),
		"role":         "authenticated",
		"aud":          "authenticated",
		"aal":          "aal1",
		"is_anonymous": false,
	}
}

// AsUser makes the rest of tx run as the user, exactly as PostgREST does:
// set local role authenticated, request.jwt.claims, request.method and
// request.path.
func AsUser(ctx context.Context, tb testing.TB, tx pgx.Tx, userID uuid.UUID) {
	tb.Helper()
	AsClaims(ctx, tb, tx, UserClaims(userID))
}

// AsClaims runs the rest of tx with the given JWT claims; the role comes from
// the "role" claim (anon when absent).
func AsClaims(ctx context.Context, tb testing.TB, tx pgx.Tx, claims map[string]any) {
	tb.Helper()
	role, _ := claims["role"].(string)
	role = cmp.Or(role, "anon")
	b, err := json.Marshal(claims)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	if _, err := tx.Exec(ctx, "set local role "+pgx.Identifier{role}.Sanitize()); err != nil {
		tb.Fatalf("dbtest: set role %s: %v", role, err)
	}
	if _, err := tx.Exec(ctx,
		"select set_config('request.jwt.claims', $1, true), set_config('request.method', 'POST', true), set_config('request.path', '/rest/v1/rpc', true)",
		string(b)); err != nil {
		tb.Fatalf("dbtest: set claims: %v", err)
	}
}

// AsAnon makes the rest of tx run as the anon role with no claims.
func AsAnon(ctx context.Context, tb testing.TB, tx pgx.Tx) {
	tb.Helper()
	AsClaims(ctx, tb, tx, map[string]any{"role": "anon"})
}

// FunctionCalls runs run and returns how many times the function fn
// ("schema.name") was called in tx meanwhile. It turns track_functions on
// for the rest of tx, which takes a superuser: call it before tx changes
// role (run may change it, as AsUser does). The count is the difference of
// pg_stat_xact_user_functions around run, not the view's value after it:
// the view also shows calls that earlier transactions of the same
// connection made and the server has not collected yet (PostgreSQL keeps
// them for up to a second), and on a package's shared pool those may be
// another test's.
func FunctionCalls(ctx context.Context, tb testing.TB, tx pgx.Tx, fn string, run func()) int64 {
	tb.Helper()
	return CallCounts(ctx, tb, tx, run, fn)[fn]
}

// CallCounts is FunctionCalls for several functions at once: how many times
// each of fns was called in tx while run ran, by name.
func CallCounts(ctx context.Context, tb testing.TB, tx pgx.Tx, run func(), fns ...string) map[string]int64 {
	tb.Helper()
	for _, fn := range fns {
		if _, _, ok := strings.Cut(fn, "."); !ok {
			tb.Fatalf("dbtest: function %q is not schema-qualified", fn)
		}
	}
	if _, err := tx.Exec(ctx, "set local track_functions = 'all'"); err != nil {
		tb.Fatalf("dbtest: track_functions: %v", err)
	}
	calls := func() map[string]int64 {
		tb.Helper()
		counts := make(map[string]int64, len(fns))
		for _, fn := range fns {
			var n int64
			if err := tx.QueryRow(ctx, `select coalesce(sum(calls), 0) from pg_stat_xact_user_functions
				where schemaname || '.' || funcname = $1`, fn).Scan(&n); err != nil {
				tb.Fatalf("dbtest: calls of %s: %v", fn, err)
			}
			counts[fn] = n
		}
		return counts
	}
	before := calls()
	run()
	after := calls()
	for fn, n := range before {
		after[fn] -= n
	}
	return after
}

// CreateUser inserts an auth.users row and returns its id.
func CreateUser(ctx context.Context, tb testing.TB, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
},
) uuid.UUID {
	tb.Helper()
	id := uuid.New()
	if _, err := db.Exec(ctx, "insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)",
		id, id.String()+"@example.test"); err != nil {
		tb.Fatalf("dbtest: create user: %v", err)
	}
	return id
}

// LegacyPool returns a pool on a second database of this test package,
// created once: the local shim, then Supabase's pre-2026 default
// privileges (every new table, function and sequence granted to anon,
// authenticated and service_role), then every migration. Tests run their
// privilege and RLS checks on both Pool and LegacyPool. The database is
// dropped by Main.
func LegacyPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	Pool(tb)
	legacyOnce.Do(func() { legacyPool, legacyName, legacyErr = setupLegacy() })
	if legacyErr != nil {
		tb.Fatalf("dbtest: legacy database: %v", legacyErr)
	}
	return legacyPool
}

//nolint:gochecknoglobals,errname // one legacy database per test package; legacyErr is its remembered setup error, not a sentinel
var (
	legacyOnce sync.Once
	legacyPool *pgxpool.Pool
	legacyName string
	legacyErr  error
)

func setupLegacy() (*pgxpool.Pool, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return nil, "", err
	}
	defer admin.Close(ctx)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "orchable_legacy_" + hex.EncodeToString(rnd[:])
	if _, err := admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, "", err
	}
	url, err := withDatabase(AdminURL(), name)
	if err != nil {
		return nil, name, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, name, err
	}
	defer conn.Close(ctx)
	for _, sql := range []string{migrations.ShimSQL(), migrations.LegacyDefaultPrivilegesSQL()} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, name, err
		}
	}
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		return nil, name, err
	}
	if _, err := migrations.Migrate(ctx, p, &migrations.Config{}); err != nil {
		p.Close()
		return nil, name, err
	}
	return p, name, nil
}

// FoldCounters folds the batch counter deltas and returns only once every
// delta committed before the call is in task_batches. public.fold_batch_counters
// returns 0 at once when another session holds its advisory lock (the
// sweeper's contract); tests that fold and then read counters would read the
// other session's half. This takes the same transaction-level lock blocking
// (advisory locks are reentrant within a session), so it waits for the other
// folder to commit, then folds what is left. Returns the batches updated.
func FoldCounters(ctx context.Context, tb testing.TB, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
},
) int {
	tb.Helper()
	tx, err := db.Begin(ctx)
	if err != nil {
		tb.Fatalf("dbtest: fold: begin: %v", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock(hashtext('orchable.fold_batch_counters'))"); err != nil {
		tb.Fatalf("dbtest: fold: lock: %v", err)
	}
	var n int
	if err := tx.QueryRow(ctx, "select public.fold_batch_counters()").Scan(&n); err != nil {
		tb.Fatalf("dbtest: fold: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatalf("dbtest: fold: commit: %v", err)
	}
	return n
}
