// Package migrations holds the SQL schema of orchable and the runner that
// applies it.
//
// Files are named <YYYYMMDDHHMMSS>_<name>.sql (the Supabase CLI convention),
// embedded in the binary and applied in order, each inside its own
// transaction, under an advisory lock so several instances starting together
// are safe. Applied versions are recorded in
// supabase_migrations.schema_migrations exactly as the Supabase CLI records
// them (version, name, statements), so `supabase db push` and
// `orchable migrate` agree on one history.
//
// The local Supabase shim (shim/local_supabase.sql: roles, the auth schema,
// extensions.pgcrypto) is not a migration: Migrate applies it only when
// Config.Local is set and the auth schema is missing, so it never reaches a
// real project.
package migrations

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed *.sql
var files embed.FS

//go:embed shim/local_supabase.sql
var shimSQL string

//go:embed shim/legacy_default_privileges.sql
var legacyDefaultPrivilegesSQL string

// advisoryLockKey serialises concurrent runners (any stable 64-bit value).
const advisoryLockKey int64 = 0x6f72636861626c65 // "orchable"

// fileNameRE is the Supabase CLI's migration file pattern: a numeric
// version (normally a 14-digit UTC timestamp), an underscore and a name.
var fileNameRE = regexp.MustCompile(`^([0-9]+)_(.+)\.sql$`)

// The Supabase CLI's refusals (pkg/migration/apply.go), worded as it words
// them, so `orchable migrate` and `supabase db push` agree.
var (
	// ErrMissingLocal: the database records a version that no embedded
	// migration has (someone else migrated it, or this binary is older).
	ErrMissingLocal = errors.New("Remote migration versions not found in local migrations directory.") //nolint:staticcheck // the CLI's wording
	// ErrMissingRemote: an embedded migration older than the newest applied
	// one has not been applied (history would be rewritten out of order).
	ErrMissingRemote = errors.New("Found local migration files to be inserted before the last migration on remote database.") //nolint:staticcheck // the CLI's wording
)

// Migration is one embedded migration file.
type Migration struct {
	Version string // numeric, normally a 14-digit UTC timestamp
	Name    string // the part after the underscore, without .sql
	File    string // file name
	SQL     string
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) { return Load(files) }

// Load reads the migrations (*.sql at the top of fsys) in version order;
// the SQL source tools read the directory on disk with it.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("error reading migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q does not match <YYYYMMDDHHMMSS>_<name>.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("error reading migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: m[1], Name: m[2], File: e.Name(), SQL: string(body)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %s", out[i-1].File, out[i].File, out[i].Version)
		}
	}
	return out, nil
}

// ShimSQL returns the local Supabase shim. It is exported for tests and the
// PostgREST test server; production code applies it only through Migrate
// with Config.Local.
func ShimSQL() string { return shimSQL }

// LegacyDefaultPrivilegesSQL returns the default privileges of Supabase
// projects created before 2026 (shim/legacy_default_privileges.sql), for
// tests that check the migrations hold under them. Never applied by Migrate.
func LegacyDefaultPrivilegesSQL() string { return legacyDefaultPrivilegesSQL }

// Config configures Migrate.
type Config struct {
	// Local applies the local Supabase shim first when the auth schema is
	// missing (plain PostgreSQL for development and tests). Default false.
	Local bool
	// IncludeAll applies embedded migrations older than the newest applied
	// one instead of refusing (the CLI's --include-all).
	IncludeAll bool
	// Logger receives one line per applied migration. Default: discard.
	Logger *slog.Logger
}

// Result reports what Migrate did.
type Result struct {
	ShimApplied bool
	Applied     []string // versions applied by this run
	Skipped     []string // versions that were already recorded
}

// MigrationError names the file and the SQL error of a failed migration.
type MigrationError struct {
	File string
	Line int // 1-based line of the failing position, 0 when unknown
	err  error
}

func (e *MigrationError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("migration %s failed near line %d: %v", e.File, e.Line, e.err)
	}
	return fmt.Sprintf("migration %s failed: %v", e.File, e.err)
}

func (e *MigrationError) Unwrap() error { return e.err }

// Migrate applies every embedded migration not yet recorded in
// supabase_migrations.schema_migrations. Running it twice is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (*Result, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	return apply(ctx, pool, cfg, all)
}

