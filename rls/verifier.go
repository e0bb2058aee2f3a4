package rls

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/baseservice"
)

// maxJWKSBytes caps a JWKS response.
const maxJWKSBytes = 1 << 20

// minRSABits is the smallest RSA modulus accepted (Supabase uses RSA 2048).
const minRSABits = 2048

// Verifier verifies Supabase user JWTs. Build one at startup with [NewVerifier], share it, and
// [Verifier.Close] it at shutdown. It is safe for concurrent use.
//
// Security properties:
//   - The algorithm is pinned to the key: ES256 and RS256 tokens are checked only against a JWKS
//     key of that exact type (P-256 / RSA ≥ 2048 bits, and the JWK's own "alg" if it has one), and
//     must name it with kid. HS256 tokens are checked only against Config.JWTSecret, and only when
//     it is set. "none" and every other algorithm are refused before any key is looked up. So an
//     HS256 token "signed" with a public key can never verify.
//   - exp is required; exp, nbf and iat are checked with Config.Leeway of skew; iss must be
//     SupabaseURL/auth/v1; aud must contain "authenticated"; sub must be a UUID; role must be in
//     Config.AllowedRoles.
//   - The JWKS is re-fetched every Config.JWKSRefreshInterval (≤ 10 min, Supabase's cache
//     window) and when a token names an unknown kid, at most once per
//     Config.JWKSUnknownKIDInterval. A refresh replaces the whole set, so revoked keys stop
//     verifying. Responses are size-capped and time-limited.
//   - Failures are *apierror.Error values (401) whose message is a short reason; the token is never
//     logged or echoed.
type Verifier struct {
	baseservice.BaseService

	issuer   string
	leeway   time.Duration
	maxBytes int
	roles    []string
	methods  []string
	hsKey    []byte
	parser   *jwt.Parser
	jwks     keyfunc.Keyfunc // nil when JWKS is disabled

	stop      context.CancelFunc
	transport *http.Transport // ours to close, or nil
}

// NewVerifier builds a Verifier. Unless Config.JWKSDisabled, it fetches the JWKS once (a failure
// is logged, not returned, so the service can start while Supabase is unreachable; tokens are
// then rejected with "unknown kid" until a fetch succeeds) and starts a background refresh that
// runs until ctx ends or Close is called.
func NewVerifier(ctx context.Context, archetype *baseservice.Archetype, cfg *Config) (*Verifier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := baseservice.Init(archetype, &Verifier{
		issuer:   cfg.Issuer(),
		leeway:   cfg.Leeway,
		maxBytes: cfg.MaxTokenBytes,
		roles:    slices.Clone(cfg.AllowedRoles),
		stop:     func() {},
	})
	if cfg.JWTSecret.IsSet() {
		v.hsKey = []byte(cfg.JWTSecret.Reveal())
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if !cfg.JWKSDisabled {
		v.methods = append(v.methods, jwt.SigningMethodES256.Alg(), jwt.SigningMethodRS256.Alg())
		if err := v.startJWKS(ctx, cfg); err != nil {
			return nil, err
		}
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.methods),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(), // done in validateClaims, with a specific reason per claim
	)
	return v, nil
}

func (v *Verifier) startJWKS(ctx context.Context, cfg *Config) error {
	client := cfg.HTTPClient
	if client == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return errors.New("rls: http.DefaultTransport is not an *http.Transport")
		}
		v.transport = t.Clone()
		client = &http.Client{Transport: v.transport}
	}
	limited := *client
	limited.Transport = limitedTransport{next: cmp.Or[http.RoundTripper](client.Transport, http.DefaultTransport), max: maxJWKSBytes}
	if limited.Timeout == 0 {
		limited.Timeout = cfg.JWKSHTTPTimeout
	}

	refreshCtx, stop := context.WithCancel(ctx)
	v.stop = stop
	logger := v.Logger
	jwks, err := keyfunc.NewDefaultOverrideCtx(refreshCtx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:      &limited,
		HTTPTimeout: cfg.JWKSHTTPTimeout,
		// Wait for the unknown-kid limiter no longer than one fetch may take: a request whose
		// kid is unknown while the limiter is empty is rejected at once instead of queueing.
		RateLimitWaitMax: cfg.JWKSHTTPTimeout,
		RefreshErrorHandlerFunc: func(u string) func(ctx context.Context, err error) {
			return func(ctx context.Context, err error) {
				if ctx.Err() != nil && refreshCtx.Err() != nil {
					return // shutting down
				}
				logger.WarnContext(ctx, "rls: JWKS refresh failed", "url", u, "error", err)
			}
		},
		RefreshInterval:   cfg.JWKSRefreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.JWKSUnknownKIDInterval), 1),
	})
	if err != nil {
		stop()
		return fmt.Errorf("rls: error creating JWKS client for %s: %w", cfg.JWKSURL, err)
	}
	v.jwks = jwks
	return nil
}

// Close stops the background JWKS refresh and releases idle connections. Verify keeps working on
// the last fetched keys.
func (v *Verifier) Close() {
	v.stop()
	if v.transport != nil {
		v.transport.CloseIdleConnections()
	}
}

