// Package config reads orchable's configuration from the environment — the
// only package that does — applies defaults and validates it once at start,
// with errors that name the variable. README.md has the table of variables.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/rls"
)

// Transport names.
const (
	TransportDirect    = "direct"
	TransportPostgREST = "postgrest"
)

// Config is the whole configuration, by section.
type Config struct {
	HTTP     HTTP
	DB       DB
	Supabase Supabase
	Auth     rls.Config
	Model    model.Config
	Pipeline Pipeline
	Log      Log
}

// HTTP configures the server.
type HTTP struct {
	// Addr is the listen address (ORCHABLE_ADDR, or ":"+PORT). Default :8080.
	Addr string
	// ShutdownGrace is how long in-flight work may finish after SIGTERM
	// (SHUTDOWN_GRACE). Default 60s.
	ShutdownGrace time.Duration
	// MaxBodyBytes caps user API request bodies (API_MAX_BODY_BYTES). Default 8 MiB.
	MaxBodyBytes int64
	// AllowAnonymousLaunch lets anonymous sign-ins (is_anonymous true) start
	// work through the API (ALLOW_ANONYMOUS_LAUNCH). Default false: 403.
	AllowAnonymousLaunch bool
	// MetricsToken, when set, is the bearer token GET /metrics requires
	// (METRICS_TOKEN). Empty leaves /metrics open.
	MetricsToken rls.Secret
	// MetricsStageLabels is how many distinct stage keys get a stage label
	// of their own; later ones are counted as "other"
	// (METRICS_STAGE_LABELS). Default 50; 0 counts every stage as "other".
	MetricsStageLabels int
}

// DB configures the direct PostgreSQL connection.
type DB struct {
	// URL is DATABASE_URL. Required for the direct transport, for migrate,
	// and for LISTEN/NOTIFY wake-ups.
	URL string
	// MaxConns is DATABASE_MAX_CONNS. Default 20.
	MaxConns int32
}

// Supabase configures the PostgREST transport.
type Supabase struct {
	// Transport is ORCHABLE_TRANSPORT: direct or postgrest. Default direct
	// when DATABASE_URL is set, else postgrest.
	Transport string
	// URL is SUPABASE_URL (also used for JWT issuer/JWKS).
	URL string
	// AnonKey is SUPABASE_ANON_KEY (or SUPABASE_PUBLISHABLE_KEY): the apikey
	// header of user calls through PostgREST.
	AnonKey string
}

// Pipeline configures the engine.
type Pipeline struct {
	Runner     pipeline.RunnerConfig
	Dispatcher pipeline.DispatcherConfig
	Sweeper    pipeline.SweeperConfig
}

// Log configures logging.
type Log struct {
	// Level is LOG_LEVEL: debug, info (default), warn, error.
	Level slog.Level
}

