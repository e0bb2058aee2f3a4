package rls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
)

// mintReuseMargin is how long before its expiry a cached minted token is replaced.
const mintReuseMargin = 30 * time.Second

// maxCachedTokens bounds the Minter's cache; past it, expired entries are dropped, then all.
const maxCachedTokens = 10_000

// UserToken is a token minted for one user, with the claims it carries. Treat it as read-only:
// the Minter hands the same one to every caller until it is replaced.
type UserToken struct {
	// JWT is the signed token, for PostgREST ("Authorization: Bearer <JWT>", with the publishable
	// key in "apikey"). Never log it.
	JWT string
	// Claims are the claims inside JWT.
	Claims Claims
	// ClaimsJSON is Claims as JSON, exactly what the direct-Postgres transport sets as
	// request.jwt.claims (so auth.uid() and auth.jwt() see what PostgREST would show them).
	ClaimsJSON json.RawMessage
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
}

// Minter mints short-lived user tokens for work that a database webhook started: no user is
// present, but writes must still go through RLS as the task's owner. Tokens carry sub = the
// owner, role = aud = "authenticated", iss = SupabaseURL/auth/v1, iat, exp (Config.TokenTTL,
// default 2 minutes, at most 10) and aal1, with the kid header. A token is cached per user and
// reused until 30 s before it expires. Minter is safe for concurrent use.
//
// # Signing key
//
// Prefer an asymmetric key (Config.SigningKey, ES256). Supabase never reveals its own private
// keys, so create one, import it, and make it active (full steps in docs/signing-key.md):
//
//  1. supabase gen signing-key --algorithm ES256   (prints a private JWK with its kid)
//  2. Dashboard → Project Settings → JWT Keys → import it as a standby key, then Rotate to it.
//     Every key that is in the JWKS verifies, so tokens from the previous key keep working.
//  3. Give the service the key (the JWK as printed, or the same key as PEM) in Config.SigningKey
//     and its kid in Config.SigningKeyID (optional for a JWK, which carries its kid).
//
// Without SigningKey, the legacy HS256 JWT secret (Config.JWTSecret) is used. Anyone holding
// either key can act as any user, so keep it in a secret store and never log it.
type Minter struct {
	baseservice.BaseService

	method jwt.SigningMethod
	key    any
	kid    string
	issuer string
	ttl    time.Duration

	mu    sync.Mutex
	cache map[uuid.UUID]*UserToken
}

// NewMinter builds a Minter from Config.SigningKey (ES256), or from Config.JWTSecret (HS256) when
// no signing key is configured. It fails, naming the field, if neither is usable.
func NewMinter(archetype *baseservice.Archetype, cfg *Config) (*Minter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := baseservice.Init(archetype, &Minter{
		issuer: cfg.Issuer(),
		ttl:    cfg.TokenTTL,
		kid:    cfg.SigningKeyID,
		cache:  make(map[uuid.UUID]*UserToken),
	})
	switch {
	case cfg.SigningKey.IsSet():
		key, jwkKID, err := parseSigningKey(cfg.SigningKey.Reveal())
		if err != nil {
			return nil, fmt.Errorf("rls.Config.SigningKey: %w", err)
		}
		if m.kid != "" && jwkKID != "" && m.kid != jwkKID {
			return nil, fmt.Errorf("rls.Config.SigningKeyID %q differs from the key's own kid %q", m.kid, jwkKID)
		}
		if m.kid == "" {
			m.kid = jwkKID
		}
		if m.kid == "" {
			return nil, errors.New("rls.Config.SigningKeyID is required with a PEM signing key (the kid shown in the dashboard)")
		}
		m.method, m.key = jwt.SigningMethodES256, key
	case cfg.JWTSecret.IsSet():
		m.method, m.key = jwt.SigningMethodHS256, []byte(cfg.JWTSecret.Reveal())
	default:
		return nil, errors.New("rls.Config: minting needs SigningKey (ES256) or JWTSecret (legacy HS256)")
	}
	return m, nil
}

// Algorithm returns the signing algorithm, "ES256" or "HS256".
func (m *Minter) Algorithm() string { return m.method.Alg() }

