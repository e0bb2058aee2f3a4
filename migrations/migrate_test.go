package migrations_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// emptyDB creates an empty database for one test and drops it afterwards.
func emptyDB(ctx context.Context, t *testing.T) *pgxpool.Pool {
	t.Helper()
	admin, err := pgx.Connect(ctx, dbtest.AdminURL())
	require.NoError(t, err)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "orchable_mig_" + hex.EncodeToString(rnd[:])
	_, err = admin.Exec(ctx, "create database "+name)
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))

	cfg, err := pgxpool.ParseConfig(dbtest.AdminURL())
	require.NoError(t, err)
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		pool.Close()
		ctx := context.WithoutCancel(ctx)
		admin, err := pgx.Connect(ctx, dbtest.AdminURL())
		if err == nil {
			_, _ = admin.Exec(ctx, "drop database if exists "+name+" with (force)")
			_ = admin.Close(ctx)
		}
	})
	return pool
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("EmptyDatabaseTwice", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		all, err := migrations.All()
		require.NoError(t, err)

		res, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		require.True(t, res.ShimApplied)
		require.Len(t, res.Applied, len(all))

		rows, err := pool.Query(ctx, "select version, name, coalesce(array_length(statements, 1), 0) from supabase_migrations.schema_migrations order by version")
		require.NoError(t, err)
		type rec struct {
			Version, Name string
			N             int
		}
		recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rec])
		require.NoError(t, err)
		require.Len(t, recs, len(all))
		for i, m := range all {
			require.Equal(t, m.Version, recs[i].Version)
			require.Equal(t, m.Name, recs[i].Name)
			require.Equal(t, len(migrations.SplitStatements(m.SQL)), recs[i].N)
			require.Positive(t, recs[i].N)
		}

		var before string
		require.NoError(t, pool.QueryRow(ctx, schemaFingerprint).Scan(&before))
		res, err = migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		require.False(t, res.ShimApplied)
		require.Empty(t, res.Applied)
		require.Len(t, res.Skipped, len(all))
		var after string
		require.NoError(t, pool.QueryRow(ctx, schemaFingerprint).Scan(&after))
		require.Equal(t, before, after, "a second run must change nothing")
	})

	t.Run("ConcurrentRunners", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
				errs <- err
			}()
		}
		for range 3 {
			require.NoError(t, <-errs)
		}
		all, err := migrations.All()
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "select count(*) from supabase_migrations.schema_migrations").Scan(&n))
		require.Equal(t, len(all), n)
	})

	t.Run("WithoutLocalNeedsSupabase", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		// Without the shim there is no auth schema: the first migration fails,
		// names its file and leaves nothing behind.
		_, err := migrations.Migrate(ctx, pool, &migrations.Config{})
		var merr *migrations.MigrationError
		require.ErrorAs(t, err, &merr)
		all, _ := migrations.All()
		// The first migration that needs auth (history placeholders before
		// it change nothing, and so does the upgrade of an original
		// database on a database without one).
		first := ""
		for _, m := range all {
			if strings.Contains(m.SQL, "auth.") && m.Name != "upgrade_original" {
				first = m.File
				break
			}
		}
		require.Equal(t, first, merr.File)
		require.Contains(t, err.Error(), first)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "select count(*) from pg_tables where schemaname = 'public'").Scan(&n))
		require.Zero(t, n, "a failed migration must leave the database as it was")
	})
}

func TestFailedMigrationRollsBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := emptyDB(ctx, t)
	bad := []migrations.Migration{
		{Version: "20990101000000", Name: "good", File: "20990101000000_good.sql", SQL: "create table t_good (id int);"},
		{Version: "20990101000001", Name: "bad", File: "20990101000001_bad.sql", SQL: "create table t_bad (id int);\n\nselect no_such_column from t_bad;"},
	}
	_, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{Local: true}, bad)
	var merr *migrations.MigrationError
	require.ErrorAs(t, err, &merr)
	require.Equal(t, "20990101000001_bad.sql", merr.File)
	require.Equal(t, 3, merr.Line)
	require.Contains(t, err.Error(), "no_such_column")

	var good, badExists bool
	require.NoError(t, pool.QueryRow(ctx, "select to_regclass('public.t_good') is not null, to_regclass('public.t_bad') is not null").Scan(&good, &badExists))
	require.True(t, good)
	require.False(t, badExists)
	var versions []string
	rows, err := pool.Query(ctx, "select version from supabase_migrations.schema_migrations order by 1")
	require.NoError(t, err)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"20990101000000"}, versions)
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		given  string
		expect []string
	}{
		{"Simple", "select 1; select 2;", []string{"select 1", "select 2"}},
		{"DollarQuoted", "create function f() returns int language sql as $$ select 1; $$; select 2", []string{"create function f() returns int language sql as $$ select 1; $$", "select 2"}},
		{"TaggedDollar", "do $body$ begin perform 1; end $body$;", []string{"do $body$ begin perform 1; end $body$"}},
		{"Quotes", "select 'a;b'; select \"x;y\" from t", []string{"select 'a;b'", "select \"x;y\" from t"}},
		{"Comments", "-- a; b\nselect 1; /* c; d */ select 2;\n-- trailing", []string{"-- a; b\nselect 1", "/* c; d */ select 2"}},
		{"Positional", "select $1; select 2", []string{"select $1", "select 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.expect, migrations.SplitStatements(tt.given))
		})
	}
}

// schemaFingerprint summarises the public schema so two runs can be compared.
const schemaFingerprint = `
select md5(string_agg(x, ',' order by x)) from (
  select 'c:' || table_name || '.' || column_name || ':' || data_type || ':' || coalesce(column_default, '') as x
  from information_schema.columns where table_schema = 'public'
  union all select 'p:' || tablename || '.' || policyname || ':' || coalesce(qual, '') || ':' || coalesce(with_check, '') from pg_policies where schemaname = 'public'
  union all select 'f:' || p.oid::regprocedure::text || md5(p.prosrc) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'
  union all select 't:' || tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and not t.tgisinternal
  union all select 'i:' || indexname || ':' || indexdef from pg_indexes where schemaname = 'public'
) s`
