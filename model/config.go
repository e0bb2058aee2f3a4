package model

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/orchable/orchable/baseservice"
)

// Providers selectable with Config.Provider.
const (
	ProviderGemini  = "gemini"
	ProviderOffline = "offline"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultBaseURL          = "https://generativelanguage.googleapis.com/"
	DefaultAPIVersion       = "v1beta"
	DefaultModel            = "gemini-3.5-flash"
	DefaultRequestTimeout   = 120 * time.Second
	DefaultMaxResponseBytes = 8 << 20
	DefaultMaxKeyAttempts   = 3
	DefaultKeyBlockDuration = 24 * time.Hour
	DefaultCacheMinTokens   = 4096
	DefaultCacheTTL         = 15 * time.Minute
)

// Config configures the Gemini client, the key pool and the offline provider.
// Build it in config/ (the only package that reads the environment) and pass
// it to NewClient, NewKeyPool and NewOffline.
type Config struct {
	// Provider is "gemini" (default) or "offline". The offline provider needs
	// no keys and no network, and completes tasks with generated filler:
	// configuration chooses it only when asked for, never by inference.
	Provider string
	// BaseURL is the Gemini endpoint (GEMINI_BASE_URL). Default
	// https://generativelanguage.googleapis.com/. Point it at a gateway, or at
	// geminitest's fake server in tests.
	BaseURL string
	// APIVersion is the REST API version. Default v1beta.
	APIVersion string
	// DefaultModel is used when a stage's settings name no model. Default
	// gemini-3.5-flash. Model ids are configuration: check them against
	// Google's deprecation page when deploying.
	DefaultModel string
	// RequestTimeout bounds one generateContent call. Default 120 s.
	RequestTimeout time.Duration
	// MaxResponseBytes caps the size of a Gemini response body. Default 8 MiB.
	MaxResponseBytes int64
	// MaxKeyAttempts is how many keys one Generate call tries when a key or its
	// project is at fault (429, invalid key). Server errors and timeouts are
	// not retried inside Generate: the task is rescheduled and the next attempt
	// picks the least recently used key. Default 3.
	MaxKeyAttempts int
	// HTTPClient sends the requests. Default a new http.Client (timeouts come
	// from RequestTimeout). Its transport is wrapped to cap response sizes.
	HTTPClient *http.Client
	// Pool configures key selection and limits.
	Pool PoolConfig
	// Offline configures the offline provider.
	Offline OfflineConfig
	// Cache configures explicit context caching of shared content.
	Cache CacheConfig
	// KEKs are the key-encryption keys for api_key_encrypted, the first one
	// active (used to encrypt); the others are still accepted to decrypt, which
	// is how a KEK is rotated. Empty means keys are stored in plaintext
	// (legacy) and new ciphertexts cannot be read.
	KEKs []KEK
	// Archetype is the logger (warnings about health bookkeeping) and the
	// clock (key cooldowns, limiter windows, cache expiry, simulated
	// latency) of the client, the key pool and the offline provider. Nil
	// discards logs and uses the wall clock.
	Archetype *baseservice.Archetype
}

// PoolConfig configures the key pool.
type PoolConfig struct {
	// Limits are the local per-(Google project, model) limits, by model id.
	// Gemini enforces its quotas per project and model; configure what the
	// project's tier allows so the pool stays under it instead of collecting
	// 429s. A model without an entry uses DefaultLimit.
	Limits map[string]Limit
	// DefaultLimit applies to models not in Limits. Zero fields mean
	// unlimited (only the server's 429s throttle).
	DefaultLimit Limit
	// OperatorKeys are service-owned keys used for every user after the user's
	// own keys. Their health is kept in memory only.
	OperatorKeys []OperatorKey
	// FreePool supplies the operator's free-pool keys
	// (user_api_keys.pool_type = 'free_pool') for free-pool requests
	// (Request.FreePool). Nil: free-pool requests use OperatorKeys only. A
	// free-pool request never uses a user's personal key, its owner's
	// included.
	FreePool PoolKeyStore
	// OperatorKeysFreePoolOnly keeps OperatorKeys for free-pool requests:
	// personal tasks then run on their owner's keys only. Set it when the
	// operator's keys are the free tier's budget, or a free user could
	// launch personal tasks (launch_batch, direct inserts) on them without
	// the quota.
	OperatorKeysFreePoolOnly bool
	// RateLimitDelay blocks a project/model after a per-minute 429 that carries
	// no RetryInfo. Default 60 s.
	RateLimitDelay time.Duration
	// KeyBlockDuration blocks a key whose project cannot use the API
	// (FAILED_PRECONDITION: billing or region). Default 24 h.
	KeyBlockDuration time.Duration
}

