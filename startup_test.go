package main

import (
	"bytes"
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// startupEnv is a complete local configuration for serve (direct transport,
// HS256, no JWKS) that each case of TestServeStartupErrors breaks in one
// place.
func startupEnv(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":        dbtest.URL(t),
		"SUPABASE_URL":        "http://127.0.0.1:54321",
		"SUPABASE_JWT_SECRET": "0123456789abcdef0123456789abcdef",
		"JWKS_DISABLED":       "true",
		"WEBHOOK_SECRET":      "a-long-enough-webhook-secret",
		"ORCHABLE_ADDR":       "127.0.0.1:0",
		"LOG_LEVEL":           "error",
	}
}

// TestServeStartupErrors feeds each start-up error path to serve and
// expects an error that names the environment variable (never a Go field),
// and no panic; the real process exits with status 1 and the message on
// stderr.
func TestServeStartupErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })

	tests := []struct {
		name        string
		givenEnv    map[string]string // merged over startupEnv; "" deletes
		givenEmpty  bool              // start from an empty environment
		expectInErr []string
	}{
		{name: "NothingSet", givenEmpty: true, expectInErr: []string{"invalid configuration", "SUPABASE_URL", "SUPABASE_ANON_KEY", "JWT_SIGNING_KEY", "SUPABASE_SECRET_KEY"}},
		{name: "BadLogLevel", givenEnv: map[string]string{"LOG_LEVEL": "loud"}, expectInErr: []string{"LOG_LEVEL"}},
		{name: "ShortWebhookSecret", givenEnv: map[string]string{"WEBHOOK_SECRET": "short"}, expectInErr: []string{"WEBHOOK_SECRET must be at least"}},
		{name: "UnknownModelProvider", givenEnv: map[string]string{"ORCHABLE_MODEL_PROVIDER": "bogus"}, expectInErr: []string{"ORCHABLE_MODEL_PROVIDER", `"bogus"`}},
		{name: "BadGeminiBaseURL", givenEnv: map[string]string{"GEMINI_BASE_URL": "ftp://example.com"}, expectInErr: []string{"GEMINI_BASE_URL"}},
		{name: "BadSigningKey", givenEnv: map[string]string{"JWT_SIGNING_KEY": "not a key"}, expectInErr: []string{"JWT_SIGNING_KEY"}},
		{name: "BadKEKs", givenEnv: map[string]string{"ORCHABLE_KEKS": "k1:short"}, expectInErr: []string{"ORCHABLE_KEKS"}},
		{name: "BadDatabaseURL", givenEnv: map[string]string{"DATABASE_URL": "postgres://%zz"}, expectInErr: []string{"DATABASE_URL"}},
		{name: "BadWebhookMode", givenEnv: map[string]string{"WEBHOOK_MODE": "maybe"}, expectInErr: []string{"WEBHOOK_MODE"}},
		{name: "JWKSDisabledWithoutSecret", givenEnv: map[string]string{"SUPABASE_JWT_SECRET": ""}, expectInErr: []string{"SUPABASE_JWT_SECRET"}},
		{name: "AddressInUse", givenEnv: map[string]string{"ORCHABLE_ADDR": busy.Addr().String()}, expectInErr: []string{"ORCHABLE_ADDR/PORT", "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := startupEnv(t)
			if tt.givenEmpty {
				env = map[string]string{}
			}
			maps.Copy(env, tt.givenEnv)
			var out bytes.Buffer
			err := run(t.Context(), []string{"serve"}, func(k string) string { return env[k] }, &out)
			require.Error(t, err)
			for _, want := range tt.expectInErr {
				require.Contains(t, err.Error(), want)
			}
			require.NotContains(t, err.Error(), "rls.Config")
			require.NotContains(t, err.Error(), "model.Config")
		})
	}

	// The real process, on the path that used to panic in newApp's
	// deferred close: status 1, the message, no stack trace.
	env := startupEnv(t)
	env["WEBHOOK_SECRET"] = "short"
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMainProcess$")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ORCHABLE_TEST_MAIN_ARGS=serve"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	require.Equal(t, 1, exitErr.ExitCode(), stderr.String())
	require.Contains(t, stderr.String(), "orchable: WEBHOOK_SECRET must be at least")
	require.NotContains(t, stderr.String()+stdout.String(), "panic")
	require.NotContains(t, stderr.String()+stdout.String(), "goroutine")
}

// TestServeModelDefaults: a local DATABASE_URL does not select the offline
// model for serve; with no Gemini key configured serve starts and says so
// loudly; the offline model, when asked for, is announced too.
func TestServeModelDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		given      map[string]string
		expectLogs string
	}{
		{name: "NoKeys", expectLogs: `no GEMINI_API_KEY or GEMINI_OPERATOR_KEYS`},
		{name: "OfflineAsked", given: map[string]string{"ORCHABLE_MODEL_PROVIDER": "offline"}, expectLogs: `ORCHABLE_MODEL_PROVIDER=offline: no model is called`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := startupEnv(t)
			env["LOG_LEVEL"] = "warn"
			maps.Copy(env, tt.given)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var out bytes.Buffer
			var model string
			err := serve(ctx, func(k string) string { return env[k] }, &out, func(a *app) {
				model = a.cfg.Model.Provider
				cancel()
			})
			require.NoError(t, err)
			require.Contains(t, out.String(), tt.expectLogs)
			if tt.given == nil {
				require.Equal(t, "gemini", model, "a local database does not imply the offline model")
				require.Contains(t, out.String(), `"default_model":"gemini-3.5-flash"`, out.String())
			}
		})
	}
}

// TestMigrateRefusesTransactionPooler: migrate refuses a transaction-mode
// pooler before connecting, naming the URLs to use instead; the same
// database without the pooler flag migrates (nothing left to apply).
func TestMigrateRefusesTransactionPooler(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, given := range []string{
		"postgresql://postgres.abcdefghijklmnop:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
		"postgresql://postgres:pw@db.abcdefghijklmnop.supabase.co:6543/postgres",
		withParam(t, dbtest.URL(t), "pgbouncer", "true"),
	} {
		var out bytes.Buffer
		err := run(ctx, []string{"migrate"}, func(k string) string { return map[string]string{"DATABASE_URL": given}[k] }, &out)
		var perr *supabase.TransactionPoolerError
		require.ErrorAs(t, err, &perr, given)
		require.Contains(t, err.Error(), "transaction-mode pooler")
		require.Contains(t, err.Error(), "direct connection")
		require.Contains(t, err.Error(), "session pooler")
		require.Empty(t, out.String())
	}
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"migrate"}, func(k string) string { return map[string]string{"DATABASE_URL": dbtest.URL(t)}[k] }, &out))
	require.Contains(t, out.String(), "0 applied")
}

// withParam returns rawURL with the query parameter k=v.
func withParam(t *testing.T, rawURL, k, v string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}
