package rls

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Claims are the claims of a Supabase user token, defined once for the whole service: the
// Verifier fills them from a user's JWT, and the Minter issues them for webhook-originated work.
// Field names follow https://supabase.com/docs/guides/auth/jwt-fields.
type Claims struct {
	// RegisteredClaims holds iss, sub, aud, exp, nbf, iat and jti.
	jwt.RegisteredClaims

	// Role is the Postgres role PostgREST switches to: "authenticated" for users.
	Role string `json:"role"`
	// AAL is the authenticator assurance level, "aal1" or "aal2".
	AAL string `json:"aal,omitempty"`
	// SessionID is the Supabase Auth session the token belongs to.
	SessionID string `json:"session_id,omitempty"`
	// IsAnonymous is true for anonymous sign-ins (which still have role "authenticated").
	IsAnonymous bool `json:"is_anonymous"`
	// Email is the user's email address, if any.
	Email string `json:"email,omitempty"`
	// Phone is the user's phone number, if any.
	Phone string `json:"phone,omitempty"`
	// AppMetadata is set by the service (provider, providers, custom claims); users cannot change it.
	AppMetadata map[string]any `json:"app_metadata,omitempty"`
	// UserMetadata is set by the user; never base an authorization decision on it.
	UserMetadata map[string]any `json:"user_metadata,omitempty"`

	// UserID is Subject parsed as a UUID. It is set by the Verifier and the Minter and is not
	// part of the JSON form.
	UserID uuid.UUID `json:"-"`
}

// MarshalJSON writes a single audience as a string, as Supabase Auth does ("aud":
// "authenticated"), so that auth.jwt() ->> 'aud' sees the same value in a minted token as in one
// issued by Supabase. Several audiences are written as an array.
func (c Claims) MarshalJSON() ([]byte, error) {
	type plain Claims // no MarshalJSON method, so no recursion
	out := struct {
		plain

		Audience any `json:"aud,omitempty"` // shallower than RegisteredClaims.Audience, so it wins
	}{plain: plain(c)}
	switch len(c.Audience) {
	case 0:
	case 1:
		out.Audience = c.Audience[0]
	default:
		out.Audience = []string(c.Audience)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("error encoding claims: %w", err)
	}
	return raw, nil
}

// contextKey is the type of this package's context keys (STYLE rule 9).
type contextKey int

const (
	claimsContextKey contextKey = iota
	tokenContextKey
)

// ContextWithClaims returns a context that carries verified claims and the raw token they came
// from. The Verifier middleware calls it; tests of other packages may call it to fake a signed-in
// user.
func ContextWithClaims(ctx context.Context, claims *Claims, token string) context.Context {
	ctx = context.WithValue(ctx, claimsContextKey, claims)
	return context.WithValue(ctx, tokenContextKey, token)
}

// ClaimsFromContext returns the verified claims that [Verifier.Middleware] stored, and false when
// the request was not authenticated. Treat the result as read-only.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsContextKey).(*Claims)
	return c, ok && c != nil
}

// TokenFromContext returns the verified bearer token, to forward to PostgREST as the user. Never
// log it.
func TokenFromContext(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tokenContextKey).(string)
	return t, ok && t != ""
}
