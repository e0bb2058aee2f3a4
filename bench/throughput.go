package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/postgresttest"
)

const noopSchema = `{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`

// noopSize is throughput-noop's task count: -tasks, capped by -quick.
func (e *env) noopSize() int { return e.o.Tasks }

// throughputNoop: n pre-inserted one-stage tasks, the offline model with zero
// latency, direct transport; tasks/s against River's no-op jobs/s with the
// same workers, pool and server. The tasks are inserted alone, like River's
// jobs; at the first worker count the same work is measured again as roots
// launched in a batch (batch, launch and root set, the front end's shape),
// against the same River run.
func throughputNoop(ctx context.Context, e *env) ([]Figure, error) {
	n := e.noopSize()
	var figs, costs, floors, launched []Figure
	for i, w := range e.o.Workers {
		orch, err := orchNoop(ctx, e, n, w, "direct", true, false)
		if err != nil {
			return nil, err
		}
		var base riverRun
		if !e.o.SkipBaseline {
			if base, err = riverThroughput(ctx, e, n, w, true); err != nil {
				return nil, err
			}
		}
		figs = append(figs,
			Figure{Name: fmt.Sprintf("tasks/s, %d workers, %d tasks", w, n), Unit: "tasks/s", Value: orch.rate, Baseline: base.rate,
				BaselineName: "River jobs/s", HigherIsBetter: true, Target: "≥ 1.0 × River", Met: boolPtr(base.rate > 0 && orch.rate >= base.rate)},
			Figure{Name: fmt.Sprintf("round trips/task, %d workers", w), Unit: "trips", Value: orch.trips, Baseline: 2,
				BaselineName: "target", Target: "≤ 2", Met: boolPtr(orch.trips <= 2)},
		)
		costs = append(costs, costFigures(fmt.Sprintf("%d workers", w), *orch.cost, n, base.cost, n)...)
		if !e.o.SkipFloor {
			floor, err := floorRunQueue(ctx, e, n, w, 1)
			if err != nil {
				return nil, err
			}
			floors = append(floors, floorFigures(fmt.Sprintf("%d workers", w), n, floor, orch, base)...)
		}
		if i == 0 {
			roots, err := orchNoop(ctx, e, n, w, "direct", true, true)
			if err != nil {
				return nil, err
			}
			launched = launchedFigures(w, n, roots, base)
		}
	}
	return append(append(append(figs, costs...), floors...), launched...), nil
}

// launchedFigures are the headline figures of throughput-noop on launched
// roots, against River's run at the same worker count.
func launchedFigures(w, n int, orch orchRun, base riverRun) []Figure {
	var rc dbCost
	if base.cost != nil {
		rc = *base.cost
	}
	c := *orch.cost
	label := fmt.Sprintf("%d workers, launched roots", w)
	return []Figure{
		{Name: fmt.Sprintf("tasks/s, %d workers, %d launched roots (batch, launch, root set)", w, n), Unit: "tasks/s", Value: orch.rate,
			Baseline: base.rate, BaselineName: "River jobs/s", HigherIsBetter: true},
		{Name: "DB CPU/task, bench DB backends, " + label, Unit: "ms", Note: c.CPUNA,
			Value: ms(c.DBCPU) / float64(n), Baseline: ms(rc.DBCPU) / float64(n), BaselineName: "River per job"},
		{Name: "bench process CPU/task (engine; River's client), " + label, Unit: "µs",
			Value: 1000 * ms(c.ProcCPU) / float64(n), Baseline: 1000 * ms(rc.ProcCPU) / float64(n), BaselineName: "River per job"},
		{Name: "page faults/task, bench DB backends, " + label, Unit: "faults", Note: c.CPUNA,
			Value: perTask(float64(c.DBFaults), n), Baseline: perTask(float64(rc.DBFaults), n), BaselineName: "River per job"},
		{Name: "WAL/task, bench DB's records (pg_waldump), " + label, Unit: "bytes", Note: c.WALNA,
			Value: perTask(float64(c.DBWAL.Total), n), Baseline: perTask(float64(rc.DBWAL.Total), n), BaselineName: "River per job"},
		{Name: "index entries written/task (leaf inserts in the WAL), " + label, Unit: "entries", Note: c.WALNA,
			Value: perTask(float64(c.DBWAL.Entries()), n), Baseline: perTask(float64(rc.DBWAL.Entries()), n), BaselineName: "River per job"},
	}
}