// Load reads the configuration through getenv (os.Getenv in main, a map in
// tests), applies defaults and validates it.
func Load(getenv func(string) string) (*Config, error) {
	r := reader{getenv: getenv}
	c := &Config{}

	c.HTTP.Addr = r.str("ORCHABLE_ADDR", "")
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = ":" + r.str("PORT", "8080")
	}
	c.HTTP.ShutdownGrace = r.duration("SHUTDOWN_GRACE", 60*time.Second)
	c.HTTP.MaxBodyBytes = int64(r.integer("API_MAX_BODY_BYTES", 8<<20))
	c.HTTP.AllowAnonymousLaunch = r.boolean("ALLOW_ANONYMOUS_LAUNCH")
	c.HTTP.MetricsToken = rls.Secret(r.str("METRICS_TOKEN", ""))
	c.HTTP.MetricsStageLabels = r.integer("METRICS_STAGE_LABELS", 50)

	c.DB.URL = r.str("DATABASE_URL", "")
	c.DB.MaxConns = int32(r.integer("DATABASE_MAX_CONNS", 20)) //nolint:gosec // validated below

	c.Supabase.URL = strings.TrimRight(r.str("SUPABASE_URL", ""), "/")
	c.Supabase.AnonKey = r.str("SUPABASE_ANON_KEY", r.str("SUPABASE_PUBLISHABLE_KEY", ""))
	defTransport := TransportPostgREST
	if c.DB.URL != "" {
		defTransport = TransportDirect
	}
	c.Supabase.Transport = r.str("ORCHABLE_TRANSPORT", defTransport)

	c.Auth = rls.Config{
		SupabaseURL:            c.Supabase.URL,
		JWTSecret:              rls.Secret(r.str("SUPABASE_JWT_SECRET", "")),
		JWKSURL:                r.str("SUPABASE_JWKS_URL", ""),
		JWKSDisabled:           r.boolean("JWKS_DISABLED"),
		JWKSRefreshInterval:    r.duration("JWKS_REFRESH_INTERVAL", 0),
		JWKSUnknownKIDInterval: r.duration("JWKS_UNKNOWN_KID_INTERVAL", 0),
		JWKSHTTPTimeout:        r.duration("JWKS_HTTP_TIMEOUT", 0),
		Leeway:                 r.duration("JWT_LEEWAY", 0),
		AllowedRoles:           r.list("JWT_ALLOWED_ROLES"),
		SigningKey:             rls.Secret(r.str("JWT_SIGNING_KEY", "")),
		SigningKeyID:           r.str("JWT_SIGNING_KEY_ID", ""),
		TokenTTL:               r.duration("MINTED_TOKEN_TTL", 0),
		WebhookMode:            rls.WebhookMode(r.str("WEBHOOK_MODE", "")),
		WebhookSecret:          rls.Secret(r.str("WEBHOOK_SECRET", "")),
		WebhookSecretHeader:    r.str("WEBHOOK_SECRET_HEADER", ""),
		WebhookSigningSecret:   rls.Secret(r.str("WEBHOOK_SIGNING_SECRET", "")),
		WebhookTolerance:       r.duration("WEBHOOK_TOLERANCE", 0),
		WebhookMaxBodyBytes:    int64(r.integer("WEBHOOK_MAX_BODY_BYTES", 0)),
		WebhookReplayCacheSize: r.integer("WEBHOOK_REPLAY_CACHE_SIZE", 0),
		ServiceKey:             rls.Secret(r.str("SUPABASE_SECRET_KEY", r.str("SUPABASE_SERVICE_ROLE_KEY", ""))),
	}
	if c.Auth.WebhookMode == "" {
		c.Auth.WebhookMode = rls.WebhookModeSharedSecret
		if c.Auth.WebhookSigningSecret.IsSet() {
			c.Auth.WebhookMode = rls.WebhookModeStandard
		}
	}

	c.Model = model.Config{
		Provider:         r.str("ORCHABLE_MODEL_PROVIDER", ""),
		BaseURL:          r.str("GEMINI_BASE_URL", ""),
		APIVersion:       r.str("GEMINI_API_VERSION", ""),
		DefaultModel:     r.str("GEMINI_MODEL", ""),
		RequestTimeout:   r.duration("GEMINI_REQUEST_TIMEOUT", 0),
		MaxResponseBytes: int64(r.integer("GEMINI_MAX_RESPONSE_BYTES", 0)),
		MaxKeyAttempts:   r.integer("GEMINI_MAX_KEY_ATTEMPTS", 0),
		Pool: model.PoolConfig{
			Limits:                   r.limits("GEMINI_RATE_LIMITS"),
			DefaultLimit:             model.Limit{RPM: r.integer("GEMINI_DEFAULT_RPM", 0), TPM: r.integer("GEMINI_DEFAULT_TPM", 0)},
			OperatorKeys:             r.operatorKeys("GEMINI_OPERATOR_KEYS"),
			OperatorKeysFreePoolOnly: r.boolean("GEMINI_OPERATOR_KEYS_FREE_POOL_ONLY"),
			RateLimitDelay:           r.duration("GEMINI_RATE_LIMIT_DELAY", 0),
			KeyBlockDuration:         r.duration("GEMINI_KEY_BLOCK_DURATION", 0),
		},
		Offline: model.OfflineConfig{
			Latency: r.duration("ORCHABLE_OFFLINE_LATENCY", 0),
			Jitter:  r.duration("ORCHABLE_OFFLINE_JITTER", 0),
		},
		Cache: model.CacheConfig{
			MinTokens: r.integer("GEMINI_CACHE_MIN_TOKENS", 0),
			TTL:       r.duration("GEMINI_CACHE_TTL", 0),
		},
		KEKs: r.keks("ORCHABLE_KEKS"),
	}
	// The offline provider (generated filler, no model) only when asked for:
	// `orchable dev` sets it; nothing about the database implies it.
	c.Model.Provider = strings.ToLower(c.Model.Provider)
	if c.Model.Provider == "" {
		c.Model.Provider = model.ProviderGemini
	}
	// One default model for the client and the runner: model.DefaultModel.
	if c.Model.DefaultModel == "" {
		c.Model.DefaultModel = model.DefaultModel
	}
	if k := r.str("GEMINI_API_KEY", ""); k != "" {
		c.Model.Pool.OperatorKeys = append(c.Model.Pool.OperatorKeys, model.OperatorKey{Name: "default", Project: r.str("GEMINI_API_KEY_PROJECT", ""), APIKey: k})
	}

	c.Pipeline.Runner = pipeline.RunnerConfig{
		WorkerID:         r.str("WORKER_ID", r.str("FLY_MACHINE_ID", "")),
		LeaseDuration:    r.duration("LEASE_DURATION", 5*time.Minute),
		DefaultModel:     c.Model.DefaultModel,
		MaxRegenerations: r.integer("MAX_REGENERATIONS", 2),
		MaxAttempts:      r.integer("MAX_ATTEMPTS", 8),
		BackoffBase:      r.duration("RETRY_BACKOFF_BASE", 2*time.Second),
		BackoffMax:       r.duration("RETRY_BACKOFF_MAX", 10*time.Minute),
		ModelTimeout:     r.duration("MODEL_TIMEOUT", 5*time.Minute),
		DBCalls:          r.integer("ENGINE_DB_CALLS", 4),
		CompletionLinger: r.duration("ENGINE_COMPLETION_LINGER", 50*time.Millisecond),
		Prices:           r.prices("MODEL_PRICES"),
		Hooks: pipeline.HookConfig{
			Timeout:               r.duration("HOOK_TIMEOUT", 10*time.Second),
			MaxResponseBytes:      int64(r.integer("HOOK_MAX_RESPONSE_BYTES", 1<<20)),
			AllowedHosts:          r.list("HOOK_ALLOWED_HOSTS"),
			AllowedPorts:          r.ports("HOOK_ALLOWED_PORTS", []int{80, 443}),
			AllowLoopbackForTests: r.boolean("HOOK_ALLOW_LOOPBACK_FOR_TESTS"),
		},
	}
	if c.Pipeline.Runner.MaxRegenerations == 0 {
		c.Pipeline.Runner.MaxRegenerations = -1 // explicit 0 means none
	}
	if c.Pipeline.Runner.CompletionLinger == 0 {
		c.Pipeline.Runner.CompletionLinger = -1 // explicit 0 means none
	}
	concurrency := r.integer("WORKER_CONCURRENCY", 50)
	c.Pipeline.Dispatcher = pipeline.DispatcherConfig{
		Concurrency:    concurrency,
		ClaimBatch:     r.integer("CLAIM_BATCH", 10),
		FairShareFloor: r.integer("FAIR_SHARE_FLOOR", 1),
		ClaimAhead:     r.integer("CLAIM_AHEAD", concurrency),
	}
	if c.Pipeline.Dispatcher.ClaimAhead == 0 {
		c.Pipeline.Dispatcher.ClaimAhead = -1 // explicit 0 means none
	}
	c.Pipeline.Sweeper = pipeline.SweeperConfig{
		Interval:       r.duration("SWEEP_INTERVAL", 5*time.Second),
		FoldInterval:   r.duration("FOLD_INTERVAL", 500*time.Millisecond),
		MaxLeaseLosses: r.integer("MAX_LEASE_LOSSES", 5),
		EngineLimits: pipeline.EngineLimits{
			MaxSplitItems:      r.integer("MAX_SPLIT_ITEMS", 10000),
			MaxChildInputBytes: int64(r.integer("MAX_CHILD_INPUT_BYTES", 64<<20)),
			MaxLineageDepth:    r.integer("MAX_LINEAGE_DEPTH", 100),
		},
	}

	switch strings.ToLower(r.str("LOG_LEVEL", "info")) {
	case "debug":
		c.Log.Level = slog.LevelDebug
	case "info":
		c.Log.Level = slog.LevelInfo
	case "warn":
		c.Log.Level = slog.LevelWarn
	case "error":
		c.Log.Level = slog.LevelError
	default:
		r.fail("LOG_LEVEL", "must be debug, info, warn or error")
	}

	// Report every problem at once: parse errors, then what Validate finds.
	if err := errors.Join(append(r.errs, c.Validate())...); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the sections; errors name the variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, msg string) { errs = append(errs, fmt.Errorf("%s: %s", name, msg)) }
	switch c.Supabase.Transport {
	case TransportDirect:
		if c.DB.URL == "" {
			bad("DATABASE_URL", "required with ORCHABLE_TRANSPORT=direct")
		}
	case TransportPostgREST:
		if c.Supabase.URL == "" {
			bad("SUPABASE_URL", "required with ORCHABLE_TRANSPORT=postgrest")
		}
		if c.Supabase.AnonKey == "" {
			bad("SUPABASE_ANON_KEY", "required with ORCHABLE_TRANSPORT=postgrest (the publishable or anon key)")
		}
		if !c.Auth.SigningKey.IsSet() && !c.Auth.JWTSecret.IsSet() {
			bad("JWT_SIGNING_KEY", "required with ORCHABLE_TRANSPORT=postgrest to act as task owners (or set SUPABASE_JWT_SECRET)")
		}
		if !c.Auth.ServiceKey.IsSet() {
			bad("SUPABASE_SECRET_KEY", "required with ORCHABLE_TRANSPORT=postgrest (the sweeper finds due work with it)")
		}
	default:
		bad("ORCHABLE_TRANSPORT", fmt.Sprintf("%q is not direct or postgrest", c.Supabase.Transport))
	}
	if c.Supabase.URL != "" {
		if u, err := url.Parse(c.Supabase.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("SUPABASE_URL", "must be an http(s) URL such as https://<ref>.supabase.co")
		}
	}
	if c.DB.MaxConns < 2 || c.DB.MaxConns > 1000 {
		bad("DATABASE_MAX_CONNS", "must be between 2 and 1000")
	}
	if c.HTTP.ShutdownGrace <= 0 {
		bad("SHUTDOWN_GRACE", "must be positive")
	}
	if c.HTTP.MaxBodyBytes <= 0 {
		bad("API_MAX_BODY_BYTES", "must be positive")
	}
	if c.Pipeline.Dispatcher.Concurrency < 1 || c.Pipeline.Dispatcher.Concurrency > 100000 {
		bad("WORKER_CONCURRENCY", "must be between 1 and 100000")
	}
	if c.Pipeline.Dispatcher.ClaimBatch < 1 || c.Pipeline.Dispatcher.ClaimBatch > 1000 {
		bad("CLAIM_BATCH", "must be between 1 and 1000")
	}
	if n := c.Pipeline.Dispatcher.ClaimAhead; n < -1 || n > 100000 {
		bad("CLAIM_AHEAD", "must be between 0 (none) and 100000")
	}
	if n := c.Pipeline.Runner.DBCalls; n != -1 && (n < 1 || n > 1000) {
		bad("ENGINE_DB_CALLS", "must be between 1 and 1000, or -1 for no bound")
	}
	if l := c.Pipeline.Runner.CompletionLinger; l != -1 && (l < 0 || l > time.Second) {
		bad("ENGINE_COMPLETION_LINGER", "must be between 0 (none) and 1s")
	}
	if l := c.Pipeline.Runner.LeaseDuration; l < 10*time.Second || l > time.Hour {
		bad("LEASE_DURATION", "must be between 10s and 1h")
	}
	if c.Pipeline.Runner.ModelTimeout >= c.Pipeline.Runner.LeaseDuration*4 {
		bad("MODEL_TIMEOUT", "must be less than 4 × LEASE_DURATION (leases are renewed every third)")
	}
	if c.Pipeline.Runner.MaxAttempts < 1 {
		bad("MAX_ATTEMPTS", "must be at least 1")
	}
	if c.Pipeline.Sweeper.Interval < 100*time.Millisecond {
		bad("SWEEP_INTERVAL", "must be at least 100ms")
	}
	if c.Pipeline.Sweeper.FoldInterval < 10*time.Millisecond {
		bad("FOLD_INTERVAL", "must be at least 10ms")
	}
	if l := c.Pipeline.Sweeper.EngineLimits; l.MaxSplitItems < 1 {
		bad("MAX_SPLIT_ITEMS", "must be at least 1")
	}
	if l := c.Pipeline.Sweeper.EngineLimits; l.MaxChildInputBytes < 1 {
		bad("MAX_CHILD_INPUT_BYTES", "must be at least 1")
	}
	if h := c.Pipeline.Runner.Hooks; h.Timeout <= 0 {
		bad("HOOK_TIMEOUT", "must be positive")
	} else if err := h.Validate(); err != nil {
		bad("HOOK_ALLOWED_HOSTS", err.Error())
	}
	if c.HTTP.MetricsToken.IsSet() && len(c.HTTP.MetricsToken.Reveal()) < 16 {
		bad("METRICS_TOKEN", "must be at least 16 characters")
	}
	if c.HTTP.MetricsStageLabels < 0 || c.HTTP.MetricsStageLabels > 1000 {
		bad("METRICS_STAGE_LABELS", "must be between 0 and 1000")
	}
	if d := c.Pipeline.Dispatcher; d.FairShareFloor < 1 {
		bad("FAIR_SHARE_FLOOR", "must be at least 1")
	}
	if l := c.Pipeline.Sweeper.EngineLimits; l.MaxLineageDepth < 2 {
		bad("MAX_LINEAGE_DEPTH", "must be at least 2")
	}
	switch c.Model.Provider {
	case model.ProviderGemini, model.ProviderOffline:
		if err := c.Model.Validate(); err != nil {
			errs = append(errs, EnvNames(err))
		}
	default:
		bad("ORCHABLE_MODEL_PROVIDER", fmt.Sprintf("%q is not gemini or offline (offline completes tasks with generated filler; only for local runs)", c.Model.Provider))
	}
	if c.Supabase.URL != "" {
		if err := c.Auth.WithDefaults().Validate(); err != nil {
			errs = append(errs, EnvNames(err))
		}
	}
	return errors.Join(errs...)
}

