package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestRunUsage(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	env := func(string) string { return "" }
	require.ErrorContains(t, run(t.Context(), nil, env, &out), "usage")
	require.ErrorContains(t, run(t.Context(), []string{"frobnicate"}, env, &out), `unknown command "frobnicate"`)
	require.ErrorContains(t, run(t.Context(), []string{"import"}, env, &out), "usage: orchable import")
	require.ErrorContains(t, run(t.Context(), []string{"import", "dir"}, env, &out), "--owner must be")
	require.ErrorContains(t, run(t.Context(), []string{"serve"}, env, &out), "invalid configuration")
	require.NoError(t, run(t.Context(), []string{"help"}, env, &out))
	require.Contains(t, out.String(), "commands:")
}

// The README's run command on the embedded default: migrate (already
// migrated database: a no-op), import the sample pipeline, launch a batch,
// serve, show it completing, print the summary, exit (--once).
func TestDevOnce(t *testing.T) {
	t.Parallel()
	url := dbtest.URL(t)
	env := map[string]string{"DATABASE_URL": url, "PORT": "0"}
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := run(ctx, []string{"dev", "--once", "--rows", "2"}, func(k string) string { return env[k] }, &out)
	require.NoError(t, err, out.String())
	s := out.String()
	require.Contains(t, s, "mapper (1:1) → designer (1:N) → validator (N:1)")
	require.Contains(t, s, "summary   batch")
	require.Contains(t, s, "batch status completed")
	require.Regexp(t, `step 3  validator  completed    1 tasks`, s)
	require.False(t, strings.Contains(s, "failed    "), s)

	// migrate is idempotent on the same database.
	out.Reset()
	require.NoError(t, run(ctx, []string{"migrate", "--local"}, func(k string) string { return env[k] }, &out))
	require.Contains(t, out.String(), "0 applied")
}