// noopQueue is a fresh database with one user, the noop template and n
// queued noop tasks of the user, analyzed: inserted alone, or with total >
// 0 as the roots of one batch of that total (launched, the front end's
// shape). The caller closes it.
func noopQueue(ctx context.Context, e *env, n, total int) (*database, uuid.UUID, error) {
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return nil, uuid.Nil, err
	}
	fail := func(err error) (*database, uuid.UUID, error) {
		db.close()
		return nil, uuid.Nil, err
	}
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return fail(err)
	}
	if err := createTemplates(ctx, db.Pool, user, stageDef{ID: "noop", Key: "noop", Prompt: "Answer with ok.", OutputSchema: noopSchema}); err != nil {
		return fail(err)
	}
	var batch uuid.UUID
	if total > 0 {
		if err := db.Pool.QueryRow(ctx, `insert into public.task_batches (name, status, created_by, launch_id, total_tasks)
			values ('noop', 'processing', $1, gen_random_uuid(), $2) returning id`, user, total).Scan(&batch); err != nil {
			return fail(fmt.Errorf("error creating the batch: %w", err))
		}
	}
	if _, err := copyTasksIn(ctx, db.Pool, []uuid.UUID{user}, "noop", "noop", "plan", n, batch); err != nil {
		return fail(err)
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks", "public.prompt_templates", "public.task_batches"); err != nil {
		return fail(err)
	}
	return db, user, nil
}

// orchRun is what one orchable throughput run measured.
type orchRun struct {
	rate  float64 // tasks/s
	trips float64 // round trips per task (direct transport only)
	cost  *dbCost // nil unless metered
}

// orchNoop runs n no-op tasks through the engine over the transport
// ("direct" or "postgrest") and returns tasks/s, round trips per task
// (direct only) and, with meter, what the work cost the database. The
// tasks are inserted alone, or with launched as roots of one batch.
func orchNoop(ctx context.Context, e *env, n, workers int, transport string, meter, launched bool) (orchRun, error) {
	gen, err := offlineModel()
	if err != nil {
		return orchRun{}, err
	}
	return orchWork(ctx, e, n, workers, transport, meter, launched, gen)
}

// orchWork is orchNoop with the model gen (the offline model there).
func orchWork(ctx context.Context, e *env, n, workers int, transport string, meter, launched bool, gen pipeline.Generator) (orchRun, error) {
	var out orchRun
	total := 0
	if launched {
		total = n
	}
	db, _, err := noopQueue(ctx, e, n, total)
	if err != nil {
		return out, err
	}
	defer db.close()
	cfg := engineConfig{Workers: workers, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true}
	if transport == "postgrest" {
		stopREST, err := postgrestTransport(ctx, db, &cfg)
		if err != nil {
			return out, err
		}
		defer stopREST()
	}
	var m *costMeter
	if meter {
		if err := foldCounters(ctx, db); err != nil {
			return out, err
		}
		if m, err = e.startCost(ctx, db); err != nil {
			return out, err
		}
	}
	eng := newEngine(db.Pool, gen, cfg, e.log)
	if !meter {
		// Warmed as at the service's start, outside the window (startCost
		// warms otherwise).
		if err := warmEngineConns(ctx, db.Pool); err != nil {
			return out, err
		}
	}
	start := time.Now()
	eng.run(ctx)
	err = eng.waitFinished(ctx, int64(n), 30*time.Second)
	elapsed := time.Since(start)
	eng.stop(ctx)
	if err != nil {
		return out, fmt.Errorf("orchable %s, %d workers: %w", transport, workers, err)
	}
	if m != nil {
		c, err := m.stop(ctx)
		if err != nil {
			return out, err
		}
		out.cost = &c
	}
	if eng.Direct != nil {
		out.trips = float64(eng.Direct.RoundTrips()) / float64(n)
	}
	out.rate = float64(n) / elapsed.Seconds()
	return out, nil
}

