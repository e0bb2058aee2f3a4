package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orchable/orchable/config"
	"github.com/orchable/orchable/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		given       map[string]string
		expectErr   []string // substrings, each naming a variable
		expectCheck func(t *testing.T, c *config.Config)
	}{
		{
			name:  "LocalDirectDefaults",
			given: map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, config.TransportDirect, c.Supabase.Transport)
				require.Equal(t, model.ProviderGemini, c.Model.Provider, "a local database does not imply the offline model")
				require.Equal(t, model.DefaultModel, c.Model.DefaultModel)
				require.Equal(t, model.DefaultModel, c.Pipeline.Runner.DefaultModel, "one default model for the client and the runner")
				require.Equal(t, ":8080", c.HTTP.Addr)
				require.Equal(t, 50, c.Pipeline.Dispatcher.Concurrency)
				require.Equal(t, 5*time.Minute, c.Pipeline.Runner.LeaseDuration)
				require.Equal(t, 2, c.Pipeline.Runner.MaxRegenerations)
				require.Equal(t, 4, c.Pipeline.Runner.DBCalls)
				require.Equal(t, 50, c.Pipeline.Dispatcher.ClaimAhead, "as many as WORKER_CONCURRENCY")
			},
		},
		{
			name:  "ClaimAheadFollowsConcurrency",
			given: map[string]string{"DATABASE_URL": "postgres://h/x", "WORKER_CONCURRENCY": "200"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, 200, c.Pipeline.Dispatcher.ClaimAhead)
			},
		},
		{
			name:  "ClaimAheadNone",
			given: map[string]string{"DATABASE_URL": "postgres://h/x", "CLAIM_AHEAD": "0"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, -1, c.Pipeline.Dispatcher.ClaimAhead, "none: the dispatcher's negative")
			},
		},
		{
			name:      "ClaimAheadNegative",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "CLAIM_AHEAD": "-5"},
			expectErr: []string{"CLAIM_AHEAD", "between 0 (none) and 100000"},
		},
		{
			name:  "EngineDBCallsUnbounded",
			given: map[string]string{"DATABASE_URL": "postgres://h/x", "ENGINE_DB_CALLS": "-1"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, -1, c.Pipeline.Runner.DBCalls)
			},
		},
		{
			name:      "EngineDBCallsZero",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "ENGINE_DB_CALLS": "0"},
			expectErr: []string{"ENGINE_DB_CALLS", "-1 for no bound"},
		},
		{
			name:  "CompletionLingerDefault",
			given: map[string]string{"DATABASE_URL": "postgres://h/x"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, 50*time.Millisecond, c.Pipeline.Runner.CompletionLinger)
			},
		},
		{
			name:  "CompletionLingerNone",
			given: map[string]string{"DATABASE_URL": "postgres://h/x", "ENGINE_COMPLETION_LINGER": "0"},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, time.Duration(-1), c.Pipeline.Runner.CompletionLinger, "none: the runner's negative")
			},
		},
		{
			name:      "CompletionLingerTooLong",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "ENGINE_COMPLETION_LINGER": "2s"},
			expectErr: []string{"ENGINE_COMPLETION_LINGER", "between 0 (none) and 1s"},
		},
		{
			name: "PostgRESTComplete",
			given: map[string]string{
				"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_ANON_KEY": "sb_publishable_x",
				"SUPABASE_SECRET_KEY": "sb_secret_y", "SUPABASE_JWT_SECRET": "0123456789abcdef0123456789abcdef",
				"WEBHOOK_SECRET": "a-long-enough-secret", "PORT": "9000", "GEMINI_RATE_LIMITS": "gemini-2.5-flash=rpm:10,tpm:250000",
				"GEMINI_OPERATOR_KEYS": "main@proj-a=AIzaKEY", "MAX_REGENERATIONS": "0",
			},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, config.TransportPostgREST, c.Supabase.Transport)
				require.Equal(t, model.ProviderGemini, c.Model.Provider)
				require.Equal(t, ":9000", c.HTTP.Addr)
				require.Equal(t, model.Limit{RPM: 10, TPM: 250000}, c.Model.Pool.Limits["gemini-2.5-flash"])
				require.Len(t, c.Model.Pool.OperatorKeys, 1)
				require.Equal(t, "proj-a", c.Model.Pool.OperatorKeys[0].Project)
				require.Equal(t, -1, c.Pipeline.Runner.MaxRegenerations, "an explicit 0 means no regeneration")
			},
		},
		{
			name:      "PostgRESTMissingEverything",
			given:     map[string]string{"ORCHABLE_TRANSPORT": "postgrest"},
			expectErr: []string{"SUPABASE_URL", "SUPABASE_ANON_KEY", "JWT_SIGNING_KEY", "SUPABASE_SECRET_KEY"},
		},
		{
			name:      "BadValues",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "WORKER_CONCURRENCY": "many", "LEASE_DURATION": "soon", "LOG_LEVEL": "loud", "SWEEP_INTERVAL": "1ms"},
			expectErr: []string{"WORKER_CONCURRENCY", "LEASE_DURATION", "LOG_LEVEL", "SWEEP_INTERVAL"},
		},
		{
			name:  "ModelPrices",
			given: map[string]string{"DATABASE_URL": "postgres://h/x", "MODEL_PRICES": `{"my-model":{"input":2,"cached_input":0.2,"output":8}}`},
			expectCheck: func(t *testing.T, c *config.Config) {
				t.Helper()
				require.Equal(t, model.Price{Input: 2, CachedInput: 0.2, Output: 8, Thinking: 8}, c.Pipeline.Runner.Prices["my-model"])
				require.Equal(t, model.DefaultPrices()["gemini-3.5-flash"], c.Pipeline.Runner.Prices["gemini-3.5-flash"], "defaults stay")
			},
		},
		{
			name:      "BadModelPrices",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "MODEL_PRICES": `{"my-model":{"input":-2}}`},
			expectErr: []string{"MODEL_PRICES", "non-negative"},
		},
		{
			name:      "UnknownTransport",
			given:     map[string]string{"ORCHABLE_TRANSPORT": "carrier-pigeon"},
			expectErr: []string{"ORCHABLE_TRANSPORT"},
		},
		{
			name:      "BadKEKAndKeysNeverEchoed",
			given:     map[string]string{"DATABASE_URL": "postgres://h/x", "ORCHABLE_KEKS": "k1:notbase64", "GEMINI_OPERATOR_KEYS": "AIzaSECRETWITHOUTNAME"},
			expectErr: []string{"ORCHABLE_KEKS", "GEMINI_OPERATOR_KEYS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(env(tt.given))
			if len(tt.expectErr) > 0 {
				require.Error(t, err)
				for _, want := range tt.expectErr {
					require.Contains(t, err.Error(), want)
				}
				require.NotContains(t, err.Error(), "AIzaSECRET", "errors never echo a key")
				return
			}
			require.NoError(t, err)
			tt.expectCheck(t, c)
			// Secrets never print.
			require.NotContains(t, c.Auth.JWTSecret.String(), "0123")
		})
	}
}
