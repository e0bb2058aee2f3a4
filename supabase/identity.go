package supabase

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/rls"
)

// UserIdentities is how the service acts as a user (pipeline.IdentitySource
// and model.IdentitySource): with a short-lived token minted by rls.Minter
// when a signing key (JWT_SIGNING_KEY) or the legacy JWT secret is
// configured, and by claims alone otherwise. Claims alone are enough only for
// the direct transport, which never forwards a token; PostgREST would treat
// such a call as anonymous.
//
// main builds one and passes it to every part that acts as a user.
type UserIdentities struct {
	baseservice.BaseService

	minter *rls.Minter // nil: claims alone
	issuer string
}

// NewUserIdentities returns the identity source cfg allows: minted tokens
// when cfg has a signing key or JWT secret, claims alone otherwise.
// archetype gives the minter and the claims' expiry their clock.
func NewUserIdentities(archetype *baseservice.Archetype, cfg *rls.Config) (*UserIdentities, error) {
	u := baseservice.Init(archetype, &UserIdentities{issuer: cfg.Issuer()})
	if cfg.SigningKey.IsSet() || cfg.JWTSecret.IsSet() {
		m, err := rls.NewMinter(archetype, cfg)
		if err != nil {
			return nil, err
		}
		u.minter = m
	}
	return u, nil
}

// Identity returns the identity that acts as user.
func (u *UserIdentities) Identity(_ context.Context, user uuid.UUID) (Identity, error) {
	if u.minter != nil {
		tok, err := u.minter.Mint(user)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Token: tok.JWT, Claims: tok.ClaimsJSON}, nil
	}
	b, err := json.Marshal(map[string]any{
		"sub": user.String(), "role": "authenticated", "aud": "authenticated", "aal": "aal1",
		"iss": u.issuer, "is_anonymous": false, "exp": u.Time.Now().Add(10 * time.Minute).Unix(),
	})
	return Identity{Claims: b}, err
}
