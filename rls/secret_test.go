package rls

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSecretIsRedacted(t *testing.T) {
	t.Parallel()
	const value = "sb_secret_do-not-print-me"
	s := Secret(value)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	logger.Info("config", slog.Any("key", s), slog.Any("cfg", Config{ServiceKey: s}))
	raw, err := json.Marshal(map[string]any{"key": s})
	require.NoError(t, err)
	formatted := fmt.Sprintf("%s %v %+v %#v %q", s, s, Config{JWTSecret: s}, s, s)

	for _, out := range []string{logs.String(), string(raw), formatted} {
		require.NotContains(t, out, value)
		require.Contains(t, out, "[redacted]")
	}
	require.Equal(t, value, s.Reveal())
	require.True(t, s.IsSet())
}

func TestServiceCredentials(t *testing.T) {
	t.Parallel()
	creds, err := NewServiceCredentials(&Config{ServiceKey: " sb_secret_abc "})
	require.NoError(t, err)
	require.Equal(t, "sb_secret_abc", creds.APIKey().Reveal())
	require.Equal(t, "Bearer sb_secret_abc", creds.Authorization().Reveal())
	require.NotContains(t, fmt.Sprint(creds), "sb_secret_abc")
	require.NotContains(t, fmt.Sprintf("%+v", *creds), "sb_secret_abc")

	_, err = NewServiceCredentials(&Config{})
	require.ErrorContains(t, err, "ServiceKey is required")
	_, err = NewServiceCredentials(&Config{ServiceKey: "sb_publishable_xyz"})
	require.ErrorContains(t, err, "publishable")
}

func TestServicesDoNotPrintKeys(t *testing.T) {
	t.Parallel()
	m, err := NewMinter(nil, &Config{SupabaseURL: "https://ref.supabase.co", JWTSecret: testJWTSecret})
	require.NoError(t, err)
	v, err := NewVerifier(t.Context(), nil, &Config{SupabaseURL: "https://ref.supabase.co", JWTSecret: testJWTSecret, JWKSDisabled: true})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	w, err := NewWebhookVerifier(nil, &Config{WebhookSecret: testSharedSecret})
	require.NoError(t, err)

	out := fmt.Sprintf("%v %+v %#v %v %+v %#v %v %+v %#v", m, m, m, v, v, v, w, w, w)

	require.NotContains(t, out, testJWTSecret)
	require.NotContains(t, out, string([]byte(testJWTSecret))[1:20])
	require.Contains(t, out, "rls.Minter{")
}
