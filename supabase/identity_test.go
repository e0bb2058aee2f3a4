package supabase_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

// TestUserIdentities: with a JWT secret the identity carries a minted token
// whose claims name the user; without one it carries the same claims and no
// token (the direct transport's case).
func TestUserIdentities(t *testing.T) {
	t.Parallel()
	user := uuid.New()
	for _, tt := range []struct {
		name        string
		givenSecret string
		expectToken bool
	}{
		{name: "Minted", givenSecret: "0123456789abcdef0123456789abcdef", expectToken: true},
		{name: "ClaimsOnly"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := &rls.Config{SupabaseURL: "http://127.0.0.1:54321", JWTSecret: rls.Secret(tt.givenSecret)}
			ids, err := supabase.NewUserIdentities(nil, cfg)
			require.NoError(t, err)
			id, err := ids.Identity(t.Context(), user)
			require.NoError(t, err)
			require.Equal(t, tt.expectToken, id.Token != "")
			var claims struct {
				Sub  string `json:"sub"`
				Role string `json:"role"`
				Iss  string `json:"iss"`
			}
			require.NoError(t, json.Unmarshal(id.Claims, &claims))
			require.Equal(t, user.String(), claims.Sub)
			require.Equal(t, "authenticated", claims.Role)
			require.Equal(t, "http://127.0.0.1:54321/auth/v1", claims.Iss)
		})
	}
}
