package migrations_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
)

// The runner follows the Supabase CLI's rules for the history table, with
// the CLI's wording, so `orchable migrate` and `supabase db push` agree.
func TestHistoryRulesFollowTheCLI(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mig := func(v, sql string) migrations.Migration {
		return migrations.Migration{Version: v, Name: "m", File: v + "_m.sql", SQL: sql}
	}
	first := mig("20990101000000", "create table t_first (id int);")
	second := mig("20990101000002", "create table t_second (id int);")
	early := mig("20990101000001", "create table t_early (id int);")

	t.Run("RecordedVersionMissingLocally", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		_, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{first, second})
		require.NoError(t, err)
		_, err = migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{first})
		require.ErrorIs(t, err, migrations.ErrMissingLocal)
		require.Contains(t, err.Error(), "Remote migration versions not found in local migrations directory.")
		require.Contains(t, err.Error(), "supabase migration repair --status reverted 20990101000002")
	})

	t.Run("LocalOlderThanNewestApplied", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		_, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{first, second})
		require.NoError(t, err)
		_, err = migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{first, early, second})
		require.ErrorIs(t, err, migrations.ErrMissingRemote)
		require.Contains(t, err.Error(), "Found local migration files to be inserted before the last migration on remote database.")
		require.Contains(t, err.Error(), early.File)
		var exists bool
		require.NoError(t, pool.QueryRow(ctx, "select to_regclass('public.t_early') is not null").Scan(&exists))
		require.False(t, exists, "a refused run applied something")

		res, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{IncludeAll: true}, []migrations.Migration{first, early, second})
		require.NoError(t, err)
		require.Equal(t, []string{early.Version}, res.Applied)
	})

	t.Run("ChangedAppliedFileWarns", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		_, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{first})
		require.NoError(t, err)
		var logs bytes.Buffer
		changed := first
		changed.SQL = "create table t_first (id int, extra text);"
		res, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, []migrations.Migration{changed})
		require.NoError(t, err)
		require.Equal(t, []string{first.Version}, res.Skipped)
		require.Contains(t, logs.String(), "differs from the embedded file")
		require.Contains(t, logs.String(), first.Version)
	})

	t.Run("SessionResetBetweenFiles", func(t *testing.T) {
		t.Parallel()
		pool := emptyDB(ctx, t)
		leak := mig("20990101000000", "select set_config('search_path', 'pg_catalog', false), set_config('orchable.probe', 'leaked', false);")
		check := mig("20990101000001", `do $$ begin
  if coalesce(current_setting('orchable.probe', true), '') <> '' then raise exception 'session setting leaked from the previous file'; end if;
  if current_setting('search_path') = 'pg_catalog' then raise exception 'search_path leaked from the previous file'; end if;
end $$;`)
		_, err := migrations.ApplyForTest(ctx, pool, &migrations.Config{}, []migrations.Migration{leak, check})
		require.NoError(t, err)
	})
}

// The placeholders of the original project's history make an original
// database's recorded versions known, so neither runner refuses it.
func TestOriginalHistoryIsKnown(t *testing.T) {
	t.Parallel()
	all, err := migrations.All()
	require.NoError(t, err)
	have := map[string]bool{}
	for _, m := range all {
		have[m.Version] = true
	}
	for _, v := range []string{
		"20260226084351", "20260226090000", "20260226095433", "20260226101217", "20260228062227",
		"20260301070000", "20260301083000", "20260301090000", "20260301091500", "20260301", "20260308170000",
	} {
		require.True(t, have[v], "original version %s has no local file", v)
	}
}
