package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/config"
	"github.com/orchable/orchable/console"
	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

// app is the running service: everything serve wires together.
type app struct {
	cfg    *config.Config
	log    *slog.Logger
	pool   *pgxpool.Pool // nil with the PostgREST transport and no DATABASE_URL
	pooler supabase.PoolerMode
	db     supabase.DB
	ids    pipeline.IdentitySource
	// serviceDB and service list due work, expire leases and read the
	// free-pool keys (freepool.go).
	serviceDB supabase.DB
	service   supabase.Identity
	disp      *pipeline.Dispatcher
	sweeper   *pipeline.Sweeper
	janitor   *pipeline.CacheJanitor // nil for the offline provider
	srv       *http.Server
	ln        net.Listener
	console   *console.Console
	closers   []func()
}

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer, ready func(*app)) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	logger := newLogger(stdout, cfg.Log.Level)
	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		return config.EnvNames(err)
	}
	if ready != nil {
		ready(a)
	}
	return a.run(ctx)
}

func newApp(ctx context.Context, cfg *config.Config, logger *slog.Logger) (_ *app, err error) {
	// a is not the named result: every error return sets that to nil, and
	// the deferred close must still reach what was opened.
	a := &app{cfg: cfg, log: logger}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	// Database.
	if cfg.DB.URL != "" {
		a.pooler = supabase.DetectPooler(cfg.DB.URL)
		pcfg, err := supabase.ParsePoolConfig(cfg.DB.URL, a.pooler)
		if err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		pcfg.MaxConns = cfg.DB.MaxConns
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, fmt.Errorf("error connecting to DATABASE_URL: %w", err)
		}
		a.pool = pool
		a.closers = append(a.closers, pool.Close)
	}

	// Data path and identities.
	base := &rls.Base{Logger: logger}
	var service supabase.Identity
	var serviceDB supabase.DB
	switch cfg.Supabase.Transport {
	case config.TransportDirect:
		direct := supabase.NewDirect(a.pool, nil)
		a.db, serviceDB = direct, direct
		service = supabase.ServiceIdentity("")
	default:
		client, err := supabase.New(&supabase.Config{URL: cfg.Supabase.URL, APIKey: cfg.Supabase.AnonKey})
		if err != nil {
			return nil, err
		}
		a.db = client
		creds, err := rls.NewServiceCredentials(&cfg.Auth)
		if err != nil {
			return nil, err
		}
		serviceClient, err := supabase.New(&supabase.Config{URL: cfg.Supabase.URL, APIKey: creds.APIKey().Reveal()})
		if err != nil {
			return nil, err
		}
		serviceDB = serviceClient
		service = supabase.ServiceIdentity(creds.APIKey().Reveal())
	}
	a.serviceDB, a.service = serviceDB, service
	if cfg.Auth.SigningKey.IsSet() || cfg.Auth.JWTSecret.IsSet() {
		minter, err := rls.NewMinter(base, &cfg.Auth)
		if err != nil {
			return nil, err
		}
		a.ids = mintedIdentity{minter}
	} else {
		// Direct transport without a signing key: the claims are all the
		// database needs (the token is never sent anywhere).
		a.ids = claimsIdentity{issuer: cfg.Auth.Issuer()}
	}

	// Model.
	metrics := handlers.NewMetricsWithStageLabels(cfg.HTTP.MetricsStageLabels)
	gen, err := newGenerator(cfg, a, metrics)
	if err != nil {
		return nil, err
	}

	// Engine.
	rcfg := cfg.Pipeline.Runner
	rcfg.Logger = logger
	runner := pipeline.NewRunner(&rcfg, a.db, gen)
	dcfg := cfg.Pipeline.Dispatcher
	dcfg.Logger = logger
	dcfg.Observer = metrics
	a.disp = pipeline.NewDispatcher(&dcfg, a.ids, runner)
	scfg := cfg.Pipeline.Sweeper
	scfg.Logger = logger
	if a.pooler == supabase.PoolerTransaction {
		// LISTEN through a transaction pooler is accepted and then receives
		// nothing: the sweeper and the webhooks carry the wake-ups.
		logger.Warn("orchable: DATABASE_URL is a transaction-mode pooler (port 6543 or pgbouncer=true): LISTEN is off, "+
			"so new work is found by webhooks and by the sweeper every SWEEP_INTERVAL; queries use unnamed statements. "+
			"Use the direct connection or the session pooler (port 5432) to keep LISTEN",
			slog.Duration("sweep_interval", scfg.Interval))
	} else {
		scfg.Listen = a.pool
	}
	a.sweeper = pipeline.NewSweeper(&scfg, serviceDB, service, a.disp)
	if client, ok := gen.(*model.Client); ok {
		a.janitor = pipeline.NewCacheJanitor(&pipeline.CacheJanitorConfig{Logger: logger}, serviceDB, service, a.ids, client)
	}

	// HTTP.
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = handlers.HTTPErrorHandler(logger)
	deps := &handlers.Deps{
		DB:           a.db,
		Wake:         waker{a.disp, a.sweeper},
		Ready:        a.readyCheck(serviceDB, service),
		Metrics:      metrics,
		Logger:       logger,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		MetricsToken: cfg.HTTP.MetricsToken.Reveal(),
		Estimate: &pipeline.EstimateConfig{
			Prices: cfg.Pipeline.Runner.Prices, DefaultModel: cfg.Model.DefaultModel,
			CacheMinTokens: cfg.Model.Cache.MinTokens,
		},

		AllowAnonymousLaunch: cfg.HTTP.AllowAnonymousLaunch,
	}
	if cfg.Supabase.URL != "" {
		verifier, err := rls.NewVerifier(ctx, base, &cfg.Auth)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, verifier.Close)
		deps.UserAuth = verifier.Middleware()
	} else {
		deps.UserAuth = func(echo.HandlerFunc) echo.HandlerFunc {
			return func(echo.Context) error {
				return echo.NewHTTPError(http.StatusServiceUnavailable, "the user API needs SUPABASE_URL (to verify user tokens)")
			}
		}
	}
	if cfg.Auth.WebhookSecret.IsSet() || cfg.Auth.WebhookSigningSecret.IsSet() {
		wv, err := rls.NewWebhookVerifier(base, &cfg.Auth)
		if err != nil {
			return nil, err
		}
		deps.WebhookAuth = wv.Middleware()
	} else {
		deps.WebhookAuth = func(echo.HandlerFunc) echo.HandlerFunc {
			return func(echo.Context) error {
				return echo.NewHTTPError(http.StatusServiceUnavailable, "webhooks are disabled: set WEBHOOK_SECRET or WEBHOOK_SIGNING_SECRET")
			}
		}
		logger.Warn("orchable: no WEBHOOK_SECRET or WEBHOOK_SIGNING_SECRET; the webhook endpoint refuses every call and the sweeper alone finds work")
	}
	handlers.Register(e, deps)
	// The console: static pages that sign in against Supabase Auth and call
	// the user API as the user (no dev sign-in here; see dev).
	a.console = console.Register(e, &console.Config{SupabaseURL: cfg.Supabase.URL, AnonKey: cfg.Supabase.AnonKey})

	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("ORCHABLE_ADDR/PORT: %w", err)
	}
	a.ln = ln
	a.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	return a, nil
}

