package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/metrics"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/baseservice"
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
	cfg *config.Config
	log *slog.Logger
	// arch is the logger and the clock every long-lived service is
	// initialised from; built once here.
	arch   *baseservice.Archetype
	pool   *pgxpool.Pool // nil with the PostgREST transport and no DATABASE_URL
	pooler supabase.PoolerMode
	db     supabase.DB
	ids    *supabase.UserIdentities
	// serviceDB and service list due work, expire leases (sweeper, cache
	// janitor, readiness) and read the free-pool keys; see
	// supabase.ServiceIdentity.
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
	a := &app{cfg: cfg, log: logger, arch: baseservice.NewArchetype(logger)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.openDatabase(ctx); err != nil {
		return nil, err
	}
	if err := a.openDataPath(); err != nil {
		return nil, err
	}
	if a.ids, err = supabase.NewUserIdentities(a.arch, &cfg.Auth); err != nil {
		return nil, err
	}
	metrics := handlers.NewMetricsWithStageLabels(cfg.HTTP.MetricsStageLabels)
	gen, err := newGenerator(cfg, a, metrics)
	if err != nil {
		return nil, err
	}
	a.buildEngine(gen, metrics)
	if err := a.buildHTTP(ctx, metrics); err != nil {
		return nil, err
	}
	return a, nil
}

// openDatabase opens the pgx pool of DATABASE_URL, if set.
func (a *app) openDatabase(ctx context.Context) error {
	cfg := a.cfg
	if cfg.DB.URL != "" {
		a.pooler = supabase.DetectPooler(cfg.DB.URL)
		pcfg, err := supabase.ParsePoolConfig(cfg.DB.URL, a.pooler)
		if err != nil {
			return fmt.Errorf("DATABASE_URL: %w", err)
		}
		pcfg.MaxConns = cfg.DB.MaxConns
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return fmt.Errorf("error connecting to DATABASE_URL: %w", err)
		}
		a.pool = pool
		a.closers = append(a.closers, pool.Close)
	}
	return nil
}

// openDataPath builds the configured transport (a.db) and the service
// identity with the database it is used on.
func (a *app) openDataPath() error {
	cfg := a.cfg
	switch cfg.Supabase.Transport {
	case config.TransportDirect:
		direct := supabase.NewDirect(a.pool, &supabase.DirectConfig{Archetype: a.arch})
		a.db, a.serviceDB = direct, direct
		a.service = supabase.ServiceIdentity("")
	default:
		client, err := supabase.New(&supabase.Config{URL: cfg.Supabase.URL, APIKey: cfg.Supabase.AnonKey})
		if err != nil {
			return err
		}
		a.db = client
		creds, err := rls.NewServiceCredentials(&cfg.Auth)
		if err != nil {
			return err
		}
		serviceClient, err := supabase.New(&supabase.Config{URL: cfg.Supabase.URL, APIKey: creds.APIKey().Reveal()})
		if err != nil {
			return err
		}
		a.serviceDB = serviceClient
		a.service = supabase.ServiceIdentity(creds.APIKey().Reveal())
	}
	return nil
}

// buildEngine builds the runner, dispatcher, sweeper and cache janitor.
func (a *app) buildEngine(gen pipeline.Generator, metrics *handlers.Metrics) {
	cfg, logger := a.cfg, a.log
	rcfg := cfg.Pipeline.Runner
	rcfg.Archetype = a.arch
	runner := pipeline.NewRunner(&rcfg, a.db, gen)
	dcfg := cfg.Pipeline.Dispatcher
	dcfg.Archetype = a.arch
	dcfg.Observer = metrics
	a.disp = pipeline.NewDispatcher(&dcfg, a.ids, runner)
	scfg := cfg.Pipeline.Sweeper
	scfg.Archetype = a.arch
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
	a.sweeper = pipeline.NewSweeper(&scfg, a.serviceDB, a.service, a.disp)
	if client, ok := gen.(*model.Client); ok {
		a.janitor = pipeline.NewCacheJanitor(&pipeline.CacheJanitorConfig{Archetype: a.arch}, a.serviceDB, a.service, a.ids, client)
	}
}

