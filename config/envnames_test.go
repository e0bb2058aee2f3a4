package config_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/config"
)

func TestEnvNames(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("cause")
	tests := []struct {
		name   string
		given  error
		expect string
	}{
		{"SigningKeyIDBeforeSigningKey", errors.New("rls.Config.SigningKeyID is required with a PEM signing key"), "JWT_SIGNING_KEY_ID is required with a PEM signing key"},
		{"SigningKey", fmt.Errorf("rls.Config.SigningKey: %w", sentinel), "JWT_SIGNING_KEY: cause"},
		{"WebhookSecretNotSigningSecret", errors.New("rls.Config.WebhookSigningSecret: bad; rls.Config.WebhookSecret must be at least 16 characters"), "WEBHOOK_SIGNING_SECRET: bad; WEBHOOK_SECRET must be at least 16 characters"},
		{"Model", errors.New(`model.Config.Pool.OperatorKeys[1]: name and key are required`), "GEMINI_OPERATOR_KEYS[1]: name and key are required"},
		{"Untouched", errors.New("DATABASE_URL: bad"), "DATABASE_URL: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := config.EnvNames(tt.given)
			require.EqualError(t, got, tt.expect)
			require.ErrorIs(t, got, tt.given, "the chain is kept")
		})
	}
	require.NoError(t, config.EnvNames(nil))
	require.ErrorIs(t, config.EnvNames(fmt.Errorf("rls.Config.SigningKey: %w", sentinel)), sentinel)
}
