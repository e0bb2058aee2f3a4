package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// claimsIdentity acts as a user by claims alone (what the service does with
// the direct transport and no signing key). Claims are built once per user.
type claimsIdentity struct {
	mu    sync.Mutex
	cache map[uuid.UUID]supabase.Identity
}

func newClaimsIdentity() *claimsIdentity {
	return &claimsIdentity{cache: map[uuid.UUID]supabase.Identity{}}
}

func (c *claimsIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.cache[user]; ok {
		return id, nil
	}
	b, err := json.Marshal(map[string]any{
		"sub": user.String(), "role": "authenticated", "aud": "authenticated", "aal": "aal1", "is_anonymous": false,
	})
	if err != nil {
		return supabase.Identity{}, fmt.Errorf("error encoding claims: %w", err)
	}
	id := supabase.Identity{Claims: b}
	c.cache[user] = id
	return id, nil
}

// engineConfig selects how an engine is built.
type engineConfig struct {
	Workers    int
	ClaimBatch int
	DBCalls    int                     // RunnerConfig.DBCalls (0: the engine default)
	Linger     time.Duration           // RunnerConfig.CompletionLinger (0: the engine default)
	WriteQueue int                     // DispatcherConfig.WriteQueue (0: the engine default)
	DB         supabase.DB             // default: Direct over the pool
	IDs        pipeline.IdentitySource // default: claims only
	Service    supabase.Identity
	Listen     bool // LISTEN for orchable_wakeup (the NOTIFY path)
	Sweep      time.Duration
	// Wrap, when set, wraps the default direct transport (to observe calls).
	Wrap func(supabase.DB) supabase.DB
}

// engine is the service's pipeline: runner, dispatcher and sweeper.
type engine struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	Direct  *supabase.Direct
	Disp    *pipeline.Dispatcher
	Sweeper *pipeline.Sweeper
}

func newEngine(pool *pgxpool.Pool, gen pipeline.Generator, cfg engineConfig, log *slog.Logger) *engine {
	e := &engine{pool: pool, log: log}
	db := cfg.DB
	if db == nil {
		e.Direct = supabase.NewDirect(pool, engineDirectConfig())
		db = e.Direct
		if cfg.Wrap != nil {
			db = cfg.Wrap(db)
		}
		cfg.Service = supabase.ServiceIdentity("")
	}
	ids := cfg.IDs
	if ids == nil {
		ids = newClaimsIdentity()
	}
	arch := baseservice.NewArchetype(log)
	runner := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "bench", MaxRegenerations: -1, DBCalls: cfg.DBCalls, CompletionLinger: cfg.Linger, Archetype: arch}, db, gen)
	e.Disp = pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: cfg.Workers, ClaimBatch: cfg.ClaimBatch, WriteQueue: cfg.WriteQueue, Archetype: arch}, ids, runner)
	scfg := &pipeline.SweeperConfig{Interval: cfg.Sweep, Archetype: arch}
	if cfg.Listen {
		scfg.Listen = pool
	}
	e.Sweeper = pipeline.NewSweeper(scfg, db, cfg.Service, e.Disp)
	return e
}

// start starts the engine as the service does (serve.go): its pool's
// connections are warmed first (warmEngineConns).
func (e *engine) start(ctx context.Context) {
	if err := warmEngineConns(ctx, e.pool); err != nil {
		e.log.Warn("bench: warming the engine's connections failed", slog.String("error", err.Error()))
	}
	e.run(ctx)
}

// run starts the engine on a pool already warmed (by the cost meter's
// startCost or warmEngineConns), so that a measured window holds no
// warm-up.
func (e *engine) run(ctx context.Context) {
	e.Disp.Start(ctx)
	e.Sweeper.Start(ctx)
}

func (e *engine) stop(ctx context.Context) {
	e.Sweeper.Stop()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = e.Disp.Stop(sctx)
}

// waitFinished waits until the dispatcher has finished n tasks (or ctx ends
// or nothing moves for stall).
func (e *engine) waitFinished(ctx context.Context, n int64, stall time.Duration) error {
	last, lastMove := int64(-1), time.Now()
	for {
		f := e.Disp.Stats().Finished
		if f >= n {
			return nil
		}
		if f != last {
			last, lastMove = f, time.Now()
		} else if time.Since(lastMove) > stall {
			return fmt.Errorf("stalled at %d/%d finished tasks", f, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// warmEngineConns warms every connection of the bench pool as the service
// warms its own at start (supabase.Direct.Warm). The PostgREST test server
// shares this pool, so both transports start warm, as a long-running
// PostgREST's pool is.
func warmEngineConns(ctx context.Context, pool *pgxpool.Pool) error {
	return supabase.NewDirect(pool, nil).Warm(ctx, int(pool.Config().MaxConns))
}

// offlineModel is the offline provider with zero latency.
func offlineModel() (*model.Offline, error) {
	m, err := model.NewOffline(&model.Config{Provider: model.ProviderOffline})
	if err != nil {
		return nil, fmt.Errorf("error building the offline model: %w", err)
	}
	return m, nil
}

// stampModel is a model stub that sleeps (mean ± jitter, uniform), answers
// {"items": [0..9]} and records when each task's call started and answered.
type stampModel struct {
	mean, jitter time.Duration
	mu           sync.Mutex
	started      map[uuid.UUID]time.Time
	answered     map[uuid.UUID]time.Time
	inFlight     int
	maxInFlight  int
}

func newStampModel(mean, jitter time.Duration) *stampModel {
	return &stampModel{mean: mean, jitter: jitter, started: map[uuid.UUID]time.Time{}, answered: map[uuid.UUID]time.Time{}}
}

func (m *stampModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	now := time.Now()
	m.mu.Lock()
	m.started[req.TaskID] = now
	m.inFlight++
	m.maxInFlight = max(m.maxInFlight, m.inFlight)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.inFlight--
		m.mu.Unlock()
	}()
	d := m.mean
	if m.jitter > 0 {
		d += time.Duration(int64(req.TaskID[0])<<8|int64(req.TaskID[1]))*(2*m.jitter)/65536 - m.jitter
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return model.Response{}, ctx.Err()
		case <-t.C:
		}
	}
	m.mu.Lock()
	m.answered[req.TaskID] = time.Now()
	m.mu.Unlock()
	return model.Response{Output: json.RawMessage(`{"items":[0,1,2,3,4,5,6,7,8,9]}`), Usage: model.Usage{PromptTokens: 10, CandidatesTokens: 10, TotalTokens: 20}}, nil
}

func (m *stampModel) startedAt(id uuid.UUID) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.started[id]
	return t, ok
}

func (m *stampModel) answeredAt(id uuid.UUID) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.answered[id]
	return t, ok
}
