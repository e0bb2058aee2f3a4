package rls

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults and limits applied by [Config.WithDefaults] and checked by [Config.Validate].
const (
	// DefaultJWKSRefreshInterval is how often the JWKS is re-fetched. Supabase's edge caches the
	// JWKS for 10 minutes and asks clients not to cache it longer; MaxJWKSRefreshInterval enforces that.
	DefaultJWKSRefreshInterval = 10 * time.Minute
	MaxJWKSRefreshInterval     = 10 * time.Minute
	// DefaultJWKSUnknownKIDInterval is the minimum time between re-fetches caused by a token with an
	// unknown kid (the rate limit that stops forged kids from hammering Supabase).
	DefaultJWKSUnknownKIDInterval = time.Minute
	// DefaultJWKSHTTPTimeout bounds one JWKS fetch.
	DefaultJWKSHTTPTimeout = 5 * time.Second
	// DefaultLeeway is the allowed clock skew for exp, nbf and iat (the value PostgREST uses).
	DefaultLeeway = 30 * time.Second
	// DefaultMaxTokenBytes caps the size of a bearer token; larger ones are rejected unparsed.
	DefaultMaxTokenBytes = 16 << 10
	// DefaultTokenTTL is the lifetime of a minted user token; MaxTokenTTL is the most allowed.
	DefaultTokenTTL = 2 * time.Minute
	MaxTokenTTL     = 10 * time.Minute
	// DefaultWebhookSecretHeader is the header that carries the shared webhook secret. It is the
	// header Supabase Studio offers as a preset for exactly this purpose ("x-supabase-webhook-source").
	DefaultWebhookSecretHeader = "X-Supabase-Webhook-Source" //nolint:gosec // G101: a header name, not a secret
	// DefaultWebhookTolerance is the Standard Webhooks timestamp tolerance.
	DefaultWebhookTolerance = 5 * time.Minute
	// DefaultWebhookMaxBodyBytes caps the webhook body (1 MiB).
	DefaultWebhookMaxBodyBytes = 1 << 20
	// DefaultWebhookReplayCacheSize bounds the number of remembered webhook-ids. Size it as
	// (peak webhooks per second) × 2 × Tolerance; the default covers about 200/s, pg_net's rated
	// throughput. Each entry costs about 150 bytes.
	DefaultWebhookReplayCacheSize = 120_000
)

// RoleAuthenticated is the Postgres role of signed-in users, and the audience of their tokens.
const RoleAuthenticated = "authenticated"

// WebhookMode selects how webhooks are authenticated.
type WebhookMode string

const (
	// WebhookModeSharedSecret compares a header with a shared secret in constant time. This is what
	// a Supabase Database Webhook created in Studio can send.
	WebhookModeSharedSecret WebhookMode = "shared_secret"
	// WebhookModeStandard verifies a Standard Webhooks signature (webhook-id, webhook-timestamp,
	// webhook-signature), as sent by the opt-in trigger in webhooks/signing.sql.
	WebhookModeStandard WebhookMode = "standard"
)