// Verify checks a raw JWT (without the "Bearer " prefix) and returns its claims. Every failure is
// a 401 *apierror.Error wrapping one of the token Err variables (ErrTokenExpired, ErrUnknownKeyID, …).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, tokenError(ErrMissingToken, nil)
	}
	if len(token) > v.maxBytes {
		return nil, tokenError(ErrTokenTooLarge, nil)
	}
	if err := v.checkHeader(token); err != nil {
		return nil, err
	}
	claims := &Claims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyFunc(ctx)); err != nil {
		return nil, parseError(err)
	}
	if err := v.validateClaims(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkHeader rejects tokens that do not have three segments, whose header does not decode, or
// whose alg is not one this verifier accepts, before golang-jwt sees them.
func (v *Verifier) checkHeader(token string) error {
	if strings.Count(token, ".") != 2 {
		return tokenError(ErrTokenMalformed, errors.New("token must have three segments"))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil {
		return tokenError(ErrTokenMalformed, fmt.Errorf("error decoding header: %w", err))
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &header); err != nil {
		return tokenError(ErrTokenMalformed, fmt.Errorf("error decoding header: %w", err))
	}
	if !slices.Contains(v.methods, header.Alg) {
		return tokenError(ErrAlgorithmNotAllowed, fmt.Errorf("alg %q", header.Alg))
	}
	return nil
}

// keyFunc picks the key for a token, pinning the algorithm to the key.
func (v *Verifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == jwt.SigningMethodHS256.Alg() {
			if v.hsKey == nil {
				return nil, ErrAlgorithmNotAllowed
			}
			return v.hsKey, nil
		}
		if v.jwks == nil || (alg != jwt.SigningMethodES256.Alg() && alg != jwt.SigningMethodRS256.Alg()) {
			return nil, ErrAlgorithmNotAllowed
		}
		kid, _ := t.Header[jwkset.HeaderKID].(string)
		if kid == "" {
			return nil, ErrKeyIDMissing
		}
		jwk, err := v.jwks.Storage().KeyRead(ctx, kid)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnknownKeyID, err)
		}
		return publicKeyFor(alg, jwk)
	}
}

// publicKeyFor returns the JWK's public key if, and only if, it is a key for alg.
func publicKeyFor(alg string, jwk jwkset.JWK) (any, error) {
	m := jwk.Marshal()
	if m.ALG != "" && m.ALG.String() != alg {
		return nil, fmt.Errorf("%w: key is for %s", ErrKeyAlgorithmMismatch, m.ALG)
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("%w: key use is %q", ErrKeyAlgorithmMismatch, m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return nil, fmt.Errorf("%w: key_ops lacks verify", ErrKeyAlgorithmMismatch)
	}
	key := jwk.Key()
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		key = &k.PublicKey
	case *rsa.PrivateKey:
		key = &k.PublicKey
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg == jwt.SigningMethodES256.Alg() && k.Curve == elliptic.P256() {
			return k, nil
		}
	case *rsa.PublicKey:
		if alg == jwt.SigningMethodRS256.Alg() && k.N.BitLen() >= minRSABits {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: %s token, %T key", ErrKeyAlgorithmMismatch, alg, key)
}

// parseError maps a golang-jwt error to a token error with a specific reason.
func parseError(err error) *apierror.Error {
	for _, reason := range []error{ErrAlgorithmNotAllowed, ErrKeyIDMissing, ErrUnknownKeyID, ErrKeyAlgorithmMismatch} {
		if errors.Is(err, reason) {
			return tokenError(reason, err)
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return tokenError(ErrTokenMalformed, err)
	default: // jwt.ErrTokenSignatureInvalid, jwt.ErrTokenUnverifiable
		return tokenError(ErrSignatureInvalid, err)
	}
}

// validateClaims checks the time claims against the clock and the Supabase-specific claims.
func (v *Verifier) validateClaims(c *Claims) error {
	now := v.Time.Now()
	switch {
	case c.ExpiresAt == nil:
		return tokenError(ErrExpiryMissing, nil)
	case !now.Before(c.ExpiresAt.Add(v.leeway)):
		return tokenError(ErrTokenExpired, nil)
	case c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.Time):
		return tokenError(ErrTokenNotYetValid, nil)
	case c.IssuedAt != nil && now.Add(v.leeway).Before(c.IssuedAt.Time):
		return tokenError(ErrTokenUsedBeforeIssued, nil)
	case c.Issuer != v.issuer:
		return tokenError(ErrIssuerInvalid, nil)
	case !slices.Contains(c.Audience, RoleAuthenticated):
		return tokenError(ErrAudienceInvalid, nil)
	case c.Subject == "":
		return tokenError(ErrSubjectMissing, nil)
	}
	id, err := parseUserID(c.Subject)
	if err != nil {
		return tokenError(ErrSubjectInvalid, nil)
	}
	if !slices.Contains(v.roles, c.Role) {
		return tokenError(ErrRoleNotAllowed, fmt.Errorf("role %q", c.Role))
	}
	c.UserID = id
	return nil
}

// parseUserID accepts only the canonical 36-character UUID form, not nil.
func parseUserID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, errors.New("not a canonical uuid")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, err
	}
	if id == uuid.Nil {
		return uuid.Nil, errors.New("nil uuid")
	}
	return id, nil
}

// limitedTransport caps response bodies, so a misbehaving JWKS endpoint cannot exhaust memory.
type limitedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, t.max), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// String describes the Verifier without its keys, so printing it cannot leak them.
func (v *Verifier) String() string {
	return "rls.Verifier{issuer: " + v.issuer + ", algorithms: " + strings.Join(v.methods, ",") + "}"
}

// GoString is String, for the %#v verb.
func (v *Verifier) GoString() string { return v.String() }