// newGenerator builds the model: the offline provider, or Gemini through the
// key pool (keys stored in user_api_keys, read as their owner).
func newGenerator(cfg *config.Config, a *app, metrics *handlers.Metrics) (pipeline.Generator, error) {
	mcfg := cfg.Model
	mcfg.Logger = a.log
	if mcfg.Provider == model.ProviderOffline {
		a.log.Warn("orchable: ORCHABLE_MODEL_PROVIDER=offline: no model is called; every task completes with generated filler (for local runs only)")
		return model.NewOffline(&mcfg)
	}
	if len(mcfg.Pool.OperatorKeys) == 0 {
		a.log.Warn("orchable: no GEMINI_API_KEY or GEMINI_OPERATOR_KEYS: tasks run only for owners who stored a Gemini key in user_api_keys; tasks of the others fail with \"no active Gemini API key\"",
			slog.String("default_model", mcfg.DefaultModel))
	}
	cipher, err := model.NewCipher(mcfg.KEKs)
	if err != nil {
		return nil, fmt.Errorf("ORCHABLE_KEKS: %w", err)
	}
	// Explicit cached contents are shared through gemini_caches, as the owner.
	mcfg.Cache.Store = pipeline.NewCacheStore(a.db, a.ids)
	var store model.KeyStore
	if a.pool != nil && cfg.Supabase.Transport == config.TransportDirect {
		store = model.NewPgStore(a.pool)
	} else {
		store = &rpcKeyStore{db: a.db, ids: a.ids}
	}
	store = observedKeyStore{KeyStore: store, metrics: metrics}
	mcfg.Pool.FreePool = freePoolKeys{db: a.serviceDB, service: a.service}
	pool, err := model.NewKeyPool(&mcfg, store, cipher)
	if err != nil {
		return nil, err
	}
	return model.NewClient(&mcfg, pool)
}

