package supabase_test

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

func TestDetectPooler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		given  string
		expect supabase.PoolerMode
	}{
		{"Direct", "postgresql://postgres:pw@db.abcdefghijklmnop.supabase.co:5432/postgres", supabase.PoolerNone},
		{"DirectDefaultPort", "postgres://postgres@127.0.0.1/orchable", supabase.PoolerNone},
		{"SupavisorTransaction", "postgresql://postgres.abcdefghijklmnop:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", supabase.PoolerTransaction},
		{"SupavisorTransactionPrisma", "postgresql://postgres.abcdefghijklmnop:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=true", supabase.PoolerTransaction},
		{"SupavisorSession", "postgresql://postgres.abcdefghijklmnop:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", supabase.PoolerSession},
		{"SupavisorSessionUpperCaseHost", "postgres://u:p@AWS-1-US-EAST-1.POOLER.SUPABASE.COM:5432/postgres", supabase.PoolerSession},
		{"DedicatedPgBouncer", "postgresql://postgres:pw@db.abcdefghijklmnop.supabase.co:6543/postgres", supabase.PoolerTransaction},
		{"PgBouncerFlagOtherPort", "postgres://u@127.0.0.1:6432/db?pgbouncer=true&sslmode=disable", supabase.PoolerTransaction},
		{"PgBouncerFlagOne", "postgres://u@127.0.0.1:5432/db?pgbouncer=1", supabase.PoolerTransaction},
		{"PgBouncerFalseOn6543", "postgres://u@127.0.0.1:6543/db?pgbouncer=false", supabase.PoolerNone},
		{"KeywordValue", "host=aws-0-eu-central-1.pooler.supabase.com port=6543 user=postgres.ref dbname=postgres", supabase.PoolerTransaction},
		{"KeywordValueDirect", "host=127.0.0.1 port=5432 user=postgres dbname=postgres", supabase.PoolerNone},
		{"Unparseable", "postgres://%zz", supabase.PoolerNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.expect, supabase.DetectPooler(tt.given))
		})
	}
}

func TestParsePoolConfig(t *testing.T) {
	t.Parallel()
	const dsn = "postgres://u@127.0.0.1:6543/db?pgbouncer=true&sslmode=disable"
	cfg, err := supabase.ParsePoolConfig(dsn, supabase.PoolerTransaction)
	require.NoError(t, err)
	require.NotContains(t, cfg.ConnConfig.RuntimeParams, "pgbouncer", "PostgreSQL refuses unknown settings")
	require.Equal(t, pgx.QueryExecModeExec, cfg.ConnConfig.DefaultQueryExecMode)
	require.Zero(t, cfg.ConnConfig.StatementCacheCapacity)
	require.Zero(t, cfg.ConnConfig.DescriptionCacheCapacity)

	cfg, err = supabase.ParsePoolConfig(dsn+"&default_query_exec_mode=simple_protocol", supabase.PoolerTransaction)
	require.NoError(t, err)
	require.Equal(t, pgx.QueryExecModeSimpleProtocol, cfg.ConnConfig.DefaultQueryExecMode, "an explicit pooler-safe mode is kept")

	cfg, err = supabase.ParsePoolConfig("postgres://u@127.0.0.1:5432/db", supabase.PoolerNone)
	require.NoError(t, err)
	require.Equal(t, pgx.QueryExecModeCacheStatement, cfg.ConnConfig.DefaultQueryExecMode, "direct and session keep the statement cache")

	var perr *supabase.TransactionPoolerError
	err = error(&supabase.TransactionPoolerError{Op: "migrate", Host: "aws-0-eu-central-1.pooler.supabase.com"})
	require.ErrorAs(t, err, &perr)
	require.Contains(t, err.Error(), "aws-0-eu-central-1.pooler.supabase.com:5432")
	require.Contains(t, err.Error(), "db.<ref>.supabase.co:5432")
}

// poolerSafePool returns a pool on this package's database configured as
// for a transaction-mode pooler (the URL carries pgbouncer=true): no
// statement cache, unnamed statements only.
func poolerSafePool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	testPool(tb) // the test functions
	u, err := url.Parse(dbtest.URL(tb))
	require.NoError(tb, err)
	q := u.Query()
	q.Set("pgbouncer", "true")
	u.RawQuery = q.Encode()
	dsn := u.String()
	require.Equal(tb, supabase.PoolerTransaction, supabase.DetectPooler(dsn))
	cfg, err := supabase.ParsePoolConfig(dsn, supabase.DetectPooler(dsn))
	require.NoError(tb, err)
	pool, err := pgxpool.NewWithConfig(tb.Context(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}

// TestDirectPoolerSafeLeavesNoStatements: behind a transaction pooler the
// next transaction may run on another server connection, so the pooler-safe
// mode must leave no named prepared statement on the session; the default
// mode (direct connection, session pooler) caches them.
func TestDirectPoolerSafeLeavesNoStatements(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, tt := range []struct {
		name           string
		givenPgBouncer bool
		expectNamed    bool
	}{
		{name: "PoolerSafe", givenPgBouncer: true, expectNamed: false},
		{name: "Default", givenPgBouncer: false, expectNamed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(dbtest.URL(t))
			require.NoError(t, err)
			q := u.Query()
			q.Set("pgbouncer", strconv.FormatBool(tt.givenPgBouncer))
			u.RawQuery = q.Encode()
			cfg, err := supabase.ParsePoolConfig(u.String(), supabase.DetectPooler(u.String()))
			require.NoError(t, err)
			cfg.MaxConns = 1 // every call and the check share one session
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			testPool(t)

			user := dbtest.CreateUser(ctx, t, dbtest.Pool(t))
			d := supabase.NewDirect(pool, nil)
			for range 2 {
				var rows []map[string]any
				require.NoError(t, d.Select(ctx, userIdentity(t, user), "ai_tasks", supabase.Query{Filters: []supabase.Filter{supabase.Eq("user_id", user.String())}, Limit: 5}, &rows))
				require.NoError(t, d.RPC(ctx, userIdentity(t, user), "t_scalar", map[string]any{"p_a": 2}, nil))
			}
			var named int
			require.NoError(t, pool.QueryRow(ctx, "select count(*)::int from pg_prepared_statements").Scan(&named))
			require.Equal(t, tt.expectNamed, named > 0, "named prepared statements on the session: %d", named)
		})
	}
}