// reader collects parse errors that name the variable.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) fail(name, msg string) { r.errs = append(r.errs, fmt.Errorf("%s: %s", name, msg)) }

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) integer(name string, def int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, fmt.Sprintf("%q is not an integer", v))
		return def
	}
	return n
}

// boolean reads a flag that is off unless set.
func (r *reader) boolean(name string) bool {
	v := r.str(name, "")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, fmt.Sprintf("%q is not true or false", v))
		return false
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, err2 := strconv.Atoi(v); err2 == nil {
			return time.Duration(n) * time.Second
		}
		r.fail(name, fmt.Sprintf("%q is not a duration such as 30s or 5m", v))
		return def
	}
	if d < 0 {
		r.fail(name, "must not be negative")
		return def
	}
	return d
}

func (r *reader) list(name string) []string {
	v := r.str(name, "")
	if v == "" {
		return nil
	}
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ports parses a comma-separated list of TCP ports.
func (r *reader) ports(name string, def []int) []int {
	items := r.list(name)
	if len(items) == 0 {
		return def
	}
	out := make([]int, 0, len(items))
	for _, s := range items {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			r.fail(name, fmt.Sprintf("%q is not a TCP port", s))
			return def
		}
		out = append(out, n)
	}
	return out
}

// limits parses "model=rpm:10,tpm:250000;model2=rpm:5".
// prices reads a JSON price table laid over model.DefaultPrices.
func (r *reader) prices(name string) model.PriceTable {
	t, err := model.ParsePrices(r.str(name, ""))
	if err != nil {
		r.fail(name, err.Error())
		return model.DefaultPrices()
	}
	return t
}