// Mint returns a token for userID, from the cache when one is valid for at least 30 more seconds.
func (m *Minter) Mint(userID uuid.UUID) (UserToken, error) {
	if userID == uuid.Nil {
		return UserToken{}, errors.New("rls: cannot mint a token for the nil user id")
	}
	now := m.Time.Now()
	m.mu.Lock()
	cached := m.cache[userID]
	m.mu.Unlock()
	if cached != nil && now.Before(cached.ExpiresAt.Add(-mintReuseMargin)) {
		return *cached, nil
	}

	tok, err := m.sign(userID, now)
	if err != nil {
		return UserToken{}, err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if other := m.cache[userID]; other != nil && other.ExpiresAt.After(tok.ExpiresAt) {
		return *other, nil // a concurrent Mint stored a fresher one
	}
	if len(m.cache) >= maxCachedTokens {
		m.evictLocked(now)
	}
	m.cache[userID] = tok
	return *tok, nil
}

func (m *Minter) sign(userID uuid.UUID, now time.Time) (*UserToken, error) {
	iat := jwt.NewNumericDate(now)
	exp := jwt.NewNumericDate(iat.Add(m.ttl))
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    m.issuer,
			Subject:   userID.String(),
			Audience:  jwt.ClaimStrings{RoleAuthenticated},
			ExpiresAt: exp,
			IssuedAt:  iat,
		},
		Role:   RoleAuthenticated,
		AAL:    "aal1",
		UserID: userID,
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("rls: error encoding minted claims: %w", err)
	}
	t := jwt.NewWithClaims(m.method, claims)
	if m.kid != "" {
		t.Header[jwkset.HeaderKID] = m.kid
	}
	signed, err := t.SignedString(m.key)
	if err != nil {
		return nil, fmt.Errorf("rls: error signing minted token: %w", err)
	}
	return &UserToken{JWT: signed, Claims: claims, ClaimsJSON: raw, ExpiresAt: exp.Time}, nil
}

// evictLocked drops expired entries, or everything if none had expired.
func (m *Minter) evictLocked(now time.Time) {
	for id, t := range m.cache {
		if !now.Before(t.ExpiresAt.Add(-mintReuseMargin)) {
			delete(m.cache, id)
		}
	}
	if len(m.cache) >= maxCachedTokens {
		clear(m.cache)
	}
}

// parseSigningKey reads an ES256 private key given as PEM (PKCS#8 or SEC1) or as a private JWK
// (a JSON object, or a one-element array as in Supabase's signing_keys.json). It returns the
// JWK's kid, if any. Errors never include key material.
func parseSigningKey(s string) (*ecdsa.PrivateKey, string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "\n") {
		s = strings.ReplaceAll(s, `\n`, "\n") // PEM pasted into an env var with escaped newlines
	}
	var (
		key any
		kid string
	)
	switch {
	case strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{"):
		raw := json.RawMessage(s)
		if strings.HasPrefix(s, "[") {
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil || len(arr) != 1 {
				return nil, "", errors.New("a JWK array must hold exactly one key")
			}
			raw = arr[0]
		}
		jwk, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, "", errors.New("not a valid private JWK")
		}
		key, kid = jwk.Key(), jwk.Marshal().KID
		if a := jwk.Marshal().ALG; a != "" && a.String() != jwt.SigningMethodES256.Alg() {
			return nil, "", fmt.Errorf("the JWK is for %s; only ES256 keys can be used", a)
		}
	default:
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, "", errors.New("neither a PEM block nor a JWK")
		}
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, "", fmt.Errorf("PEM block %q is not a private key", block.Type)
		}
		if err != nil {
			return nil, "", errors.New("the PEM private key does not parse")
		}
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, "", fmt.Errorf("the key is a %T, not an ES256 (P-256) private key", key)
	}
	return ec, kid, nil
}

// String describes the Minter without its keys, so printing it cannot leak them.
func (v *Minter) String() string {
	return "rls.Minter{issuer: " + v.issuer + ", kid: " + v.kid + ", alg: " + v.method.Alg() + "}"
}

// GoString is String, for the %#v verb.
func (v *Minter) GoString() string { return v.String() }
