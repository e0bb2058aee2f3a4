package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
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
	require.NotContains(t, s, "failed    ", s)

	// migrate is idempotent on the same database.
	out.Reset()
	require.NoError(t, run(ctx, []string{"migrate", "--local"}, func(k string) string { return env[k] }, &out))
	require.Contains(t, out.String(), "0 applied")
}

// TestKeysEncryptRefuses: without the acknowledgement flag the command
// explains what encrypting does to the original front end and exits with
// status 1 before it reads the configuration or touches the database (the
// database URL here points at nothing, and the error is still the refusal).
func TestKeysEncryptRefuses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	env := map[string]string{
		"DATABASE_URL":  "postgres://nobody@127.0.0.1:1/nothing?connect_timeout=1",
		"ORCHABLE_KEKS": "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
	}
	getenv := func(k string) string { return env[k] }

	var out bytes.Buffer
	err := run(ctx, []string{"keys", "encrypt"}, getenv, &out)
	require.Error(t, err)
	for _, want := range []string{"refusing to run without --break-original-frontend", "original orchable front end", "send the ciphertext to the model vendor", `"Key encryption"`} {
		require.Contains(t, err.Error(), want)
	}
	require.ErrorContains(t, run(ctx, []string{"keys", "encrypt", "--break-original-frontend=false"}, getenv, &out), "refusing")
	require.ErrorContains(t, run(ctx, []string{"keys", "encrypt", "--yes"}, getenv, &out), "usage: orchable keys encrypt --break-original-frontend")
	require.ErrorContains(t, run(ctx, []string{"keys"}, getenv, &out), "usage: orchable keys encrypt --break-original-frontend")
	require.Empty(t, out.String())
	// With the flag the same configuration gets as far as the database.
	require.ErrorContains(t, run(ctx, []string{"keys", "encrypt", "--break-original-frontend"}, getenv, &out), "127.0.0.1")

	// The real process: exit status 1 and the explanation on stderr.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMainProcess$")
	cmd.Env = append(os.Environ(), "ORCHABLE_TEST_MAIN_ARGS=keys encrypt", "DATABASE_URL="+env["DATABASE_URL"], "ORCHABLE_KEKS="+env["ORCHABLE_KEKS"])
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "stdout: %s\nstderr: %s", out.String(), stderr.String())
	require.Equal(t, 1, exitErr.ExitCode())
	require.Contains(t, stderr.String(), "orchable: keys encrypt: refusing to run without --break-original-frontend")
	require.Contains(t, stderr.String(), "original orchable front end")
}

// TestMainProcess runs main() with the arguments of ORCHABLE_TEST_MAIN_ARGS
// when TestKeysEncryptRefuses starts this test binary as a child process.
// It is not parallel: it sets os.Args, in the child only.
func TestMainProcess(t *testing.T) { //nolint:paralleltest // see above
	args := os.Getenv("ORCHABLE_TEST_MAIN_ARGS")
	if args == "" {
		t.Skip("only runs as a child process")
	}
	os.Args = append([]string{"orchable"}, strings.Fields(args)...)
	main()
}

// TestKeysEncrypt: with the acknowledgement the command encrypts plaintext
// rows as enc:v2 bound to each row and owner, and a second run changes
// nothing.
func TestKeysEncrypt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, db)
	var id uuid.UUID
	require.NoError(t, db.QueryRow(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'encrypted', 'AIza-to-encrypt') returning id`, user).Scan(&id))
	kek := bytes.Repeat([]byte{2}, 32)
	env := map[string]string{"DATABASE_URL": dbtest.URL(t), "ORCHABLE_KEKS": "main-test:" + base64.StdEncoding.EncodeToString(kek)}
	getenv := func(k string) string { return env[k] }

	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"keys", "encrypt", "--break-original-frontend"}, getenv, &out))
	// Other tests of the package store keys under their own KEKs: those
	// rows are listed as unreadable and left alone; this one is not.
	require.Regexp(t, `user_api_keys: \d+ scanned, [1-9]\d* encrypted, \d+ re-encrypted with the active KEK main-test, \d+ unreadable`, out.String())
	require.NotContains(t, out.String(), id.String())
	var stored string
	require.NoError(t, db.QueryRow(ctx, `select api_key_encrypted from public.user_api_keys where id = $1`, id).Scan(&stored))
	require.True(t, strings.HasPrefix(stored, "enc:v2:main-test:"), stored)
	c, err := model.NewCipher([]model.KEK{{ID: "main-test", Key: kek}})
	require.NoError(t, err)
	plain, err := c.Decrypt(stored, model.KeyRow{ID: id, UserID: user})
	require.NoError(t, err)
	require.Equal(t, "AIza-to-encrypt", plain)

	out.Reset()
	require.NoError(t, run(ctx, []string{"keys", "encrypt", "--break-original-frontend"}, getenv, &out))
	require.Contains(t, out.String(), " 0 encrypted, 0 re-encrypted")
	var again string
	require.NoError(t, db.QueryRow(ctx, `select api_key_encrypted from public.user_api_keys where id = $1`, id).Scan(&again))
	require.Equal(t, stored, again)
}
