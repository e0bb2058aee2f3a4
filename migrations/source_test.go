package migrations_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
)

// The function sources (sql/functions) and the migration history agree:
// every function's latest definition in migrations/ is its source file, and
// every source file is in the history. A change to a source file without
// `make sql`, or a migration that changes a function without its source,
// fails here.
func TestFunctionSources(t *testing.T) {
	t.Parallel()
	all, err := migrations.All()
	require.NoError(t, err)
	latest, err := migrations.LatestFunctions(all)
	require.NoError(t, err)
	sources, err := migrations.LoadSources(os.DirFS("../sql/functions"))
	require.NoError(t, err)
	require.NotEmpty(t, sources)
	for k, l := range latest {
		s, ok := sources[k]
		if !ok {
			t.Errorf("function %s (latest definition in %s) has no source: write sql/functions/%s (go run ./migrations/cmd/sqlgen -bootstrap)",
				k, l.Origin, migrations.SourceFileName(l.Name))
			continue
		}
		if !migrations.SameDefinition(l.SQL, s.SQL) {
			t.Errorf("sql/functions/%s differs from its latest definition in %s: run `make sql` to write the next migration", s.Origin, l.Origin)
		}
	}
	for k, s := range sources {
		if _, ok := latest[k]; !ok {
			t.Errorf("sql/functions/%s defines %s, which no migration creates: run `make sql`", s.Origin, k)
		}
	}
}

// Every function of ours has exactly the privileges sql/grants.txt states,
// and every function has a line there.
func TestFunctionGrants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	text, err := os.ReadFile("../sql/grants.txt")
	require.NoError(t, err)
	grants, err := migrations.ParseGrants(string(text))
	require.NoError(t, err)
	rows, err := dbtest.Pool(t).Query(ctx, `
select n.nspname || '.' || p.proname, has_function_privilege('authenticated', p.oid, 'execute'),
       has_function_privilege('service_role', p.oid, 'execute'), has_function_privilege('anon', p.oid, 'execute')
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
left join pg_depend d on d.objid = p.oid and d.deptype = 'e'
where n.nspname in ('public', 'orchable') and d.objid is null and p.prokind = 'f'`)
	require.NoError(t, err)
	type fn struct {
		Name                         string
		Authenticated, Service, Anon bool
	}
	fns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fn])
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range fns {
		seen[f.Name] = true
		g, ok := grants[f.Name]
		if !ok {
			t.Errorf("%s has no line in sql/grants.txt (who may execute it: authenticated, service_role, or -)", f.Name)
			continue
		}
		require.False(t, f.Anon, "%s is executable by anon", f.Name)
		var got []string
		if f.Authenticated {
			got = append(got, "authenticated")
		}
		if f.Service {
			got = append(got, "service_role")
		}
		want := slices.Clone(g.Roles)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: executable by [%s], sql/grants.txt says [%s]", f.Name, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	for name := range grants {
		if !seen[name] {
			t.Errorf("sql/grants.txt lists %s, which does not exist", name)
		}
	}
}

// `supabase db push` runs each migration statement by statement (the
// statements it records) in one transaction per file; applying migrations/
// that way gives the same schema as `orchable migrate`.
func TestDBPushReproducesSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	runner := emptyDB(ctx, t)
	_, err := migrations.Migrate(ctx, runner, &migrations.Config{Local: true})
	require.NoError(t, err)

	push := emptyDB(ctx, t)
	_, err = push.Exec(ctx, migrations.ShimSQL())
	require.NoError(t, err)
	all, err := migrations.All()
	require.NoError(t, err)
	for _, m := range all {
		tx, err := push.Begin(ctx)
		require.NoError(t, err)
		for _, stmt := range migrations.SplitStatements(m.SQL) {
			_, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
			require.NoError(t, err, "%s: %.80s", m.File, stmt)
		}
		require.NoError(t, tx.Commit(ctx))
	}
	var a, b string
	// The schema fingerprint plus every function's body and privileges.
	q := "select (" + schemaFingerprint + `) || (select md5(string_agg(x, ',' order by x)) from (
		select p.oid::regprocedure::text || md5(p.prosrc) || coalesce(array_to_string(p.proacl, ','), '') as x
		from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('public', 'orchable')) f)`
	require.NoError(t, runner.QueryRow(ctx, q).Scan(&a))
	require.NoError(t, push.QueryRow(ctx, q).Scan(&b))
	require.Equal(t, a, b, "statement-by-statement application (supabase db push) and orchable migrate differ")
}