// Config configures everything in this package. Build it in config/ from the environment, call
// WithDefaults, then Validate once at startup. Constructors apply defaults themselves too.
type Config struct {
	// SupabaseURL is the project URL, e.g. https://<ref>.supabase.co. Required. The issuer of user
	// tokens is SupabaseURL + "/auth/v1".
	SupabaseURL string

	// JWTSecret is the project's legacy HS256 JWT secret. Empty (the default) disables HS256 both
	// for verifying and for minting. When set, HS256 tokens are verified with it, whatever their kid.
	JWTSecret Secret

	// JWKSURL is where the public signing keys are fetched. Default:
	// SupabaseURL + "/auth/v1/.well-known/jwks.json".
	JWKSURL string
	// JWKSDisabled turns off asymmetric verification (for HS256-only setups and tests). Default false.
	JWKSDisabled bool
	// JWKSRefreshInterval is how often the JWKS is re-fetched in the background. Default 10m, at most 10m.
	JWKSRefreshInterval time.Duration
	// JWKSUnknownKIDInterval is the minimum time between fetches triggered by an unknown kid.
	// Default 1m. A token with an unknown kid arriving inside the interval is rejected without a fetch.
	JWKSUnknownKIDInterval time.Duration
	// JWKSHTTPTimeout bounds each JWKS request. Default 5s.
	JWKSHTTPTimeout time.Duration
	// HTTPClient is used for JWKS requests. Nil means a client of our own with JWKSHTTPTimeout;
	// responses are capped at 1 MiB either way.
	HTTPClient *http.Client

	// Leeway is the allowed clock skew for exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// AllowedRoles are the role claims accepted by the Verifier. Default ["authenticated"]
	// (anonymous sign-ins also have role authenticated, with is_anonymous true).
	AllowedRoles []string
	// MaxTokenBytes caps bearer tokens. Default 16 KiB.
	MaxTokenBytes int

	// SigningKey is the private key the Minter signs with: an ES256 (P-256) key as PEM (PKCS#8
	// "PRIVATE KEY" or SEC1 "EC PRIVATE KEY") or as a private JWK (the JSON that
	// `supabase gen signing-key --algorithm ES256` prints). Import the same key into the project's
	// JWT signing keys first; see docs/signing-key.md. Empty means mint with JWTSecret (HS256), and
	// if that is empty too the Minter cannot be built.
	SigningKey Secret
	// SigningKeyID is the kid of SigningKey, as shown in the Supabase dashboard. Required with a PEM
	// key; a JWK's own kid is used when this is empty. With HS256 it is optional and, when set, is
	// sent as the kid header.
	SigningKeyID string
	// TokenTTL is the lifetime of minted tokens. Default 2m, at most 10m.
	TokenTTL time.Duration

	// WebhookMode selects how webhooks are authenticated. Default: WebhookModeStandard when
	// WebhookSigningSecret is set, otherwise WebhookModeSharedSecret.
	WebhookMode WebhookMode
	// WebhookSecret is the shared secret for WebhookModeSharedSecret.
	WebhookSecret Secret
	// WebhookSecretHeader is the header that carries WebhookSecret. Default
	// "X-Supabase-Webhook-Source" (Studio's preset for this purpose).
	WebhookSecretHeader string
	// WebhookSigningSecret is the Standard Webhooks secret, "whsec_<base64>", for WebhookModeStandard.
	WebhookSigningSecret Secret
	// WebhookTolerance is how far webhook-timestamp may be from now. Default 5m.
	WebhookTolerance time.Duration
	// WebhookMaxBodyBytes caps webhook bodies; larger ones get 413. Default 1 MiB.
	WebhookMaxBodyBytes int64
	// WebhookReplayCacheSize bounds remembered webhook-ids. Default 120000 (see DefaultWebhookReplayCacheSize).
	WebhookReplayCacheSize int

	// ServiceKey is the secret key (sb_secret_…) or legacy service_role JWT. It bypasses RLS; it is
	// exposed only through NewServiceCredentials.
	ServiceKey Secret
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c *Config) WithDefaults() *Config {
	d := *c
	d.SupabaseURL = strings.TrimRight(d.SupabaseURL, "/")
	if d.JWKSURL == "" && d.SupabaseURL != "" {
		d.JWKSURL = d.SupabaseURL + "/auth/v1/.well-known/jwks.json"
	}
	d.JWKSRefreshInterval = cmp.Or(d.JWKSRefreshInterval, DefaultJWKSRefreshInterval)
	d.JWKSUnknownKIDInterval = cmp.Or(d.JWKSUnknownKIDInterval, DefaultJWKSUnknownKIDInterval)
	d.JWKSHTTPTimeout = cmp.Or(d.JWKSHTTPTimeout, DefaultJWKSHTTPTimeout)
	d.Leeway = cmp.Or(d.Leeway, DefaultLeeway)
	if len(d.AllowedRoles) == 0 {
		d.AllowedRoles = []string{RoleAuthenticated}
	}
	d.MaxTokenBytes = cmp.Or(d.MaxTokenBytes, DefaultMaxTokenBytes)
	d.TokenTTL = cmp.Or(d.TokenTTL, DefaultTokenTTL)
	if d.WebhookMode == "" {
		d.WebhookMode = WebhookModeSharedSecret
		if d.WebhookSigningSecret.IsSet() {
			d.WebhookMode = WebhookModeStandard
		}
	}
	d.WebhookSecretHeader = cmp.Or(d.WebhookSecretHeader, DefaultWebhookSecretHeader)
	d.WebhookTolerance = cmp.Or(d.WebhookTolerance, DefaultWebhookTolerance)
	d.WebhookMaxBodyBytes = cmp.Or(d.WebhookMaxBodyBytes, DefaultWebhookMaxBodyBytes)
	d.WebhookReplayCacheSize = cmp.Or(d.WebhookReplayCacheSize, DefaultWebhookReplayCacheSize)
	return &d
}

