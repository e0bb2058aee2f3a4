package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A change to a source file becomes the next migration, with the function's
// grants; a signature change drops the old one; -check agrees afterwards.
func TestGenerateFromSources(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mig := filepath.Join(root, "migrations")
	require.NoError(t, os.MkdirAll(mig, 0o755))
	write := func(path, text string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	}
	write(filepath.Join(mig, "20200101000000_base.sql"), `-- base
create or replace function public.f(p_a integer) returns int
  language sql as $$ select p_a $$;

create or replace function orchable.g() returns trigger
  language plpgsql as $$ begin return new; end $$;
`)
	write(filepath.Join(root, "sql", "grants.txt"), "public.f authenticated service_role\norchable.g -\n")

	require.NoError(t, run([]string{"-root", root, "-bootstrap"}))
	require.NoError(t, run([]string{"-root", root, "-check"}))
	require.NoError(t, run([]string{"-root", root}), "nothing to write")
	entries, _ := os.ReadDir(mig)
	require.Len(t, entries, 1)

	// A new body and a new argument.
	write(filepath.Join(root, "sql", "functions", "public.f.sql"), `-- f doubles now.
create or replace function public.f(p_a integer, p_b integer default 2) returns int
  language sql as $$ select p_a * p_b $$;
`)
	require.Error(t, run([]string{"-root", root, "-check"}))
	require.NoError(t, run([]string{"-root", root, "-name", "double_f"}))
	entries, _ = os.ReadDir(mig)
	require.Len(t, entries, 2)
	require.True(t, strings.HasSuffix(entries[1].Name(), "_double_f.sql"))
	gen, err := os.ReadFile(filepath.Join(mig, entries[1].Name()))
	require.NoError(t, err)
	text := string(gen)
	require.Contains(t, text, "drop function if exists public.f(integer);")
	require.Contains(t, text, "select p_a * p_b")
	require.Contains(t, text, "revoke execute on function public.f(integer,integer) from public, anon, authenticated, service_role;")
	require.Contains(t, text, "grant execute on function public.f(integer,integer) to authenticated, service_role;")
	require.NotContains(t, text, "orchable.g", "an unchanged function is not repeated")
	require.NoError(t, run([]string{"-root", root, "-check"}))

	// A new return type alone: create or replace cannot change it, so the
	// function is dropped first.
	write(filepath.Join(root, "sql", "functions", "public.f.sql"), `-- f widens.
create or replace function public.f(p_a integer, p_b integer default 2) returns bigint
  language sql as $$ select p_a::bigint * p_b $$;
`)
	require.NoError(t, run([]string{"-root", root, "-name", "widen_f"}))
	entries, _ = os.ReadDir(mig)
	require.Len(t, entries, 3)
	gen, err = os.ReadFile(filepath.Join(mig, entries[2].Name()))
	require.NoError(t, err)
	text = string(gen)
	drop := strings.Index(text, "drop function if exists public.f(integer,integer);")
	create := strings.Index(text, "create or replace function public.f(")
	require.True(t, drop >= 0 && drop < create, "dropped before it is created again:\n%s", text)
	require.Contains(t, text, "grant execute on function public.f(integer,integer) to authenticated, service_role;")
	require.NoError(t, run([]string{"-root", root, "-check"}))

	// A body change alone is not dropped (its grants and dependants stay).
	write(filepath.Join(root, "sql", "functions", "orchable.g.sql"), `create or replace function orchable.g() returns trigger
  language plpgsql as $$ begin return old; end $$;
`)
	require.NoError(t, run([]string{"-root", root, "-name", "g_old"}))
	entries, _ = os.ReadDir(mig)
	gen, err = os.ReadFile(filepath.Join(mig, entries[3].Name()))
	require.NoError(t, err)
	require.NotContains(t, string(gen), "drop function")

	// A function without a grants line is refused.
	write(filepath.Join(root, "sql", "functions", "public.h.sql"), "create or replace function public.h() returns int language sql as $$ select 1 $$;\n")
	err = run([]string{"-root", root})
	require.ErrorContains(t, err, "public.h has no line in sql/grants.txt")
}