// throughputPipeline: roots of a 1:1 → 1:N(10) → N:1 pipeline (13 tasks per
// root), offline model, direct transport, 100 workers; tasks/s against
// River's no-op jobs/s for the same number of jobs, and round trips per task.
func throughputPipeline(ctx context.Context, e *env) ([]Figure, error) {
	roots := max(10, e.o.Tasks/20) // 1,000 roots (13,000 tasks) at the default size
	if e.o.Quick {
		roots = 20
	}
	const perRoot = 13
	workers := 100
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return nil, err
	}
	defer db.close()
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	if err := createPipelineTemplates(ctx, db, user, ""); err != nil {
		return nil, err
	}
	ids := newClaimsIdentity()
	id, _ := ids.Identity(ctx, user)
	direct := supabase.NewDirect(db.Pool, nil)
	for i := 0; i < roots; i += 500 {
		rows := make([]map[string]any, 0, 500)
		for j := i; j < min(roots, i+500); j++ {
			rows = append(rows, map[string]any{"n": j})
		}
		if err := direct.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": "p1", "p_rows": rows}, nil); err != nil {
			return nil, fmt.Errorf("error launching the pipeline: %w", err)
		}
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks", "public.prompt_templates", "public.task_batches"); err != nil {
		return nil, err
	}
	gen, err := offlineModel()
	if err != nil {
		return nil, err
	}
	if err := foldCounters(ctx, db); err != nil {
		return nil, err
	}
	m, err := e.startCost(ctx, db)
	if err != nil {
		return nil, err
	}
	eng := newEngine(db.Pool, gen, engineConfig{Workers: workers, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true}, e.log)
	total := int64(roots * perRoot)
	start := time.Now()
	eng.run(ctx) // startCost warmed the pool
	err = eng.waitFinished(ctx, total, 30*time.Second)
	elapsed := time.Since(start)
	eng.stop(ctx)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	cost, err := m.stop(ctx)
	if err != nil {
		return nil, err
	}
	var merged int
	if err := db.Pool.QueryRow(ctx, "select count(*) from public.ai_tasks where stage_key = 'p4' and status = 'completed'").Scan(&merged); err != nil {
		return nil, fmt.Errorf("error counting merges: %w", err)
	}
	if merged != roots {
		return nil, fmt.Errorf("pipeline: %d merges completed, want %d", merged, roots)
	}
	rate := float64(total) / elapsed.Seconds()
	rt := float64(eng.Direct.RoundTrips()) / float64(total)
	var base riverRun
	if !e.o.SkipBaseline {
		if base, err = riverThroughput(ctx, e, int(total), workers, true); err != nil {
			return nil, err
		}
	}
	// The floor of a pipeline task: a 1:1 chain of 13 per root, each
	// successor inserted by its parent's completion (floor.go).
	var floors []Figure
	if !e.o.SkipFloor {
		floor, err := floorRunQueue(ctx, e, int(total), workers, perRoot)
		if err != nil {
			return nil, err
		}
		pipe := orchRun{rate: rate, cost: &cost}
		floorLabel := fmt.Sprintf("%d workers, chains of %d (each successor inserted by its parent's completion)", workers, perRoot)
		floors = floorFigures(floorLabel, int(total), floor, pipe, base)
	}
	return append(append([]Figure{
		{Name: fmt.Sprintf("tasks/s, %d roots × 13 tasks, %d workers", roots, workers), Unit: "tasks/s", Value: rate, Baseline: base.rate,
			BaselineName: "River no-op jobs/s", HigherIsBetter: true},
		{Name: "round trips/task", Unit: "trips", Value: rt, Baseline: 2, BaselineName: "target", Target: "≤ 2", Met: boolPtr(rt <= 2)},
	}, costFigures("pipeline task vs River no-op job", cost, int(total), base.cost, int(total))...),
		floors...), nil
}