// Issuer returns the issuer of the project's user tokens: SupabaseURL + "/auth/v1".
func (c *Config) Issuer() string {
	return strings.TrimRight(c.SupabaseURL, "/") + "/auth/v1"
}

// Validate checks the settings every part of the package shares, naming the field at fault.
// Call it on the result of WithDefaults. Parts that need more (a signing key for the Minter, a
// webhook secret for the WebhookVerifier) are checked by their constructors.
func (c *Config) Validate() error {
	var errs []error
	if c.SupabaseURL == "" {
		errs = append(errs, errors.New("rls.Config.SupabaseURL is required"))
	} else if u, err := url.Parse(c.SupabaseURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		errs = append(errs, fmt.Errorf("rls.Config.SupabaseURL %q is not an http(s) URL", c.SupabaseURL))
	}
	if !c.JWKSDisabled {
		if u, err := url.Parse(c.JWKSURL); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("rls.Config.JWKSURL %q is not a URL", c.JWKSURL))
		}
	}
	if c.JWKSDisabled && !c.JWTSecret.IsSet() {
		errs = append(errs, errors.New("rls.Config: JWKSDisabled needs JWTSecret, or no token can be verified"))
	}
	if c.JWKSRefreshInterval <= 0 || c.JWKSRefreshInterval > MaxJWKSRefreshInterval {
		errs = append(errs, fmt.Errorf("rls.Config.JWKSRefreshInterval %s must be in (0, %s]", c.JWKSRefreshInterval, MaxJWKSRefreshInterval))
	}
	if c.JWKSUnknownKIDInterval < 0 || c.JWKSHTTPTimeout <= 0 {
		errs = append(errs, errors.New("rls.Config.JWKSUnknownKIDInterval and JWKSHTTPTimeout must be positive"))
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, fmt.Errorf("rls.Config.Leeway %s must be in [0, 5m]", c.Leeway))
	}
	if c.MaxTokenBytes < 1024 {
		errs = append(errs, fmt.Errorf("rls.Config.MaxTokenBytes %d must be at least 1024", c.MaxTokenBytes))
	}
	if c.TokenTTL <= 0 || c.TokenTTL > MaxTokenTTL {
		errs = append(errs, fmt.Errorf("rls.Config.TokenTTL %s must be in (0, %s]", c.TokenTTL, MaxTokenTTL))
	}
	switch c.WebhookMode {
	case WebhookModeSharedSecret, WebhookModeStandard:
	default:
		errs = append(errs, fmt.Errorf("rls.Config.WebhookMode %q must be %q or %q", c.WebhookMode, WebhookModeSharedSecret, WebhookModeStandard))
	}
	if c.WebhookTolerance <= 0 || c.WebhookMaxBodyBytes <= 0 || c.WebhookReplayCacheSize <= 0 {
		errs = append(errs, errors.New("rls.Config.WebhookTolerance, WebhookMaxBodyBytes and WebhookReplayCacheSize must be positive"))
	}
	return errors.Join(errs...)
}