func (a *app) readyCheck(db supabase.DB, service supabase.Identity) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if a.pool != nil {
			if err := a.pool.Ping(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
		}
		var rows []map[string]any
		if err := db.Select(ctx, service, "task_batches", supabase.Query{Columns: []string{"id"}, Limit: 1}, &rows); err != nil {
			return fmt.Errorf("data API: %w", err)
		}
		return nil
	}
}

// run serves until ctx ends, then shuts down in reverse order: HTTP intake,
// sweeper, dispatcher (in-flight work finishes within the grace period; the
// rest is released back to plan), database.
func (a *app) run(ctx context.Context) error {
	defer a.close()
	a.disp.Start(ctx)
	a.sweeper.Start(ctx)
	if a.janitor != nil {
		a.janitor.Start(ctx)
		defer a.janitor.Stop()
	}
	errc := make(chan error, 1)
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	a.log.Info("orchable: serving", slog.String("addr", a.ln.Addr().String()),
		slog.String("transport", a.cfg.Supabase.Transport), slog.String("model", a.cfg.Model.Provider),
		slog.String("database_pooler", string(a.pooler)))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("orchable: shutting down", slog.Duration("grace", a.cfg.HTTP.ShutdownGrace))
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.HTTP.ShutdownGrace)
	defer cancel()
	httpCtx, cancelHTTP := context.WithTimeout(grace, 10*time.Second)
	_ = a.srv.Shutdown(httpCtx) // stop intake first
	cancelHTTP()
	a.sweeper.Stop()
	if err := a.disp.Stop(grace); err != nil {
		a.log.Warn("orchable: " + err.Error())
	}
	a.log.Info("orchable: stopped", slog.Int64("tasks_finished", a.disp.Stats().Finished))
	return serveErr
}

func (a *app) close() {
	for _, v := range slices.Backward(a.closers) {
		v()
	}
	a.closers = nil
}

// waker lets the webhook handler hand work to the dispatcher and sweeper.
type waker struct {
	d *pipeline.Dispatcher
	s *pipeline.Sweeper
}

func (w waker) Notify(user uuid.UUID) bool { return w.d.Notify(user) }
func (w waker) Kick()                      { w.s.Kick() }

// mintedIdentity acts as a user with a minted short-lived token.
type mintedIdentity struct{ m *rls.Minter }