func apply(ctx context.Context, pool *pgxpool.Pool, cfg *Config, all []Migration) (*Result, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("error acquiring connection for migrations: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", advisoryLockKey); err != nil {
		return nil, fmt.Errorf("error taking migration lock: %w", err)
	}
	defer func() {
		// Unlock even if ctx was cancelled.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", advisoryLockKey)
	}()

	res := &Result{}
	if cfg.Local {
		var hasAuth bool
		if err := conn.QueryRow(ctx, "select exists (select 1 from pg_namespace where nspname = 'auth')").Scan(&hasAuth); err != nil {
			return nil, fmt.Errorf("error checking for the auth schema: %w", err)
		}
		if !hasAuth {
			if err := inTx(ctx, conn.Conn(), func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, shimSQL)
				return err
			}); err != nil {
				return nil, &MigrationError{File: "shim/local_supabase.sql", Line: errorLine(shimSQL, err), err: err}
			}
			res.ShimApplied = true
			logger.InfoContext(ctx, "migrate: applied local Supabase shim")
		}
	}

	// The history table, as the Supabase CLI creates it (pkg/migration/history.go).
	if _, err := conn.Exec(ctx, `
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;`); err != nil {
		return nil, fmt.Errorf("error creating supabase_migrations.schema_migrations: %w", err)
	}

	rows, err := conn.Query(ctx, "select version, statements from supabase_migrations.schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("error reading migration history: %w", err)
	}
	type record struct {
		Version    string
		Statements []string
	}
	history, err := pgx.CollectRows(rows, pgx.RowToStructByPos[record])
	if err != nil {
		return nil, fmt.Errorf("error reading migration history: %w", err)
	}
	applied := make(map[string][]string, len(history))
	remote := make([]string, 0, len(history))
	for _, h := range history {
		applied[h.Version] = h.Statements
		remote = append(remote, h.Version)
	}
	if err := checkHistory(all, remote, cfg.IncludeAll); err != nil {
		return nil, err
	}

	for _, m := range all {
		stmts := SplitStatements(m.SQL)
		if recorded, ok := applied[m.Version]; ok {
			res.Skipped = append(res.Skipped, m.Version)
			if recorded != nil && !slices.Equal(recorded, stmts) {
				logger.WarnContext(ctx, "migrate: an applied migration differs from the embedded file; the database keeps what was applied",
					slog.String("version", m.Version), slog.String("name", m.Name))
			}
			continue
		}
		// Settings a previous file changed with set_config(..., false) must
		// not leak into the next one (the CLI runs RESET ALL too).
		if _, err := conn.Exec(ctx, "reset all"); err != nil {
			return res, fmt.Errorf("error resetting the session before %s: %w", m.File, err)
		}
		err := inTx(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "set local lock_timeout = '4s'"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx,
				"insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)",
				m.Version, m.Name, stmts)
			return err
		})
		if err != nil {
			return res, &MigrationError{File: m.File, Line: errorLine(m.SQL, err), err: err}
		}
		res.Applied = append(res.Applied, m.Version)
		logger.InfoContext(ctx, "migrate: applied", slog.String("version", m.Version), slog.String("name", m.Name))
	}
	return res, nil
}

// checkHistory applies the Supabase CLI's rules to the recorded versions
// (remote) and the embedded migrations: every recorded version must exist
// locally, and no unapplied local migration may be older than the newest
// recorded one (unless includeAll).
func checkHistory(local []Migration, remote []string, includeAll bool) error {
	have := make(map[string]bool, len(local))
	for _, m := range local {
		have[m.Version] = true
	}
	var missing []string
	latest := ""
	recorded := make(map[string]bool, len(remote))
	for _, v := range remote {
		recorded[v] = true
		latest = max(latest, v)
		if !have[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%w\nMake sure this binary is up to date. If the versions were reverted on purpose, repair the history:\n"+
			"  supabase migration repair --status reverted %s", ErrMissingLocal, strings.Join(missing, " "))
	}
	var early []string
	for _, m := range local {
		if !recorded[m.Version] && m.Version < latest {
			early = append(early, m.File)
		}
	}
	if len(early) > 0 && !includeAll {
		return fmt.Errorf("%w\n  %s\nRerun with --include-all to apply them anyway", ErrMissingRemote, strings.Join(early, "\n  "))
	}
	return nil
}

func inTx(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// errorLine maps a PostgreSQL error position (1-based character offset into
// the query text) to a line number.
func errorLine(sql string, err error) int {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Position <= 0 {
		return 0
	}
	runes := []rune(sql)
	pos := min(int(pgErr.Position), len(runes))
	return strings.Count(string(runes[:pos]), "\n") + 1
}