func (r *reader) limits(name string) map[string]model.Limit {
	v := r.str(name, "")
	if v == "" {
		return nil
	}
	out := map[string]model.Limit{}
	for entry := range strings.SplitSeq(v, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		m, spec, ok := strings.Cut(entry, "=")
		if !ok || m == "" {
			r.fail(name, fmt.Sprintf("%q is not model=rpm:N,tpm:N", entry))
			continue
		}
		var l model.Limit
		for kv := range strings.SplitSeq(spec, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(kv), ":")
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				r.fail(name, fmt.Sprintf("%q: %q is not a count", entry, val))
				continue
			}
			switch k {
			case "rpm":
				l.RPM = n
			case "tpm":
				l.TPM = n
			default:
				r.fail(name, fmt.Sprintf("%q: unknown limit %q (rpm or tpm)", entry, k))
			}
		}
		out[strings.TrimSpace(m)] = l
	}
	return out
}

// operatorKeys parses "name[@project]=key,…".
func (r *reader) operatorKeys(name string) []model.OperatorKey {
	v := r.str(name, "")
	if v == "" {
		return nil
	}
	var out []model.OperatorKey
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, key, ok := strings.Cut(entry, "=")
		if !ok || key == "" {
			r.fail(name, fmt.Sprintf("entry %d is not name[@project]=key", i+1)) // never echo the key
			continue
		}
		n, project, _ := strings.Cut(id, "@")
		out = append(out, model.OperatorKey{Name: n, Project: project, APIKey: key, Priority: i + 1})
	}
	return out
}

// keks parses "kid:base64(32 bytes),…"; the first is active.
func (r *reader) keks(name string) []model.KEK {
	v := r.str(name, "")
	if v == "" {
		return nil
	}
	var out []model.KEK
	for i, entry := range strings.Split(v, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(entry), ":")
		key, err := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || len(key) != 32 {
			r.fail(name, fmt.Sprintf("entry %d is not kid:base64(32 bytes)", i+1))
			continue
		}
		out = append(out, model.KEK{ID: id, Key: key})
	}
	return out
}
