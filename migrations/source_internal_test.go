package migrations

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// returnType reads the RETURNS clause up to the next clause, whatever its
// shape, so that sqlgen can tell a changed return type.
func TestReturnType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ after, want string }{
		{" returns jsonb\n  language plpgsql volatile\nas $$ select 1 $$", "jsonb"},
		{"\nRETURNS SETOF public.ai_tasks LANGUAGE sql AS 'select 1'", "setof public.ai_tasks"},
		{" returns table (id uuid, rows integer, set_at timestamptz)\n  language sql stable as $$ $$", "table (id uuid, rows integer, set_at timestamptz)"},
		{" returns timestamp   with time zone\n  immutable language sql as $$ $$", "timestamp with time zone"},
		{" returns setof_thing security definer as $$ $$", "setof_thing"},
		{" returns trigger as $$ begin return new; end $$", "trigger"},
		{" language sql as $$ $$", ""},
		{" returns text[]\n  -- PL/pgSQL, so its (plan) is kept: returns int\n  language plpgsql stable\nas $$ $$", "text[]"},
		{" returns text -- a note\n  -- and another\n  stable language sql as $$ $$", "text"},
	} {
		require.Equal(t, tc.want, returnType(tc.after), "%q", tc.after)
	}

	// Every function of the SQL API has one.
	sources, err := LoadSources(os.DirFS("../sql/functions"))
	require.NoError(t, err)
	require.NotEmpty(t, sources)
	for k, s := range sources {
		require.NotEmpty(t, s.Returns, "%s: no return type read", k)
		require.NotContains(t, s.Returns, "language", k)
	}
	require.Equal(t, "jsonb", sources["public.complete_tasks(text,json)"].Returns)
}