func (m mintedIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	tok, err := m.m.Mint(user)
	if err != nil {
		return supabase.Identity{}, err
	}
	return supabase.Identity{Token: tok.JWT, Claims: tok.ClaimsJSON}, nil
}

// claimsIdentity acts as a user by claims alone; only the direct transport
// (which never forwards a token) can use it.
type claimsIdentity struct {
	issuer string
}

func (c claimsIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	b, err := json.Marshal(map[string]any{
		"sub": user.String(), "role": "authenticated", "aud": "authenticated", "aal": "aal1",
		"iss": c.issuer, "is_anonymous": false, "exp": time.Now().Add(10 * time.Minute).Unix(),
	})
	return supabase.Identity{Claims: b}, err
}

// rpcKeyStore is the key pool's storage over the data path (PostgREST), as
// the key's owner: the same SQL functions PgStore calls directly.
type rpcKeyStore struct {
	db  supabase.DB
	ids pipeline.IdentitySource
}

func (s *rpcKeyStore) UsableKeys(ctx context.Context, user uuid.UUID, modelID string) ([]model.StoredKey, error) {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID                  uuid.UUID  `json:"id"`
		KeyName             string     `json:"key_name"`
		APIKeyEncrypted     string     `json:"api_key_encrypted"`
		ModelPreference     string     `json:"model_preference"`
		Priority            int        `json:"priority"`
		Project             *string    `json:"project"`
		LastUsedAt          *time.Time `json:"last_used_at"`
		BlockedUntil        *time.Time `json:"blocked_until"`
		ProjectBlockedUntil *time.Time `json:"project_blocked_until"`
	}
	if err := s.db.RPC(supabase.Idempotent(ctx), id, "usable_api_keys", map[string]any{"p_model": modelID}, &rows); err != nil {
		return nil, fmt.Errorf("error loading usable keys: %w", err)
	}
	out := make([]model.StoredKey, 0, len(rows))
	for _, r := range rows {
		k := model.StoredKey{ID: r.ID, Name: r.KeyName, Ciphertext: r.APIKeyEncrypted, ModelPreference: r.ModelPreference, Priority: r.Priority}
		if r.Project != nil {
			k.Project = *r.Project
		}
		if r.LastUsedAt != nil {
			k.LastUsedAt = *r.LastUsedAt
		}
		if r.BlockedUntil != nil {
			k.BlockedUntil = *r.BlockedUntil
		}
		if r.ProjectBlockedUntil != nil {
			k.ProjectBlockedUntil = *r.ProjectBlockedUntil
		}
		out = append(out, k)
	}
	return out, nil
}

func (s *rpcKeyStore) RecordOutcome(ctx context.Context, user uuid.UUID, o model.Outcome) error {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return err
	}
	args := map[string]any{
		"p_key_id": o.KeyID, "p_model": o.Model, "p_outcome": o.Result,
		"p_error_code": nilIfEmpty(o.ErrorCode), "p_blocked_until": nilIfZero(o.BlockedUntil),
		"p_reason": nilIfEmpty(firstNonEmpty(o.Reason, o.ErrorMessage)), "p_tokens": o.Tokens,
		"p_task_id": nilIfNilUUID(o.TaskID), "p_latency_ms": o.Latency.Milliseconds(),
	}
	if err := s.db.RPC(ctx, id, "record_key_outcome", args, nil); err != nil {
		return fmt.Errorf("error recording key outcome: %w", err)
	}
	return nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nilIfZero(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func nilIfNilUUID(u uuid.UUID) any {
	if u == uuid.Nil {
		return nil
	}
	return u
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// observedKeyStore feeds key outcomes to the key-health metrics.
type observedKeyStore struct {
	model.KeyStore

	metrics *handlers.Metrics
}

func (s observedKeyStore) RecordOutcome(ctx context.Context, user uuid.UUID, o model.Outcome) error {
	s.metrics.KeyOutcome(o)
	return s.KeyStore.RecordOutcome(ctx, user, o)
}