// buildHTTP builds the Echo router (user API, webhooks, console) and the
// listener.
func (a *app) buildHTTP(ctx context.Context, metrics *handlers.Metrics) error {
	cfg, logger := a.cfg, a.log
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = handlers.HTTPErrorHandler(logger)
	deps := &handlers.Deps{
		DB:           a.db,
		Wake:         waker{a.disp, a.sweeper},
		Ready:        a.readyCheck(),
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
		verifier, err := rls.NewVerifier(ctx, a.arch, &cfg.Auth)
		if err != nil {
			return err
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
		wv, err := rls.NewWebhookVerifier(a.arch, &cfg.Auth)
		if err != nil {
			return err
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
		return fmt.Errorf("ORCHABLE_ADDR/PORT: %w", err)
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
	return nil
}

// newGenerator builds the model: the offline provider, or Gemini through the
// key pool (keys stored in user_api_keys, read as their owner).
func newGenerator(cfg *config.Config, a *app, metrics *handlers.Metrics) (pipeline.Generator, error) {
	mcfg := cfg.Model
	mcfg.Archetype = a.arch
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
		store = model.NewRPCStore(a.db, a.ids)
	}
	store = observedKeyStore{KeyStore: store, metrics: metrics}
	mcfg.Pool.FreePool = model.NewRPCPoolStore(a.serviceDB, a.service)
	pool, err := model.NewKeyPool(&mcfg, store, cipher)
	if err != nil {
		return nil, err
	}
	return model.NewClient(&mcfg, pool)
}

func (a *app) readyCheck() func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if a.pool != nil {
			if err := a.pool.Ping(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
		}
		var rows []map[string]any
		if err := a.serviceDB.Select(ctx, a.service, "task_batches", supabase.Query{Columns: []string{"id"}, Limit: 1}, &rows); err != nil {
			return fmt.Errorf("data API: %w", err)
		}
		return nil
	}
}

// warm opens the pool's connections and makes the engine's first calls on
// each before the engine starts (supabase.Direct.Warm), so the first tasks
// after a start do not wait for every connection's start and compilation.
// Only the direct transport has connections of its own; a failure is
// logged and the engine starts unwarmed.
func (a *app) warm(ctx context.Context) {
	w, ok := a.db.(interface {
		Warm(ctx context.Context, n int) error
	})
	if !ok || a.pool == nil {
		return
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := int(a.pool.Config().MaxConns)
	if err := w.Warm(wctx, n); err != nil {
		a.log.Warn("orchable: warming the database connections failed; starting unwarmed", slog.String("error", err.Error()))
		return
	}
	a.log.Info("orchable: database connections warmed", slog.Int("connections", n), slog.Duration("took", time.Since(start)))
}

// run serves until ctx ends, then shuts down in reverse order: HTTP intake,
// sweeper, dispatcher (in-flight work finishes within the grace period; the
// rest is released back to plan), database.
func (a *app) run(ctx context.Context) error {
	defer a.close()
	a.warm(ctx)
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
		slog.String("database_pooler", string(a.pooler)), slog.Group("gc", runtimeGCAttrs()...))

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

// observedKeyStore feeds key outcomes to the key-health metrics.
type observedKeyStore struct {
	model.KeyStore

	metrics *handlers.Metrics
}

func (s observedKeyStore) RecordOutcome(ctx context.Context, user uuid.UUID, o model.Outcome) error {
	s.metrics.KeyOutcome(o)
	return s.KeyStore.RecordOutcome(ctx, user, o)
}

// runtimeGCAttrs are the collector's settings in force (config.TuneRuntime's
// or the environment's), for the start-up log.
func runtimeGCAttrs() []any {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	attrs := []any{slog.Uint64("gogc", s[0].Value.Uint64())}
	if limit := s[1].Value.Uint64(); limit < math.MaxInt64 {
		attrs = append(attrs, slog.String("memory_limit", fmt.Sprintf("%.0f MiB", float64(limit)/(1<<20))))
	}
	return attrs
}