// Limit is a requests- and tokens-per-minute budget. Zero means unlimited.
type Limit struct {
	// RPM is requests per minute.
	RPM int
	// TPM is input tokens per minute (estimated before the call from the
	// prompt length, corrected with the reported promptTokenCount).
	TPM int
}

// OperatorKey is a service-owned Gemini key from configuration.
type OperatorKey struct {
	// Name identifies the key in logs and in Response.KeyID ("operator:<Name>").
	Name string
	// Project is the Google project the key belongs to; empty means unknown
	// (the key is its own group).
	Project string
	// APIKey is the secret.
	APIKey string `json:"-"`
	// Priority orders operator keys (lower first). Default 1.
	Priority int
}

// String never prints the secret.
func (k OperatorKey) String() string { return "operator:" + k.Name }

// LogValue never logs the secret.
func (k OperatorKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// OfflineConfig configures the offline provider.
type OfflineConfig struct {
	// Latency is a fixed simulated latency per call. Default 0.
	Latency time.Duration
	// Jitter adds a deterministic (seeded by the task id) extra latency in
	// [0, Jitter). Default 0.
	Jitter time.Duration
	// ModelVersion is reported as Response.ModelVersion. Default "offline".
	ModelVersion string
}

// WithDefaults returns a copy of c with defaults filled in.
func (c *Config) WithDefaults() *Config {
	out := *c
	out.Provider = cmp.Or(out.Provider, ProviderGemini)
	out.BaseURL = cmp.Or(out.BaseURL, DefaultBaseURL)
	out.APIVersion = cmp.Or(out.APIVersion, DefaultAPIVersion)
	out.DefaultModel = cmp.Or(out.DefaultModel, DefaultModel)
	out.RequestTimeout = cmp.Or(out.RequestTimeout, DefaultRequestTimeout)
	out.MaxResponseBytes = cmp.Or(out.MaxResponseBytes, DefaultMaxResponseBytes)
	out.MaxKeyAttempts = cmp.Or(out.MaxKeyAttempts, DefaultMaxKeyAttempts)
	if out.HTTPClient == nil {
		out.HTTPClient = &http.Client{}
	}
	out.Pool.RateLimitDelay = cmp.Or(out.Pool.RateLimitDelay, defaultRateLimitDelay)
	out.Pool.KeyBlockDuration = cmp.Or(out.Pool.KeyBlockDuration, DefaultKeyBlockDuration)
	out.Offline.ModelVersion = cmp.Or(out.Offline.ModelVersion, "offline")
	if out.Cache.MinTokens == 0 {
		out.Cache.MinTokens = DefaultCacheMinTokens
	}
	out.Cache.TTL = cmp.Or(out.Cache.TTL, DefaultCacheTTL)
	return &out
}

// Validate reports the first invalid field by its name.
func (c *Config) Validate() error {
	switch c.Provider {
	case "", ProviderGemini, ProviderOffline:
	default:
		return fmt.Errorf("model.Config.Provider: %q is not %q or %q", c.Provider, ProviderGemini, ProviderOffline)
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("model.Config.BaseURL: %q is not an http(s) URL", c.BaseURL)
		}
	}
	if c.RequestTimeout < 0 {
		return errors.New("model.Config.RequestTimeout: must not be negative")
	}
	if c.Cache.TTL < 0 || (c.Cache.TTL > 0 && c.Cache.TTL < time.Minute) {
		return errors.New("model.Config.Cache.TTL: must be at least 1m")
	}
	if c.MaxKeyAttempts < 0 {
		return errors.New("model.Config.MaxKeyAttempts: must not be negative")
	}
	for m, l := range c.Pool.Limits {
		if l.RPM < 0 || l.TPM < 0 {
			return fmt.Errorf("model.Config.Pool.Limits[%s]: limits must not be negative", m)
		}
	}
	for i, k := range c.Pool.OperatorKeys {
		if k.Name == "" || k.APIKey == "" {
			return fmt.Errorf("model.Config.Pool.OperatorKeys[%d]: name and key are required", i)
		}
	}
	if c.Offline.Latency < 0 || c.Offline.Jitter < 0 {
		return errors.New("model.Config.Offline: latency and jitter must not be negative")
	}
	if _, err := NewCipher(c.KEKs); err != nil && len(c.KEKs) > 0 {
		return fmt.Errorf("model.Config.KEKs: %w", err)
	}
	return nil
}