// throughputPostgREST: throughput-noop through the PostgREST transport and
// the PostgREST test server, against the direct transport in the same run.
//
// Each transport works -tasks/2 tasks twice, in the order PostgREST, direct,
// direct, PostgREST, so that a drift of the machine during the run weighs on
// both alike; each rate is the transport's tasks over its time in both
// windows. With -tasks/10 worked once each, the window was a fifth of a
// second on these machines and the ratio spread 0.64–0.98 between runs
// (docs/performance.md, thirty-second round).
func throughputPostgREST(ctx context.Context, e *env) ([]Figure, error) {
	n := max(200, e.o.Tasks/2)
	const workers = 100
	var secs [2]float64 // PostgREST, direct: seconds of work
	for _, i := range []int{0, 1, 1, 0} {
		transport := [2]string{"postgrest", "direct"}[i]
		r, err := orchNoop(ctx, e, n, workers, transport, false, false)
		if err != nil {
			return nil, err
		}
		secs[i] += float64(n) / r.rate
	}
	rest, direct := float64(2*n)/secs[0], float64(2*n)/secs[1]
	return []Figure{{Name: fmt.Sprintf("tasks/s via PostgREST, %d workers, 2 × %d tasks", workers, n), Unit: "tasks/s", Value: rest,
		Baseline: direct, BaselineName: "direct tasks/s", HigherIsBetter: true, Target: "≥ 0.9 × direct", Met: boolPtr(rest >= 0.9*direct),
		Note: "each transport twice, in the order PostgREST, direct, direct, PostgREST"}}, nil
}

// postgrestTransport starts the PostgREST test server on loopback and points
// cfg at it: the user transport with minted HS256 tokens, and the service
// transport with a service_role token.
func postgrestTransport(ctx context.Context, db *database, cfg *engineConfig) (func(), error) {
	secret := []byte(randSuffix() + randSuffix() + randSuffix() + randSuffix())
	const anonKey, serviceKey = "bench-anon-key", "bench-service-key"
	srv, err := postgresttest.New(ctx, db.Pool, &postgresttest.Config{JWTSecret: secret, APIKeys: []string{anonKey, serviceKey}})
	if err != nil {
		return nil, fmt.Errorf("error starting the PostgREST test server: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("error listening: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	stop := func() {
		_ = hs.Close()
		srv.Close()
	}
	url := "http://" + ln.Addr().String()
	user, err := supabase.New(&supabase.Config{URL: url, APIKey: anonKey})
	if err != nil {
		stop()
		return nil, err
	}
	service, err := supabase.New(&supabase.Config{URL: url, APIKey: serviceKey})
	if err != nil {
		stop()
		return nil, err
	}
	minter, err := rls.NewMinter(nil, &rls.Config{SupabaseURL: url, JWTSecret: rls.Secret(secret), TokenTTL: 10 * time.Minute})
	if err != nil {
		stop()
		return nil, fmt.Errorf("error building the minter: %w", err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "service_role", "iss": "supabase"}).SignedString(secret)
	if err != nil {
		stop()
		return nil, fmt.Errorf("error signing the service token: %w", err)
	}
	// The engine's user calls go to the user client; due_tasks and the
	// other service calls to the service client.
	cfg.DB = &splitDB{user: user, service: service}
	cfg.IDs = mintedIdentity{minter}
	cfg.Service = supabase.Identity{Token: tok, Claims: json.RawMessage(`{"role":"service_role"}`)}
	return stop, nil
}

// splitDB sends service-role calls (identified by their role claim) to the
// client holding the secret API key, like the service's two clients.
type splitDB struct{ user, service supabase.DB }

func (s *splitDB) pick(id supabase.Identity) supabase.DB {
	if string(id.Claims) == `{"role":"service_role"}` {
		return s.service
	}
	return s.user
}

func (s *splitDB) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	return s.pick(id).RPC(ctx, id, fn, args, out)
}

func (s *splitDB) Select(ctx context.Context, id supabase.Identity, table string, q supabase.Query, out any) error {
	return s.pick(id).Select(ctx, id, table, q, out)
}

type mintedIdentity struct{ m *rls.Minter }

func (m mintedIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	tok, err := m.m.Mint(user)
	if err != nil {
		return supabase.Identity{}, fmt.Errorf("error minting a token: %w", err)
	}
	return supabase.Identity{Token: tok.JWT, Claims: tok.ClaimsJSON}, nil
}

var _ pipeline.IdentitySource = mintedIdentity{}
