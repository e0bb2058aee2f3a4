package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/rls"
)

// stageOverhead: 50 concurrent 5-stage 1:1 pipelines with a model stub of
// 800 ± 200 ms; the time from a stage's model answer to its successor's
// model call (complete_task, successor visible, hint, claim, render).
func stageOverhead(ctx context.Context, e *env) ([]Figure, error) {
	pipelines, stages := 50, 5
	if e.o.Quick {
		pipelines, stages = 10, 3
	}
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return nil, err
	}
	defer db.close()
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	var defs []stageDef
	for i := 1; i <= stages; i++ {
		d := stageDef{ID: fmt.Sprintf("s%d", i), Key: fmt.Sprintf("s%d", i), Prompt: "Stage.", Config: map[string]any{"cardinality": "1:1"}}
		if i < stages {
			d.Next = []string{fmt.Sprintf("s%d", i+1)}
		}
		defs = append(defs, d)
	}
	if err := createTemplates(ctx, db.Pool, user, defs...); err != nil {
		return nil, err
	}
	gen := newStampModel(800*time.Millisecond, 200*time.Millisecond)
	eng := newEngine(db.Pool, gen, engineConfig{Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true}, e.log)
	ids := newClaimsIdentity()
	id, _ := ids.Identity(ctx, user)
	rows := make([]map[string]any, pipelines)
	for i := range rows {
		rows[i] = map[string]any{"n": i}
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks", "public.prompt_templates"); err != nil {
		return nil, err
	}
	eng.start(ctx)
	if err := eng.Direct.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": "s1", "p_rows": rows}, nil); err != nil {
		eng.stop(ctx)
		return nil, fmt.Errorf("error launching: %w", err)
	}
	err = eng.waitFinished(ctx, int64(pipelines*stages), 30*time.Second)
	eng.stop(ctx)
	if err != nil {
		return nil, fmt.Errorf("stage-overhead: %w", err)
	}
	pairs, err := db.Pool.Query(ctx, "select id, parent_task_id from public.ai_tasks where parent_task_id is not null")
	if err != nil {
		return nil, fmt.Errorf("error reading successors: %w", err)
	}
	var lat []time.Duration
	for pairs.Next() {
		var child, parent uuid.UUID
		if err := pairs.Scan(&child, &parent); err != nil {
			return nil, fmt.Errorf("error reading successors: %w", err)
		}
		a, ok1 := gen.answeredAt(parent)
		s, ok2 := gen.startedAt(child)
		if ok1 && ok2 {
			lat = append(lat, s.Sub(a))
		}
	}
	if err := pairs.Err(); err != nil {
		return nil, fmt.Errorf("error reading successors: %w", err)
	}
	if len(lat) < pipelines*(stages-1) {
		return nil, fmt.Errorf("stage-overhead: %d transitions measured, want %d", len(lat), pipelines*(stages-1))
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	return []Figure{
		{Name: fmt.Sprintf("answer → successor claimed p50 (%d pipelines × %d stages)", pipelines, stages), Unit: "ms", Value: ms(p50),
			Baseline: 20, BaselineName: "target", Target: "< 20 ms", Met: boolPtr(p50 < 20*time.Millisecond)},
		{Name: "answer → successor claimed p99", Unit: "ms", Value: ms(p99), Baseline: 100, BaselineName: "target",
			Target: "< 100 ms", Met: boolPtr(p99 < 100*time.Millisecond)},
		{Name: "answer → successor claimed max", Unit: "ms", Value: ms(percentile(lat, 1))},
	}, nil
}

// webhookApp is the service's HTTP stack (handlers.Register with the real
// webhook authentication), served on loopback.
type webhookApp struct {
	URL    string
	Secret string
	srv    *http.Server
}

func startWebhookApp(ctx context.Context, eng *engine, log *slog.Logger) (*webhookApp, error) {
	secret := randSuffix() + randSuffix() + randSuffix()
	wv, err := rls.NewWebhookVerifier(&baseservice.Archetype{Logger: log}, &rls.Config{SupabaseURL: "http://127.0.0.1", WebhookSecret: rls.Secret(secret)})
	if err != nil {
		return nil, fmt.Errorf("error building the webhook verifier: %w", err)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = handlers.HTTPErrorHandler(log)
	handlers.Register(e, &handlers.Deps{
		DB:          eng.Direct,
		Wake:        waker{eng},
		Ready:       func(context.Context) error { return nil },
		Metrics:     handlers.NewMetrics(),
		Logger:      log,
		WebhookAuth: wv.Middleware(),
		UserAuth: func(echo.HandlerFunc) echo.HandlerFunc {
			return func(echo.Context) error { return echo.ErrUnauthorized }
		},
	})
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("error listening: %w", err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &webhookApp{URL: "http://" + ln.Addr().String() + "/webhooks/supabase", Secret: secret, srv: srv}, nil
}

func (a *webhookApp) close() { _ = a.srv.Close() }

type waker struct{ e *engine }

func (w waker) Notify(user uuid.UUID) bool { return w.e.Disp.Notify(user) }
func (w waker) Kick()                      { w.e.Sweeper.Kick() }

// webhookBody is a Supabase database webhook for an INSERT into ai_tasks.
func webhookBody(task, user uuid.UUID) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": "INSERT", "table": "ai_tasks", "schema": "public",
		"record":     map[string]any{"id": task, "user_id": user, "status": "plan", "task_type": "generic"},
		"old_record": nil,
	})
	return b
}

func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}}
}

func (a *webhookApp) post(ctx context.Context, c *http.Client, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("error building a webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(rls.DefaultWebhookSecretHeader, a.Secret)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("error posting a webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// webhookAck: open-loop 500 webhooks/s against the real handler stack while
// the engine works through a backlog; acknowledgement latency measured from
// each request's scheduled send time.
func webhookAck(ctx context.Context, e *env) ([]Figure, error) {
	rate, dur, backlog := 500, 10*time.Second, max(2000, e.o.Tasks/4)
	if e.o.Quick {
		dur = time.Second
	}
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return nil, err
	}
	defer db.close()
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	if err := createTemplates(ctx, db.Pool, user, stageDef{ID: "noop", Key: "noop", Prompt: "Answer with ok.", OutputSchema: noopSchema}); err != nil {
		return nil, err
	}
	if _, err := copyTasks(ctx, db.Pool, []uuid.UUID{user}, "noop", "noop", "plan", backlog); err != nil {
		return nil, err
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks"); err != nil {
		return nil, err
	}
	gen, err := offlineModel()
	if err != nil {
		return nil, err
	}
	eng := newEngine(db.Pool, gen, engineConfig{Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true}, e.log)
	app, err := startWebhookApp(ctx, eng, e.log)
	if err != nil {
		return nil, err
	}
	defer app.close()
	client := newHTTPClient()
	// Idle baseline: the same load with the engine stopped.
	idle, err := ackLatencies(ctx, app, client, user, rate, dur/2)
	if err != nil {
		return nil, err
	}
	eng.start(ctx)
	time.Sleep(200 * time.Millisecond)
	before := eng.Disp.Stats().Finished
	busy, err := ackLatencies(ctx, app, client, user, rate, dur)
	worked := eng.Disp.Stats().Finished - before
	eng.stop(ctx)
	if err != nil {
		return nil, err
	}
	p99 := percentile(busy, 0.99)
	return []Figure{
		{Name: fmt.Sprintf("ack p50 at %d/s, engine busy (%d tasks done meanwhile)", rate, worked), Unit: "ms", Value: ms(percentile(busy, 0.5)),
			Baseline: ms(percentile(idle, 0.5)), BaselineName: "engine idle"},
		{Name: "ack p99, engine busy", Unit: "ms", Value: ms(p99), Baseline: 5, BaselineName: "target", Target: "< 5 ms", Met: boolPtr(p99 < 5*time.Millisecond)},
		{Name: "ack max, engine busy", Unit: "ms", Value: ms(percentile(busy, 1)), Baseline: ms(percentile(idle, 1)), BaselineName: "engine idle"},
	}, nil
}

func ackLatencies(ctx context.Context, app *webhookApp, c *http.Client, user uuid.UUID, rate int, dur time.Duration) ([]time.Duration, error) {
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	_, err := openLoop(ctx, rate, dur, func(ctx context.Context, i int) error {
		scheduled := start.Add(time.Duration(i) * interval)
		if err := app.post(ctx, c, webhookBody(uuid.New(), user)); err != nil {
			return err
		}
		d := time.Since(scheduled)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		return nil
	})
	return lat, err
}

// wakeup: open-loop inserts of one plan task per transaction at 100/s and
// 300/s; latency from the insert's commit to the engine's claim (the
// model call), via NOTIFY (the sweeper's LISTEN) and via webhooks, against
// River's insert → Work latency with fast fetch settings.
func wakeup(ctx context.Context, e *env) ([]Figure, error) {
	dur, history := 5*time.Second, 20000
	if e.o.Quick {
		dur, history = time.Second, 1000
	}
	var figs []Figure
	for _, rate := range []int{100, 300} {
		var base []time.Duration
		if !e.o.SkipBaseline {
			var err error
			if base, err = riverWakeup(ctx, e, rate, dur, history); err != nil {
				return nil, err
			}
		}
		for _, path := range []string{"notify", "webhook"} {
			lat, err := orchWakeup(ctx, e, rate, dur, history, path)
			if err != nil {
				return nil, err
			}
			p50, p99, bp50, bp99 := percentile(lat, 0.5), percentile(lat, 0.99), percentile(base, 0.5), percentile(base, 0.99)
			figs = append(figs,
				Figure{Name: fmt.Sprintf("commit → claim p50 at %d/s via %s", rate, path), Unit: "ms", Value: ms(p50), Baseline: ms(bp50), BaselineName: "River p50"},
				Figure{Name: fmt.Sprintf("commit → claim p99 at %d/s via %s", rate, path), Unit: "ms", Value: ms(p99), Baseline: ms(bp99), BaselineName: "River p99",
					Target: "≤ River p99", Met: boolPtr(bp99 > 0 && p99 <= bp99)},
			)
		}
	}
	return figs, nil
}

func orchWakeup(ctx context.Context, e *env, rate int, dur time.Duration, history int, path string) ([]time.Duration, error) {
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return nil, err
	}
	defer db.close()
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	if err := createTemplates(ctx, db.Pool, user, stageDef{ID: "noop", Key: "noop", Prompt: "Answer with ok."}); err != nil {
		return nil, err
	}
	// A table that already holds finished work, with fresh statistics.
	if _, err := copyTasks(ctx, db.Pool, []uuid.UUID{user}, "noop", "noop", "completed", history); err != nil {
		return nil, err
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks", "public.prompt_templates"); err != nil {
		return nil, err
	}
	gen := newStampModel(0, 0)
	eng := newEngine(db.Pool, gen, engineConfig{Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: path == "notify"}, e.log)
	var app *webhookApp
	if path == "webhook" {
		if app, err = startWebhookApp(ctx, eng, e.log); err != nil {
			return nil, err
		}
		defer app.close()
	}
	client := newHTTPClient()
	eng.start(ctx)
	defer eng.stop(ctx)
	time.Sleep(200 * time.Millisecond)
	var (
		mu        sync.Mutex
		committed = map[uuid.UUID]time.Time{}
	)
	n, err := openLoop(ctx, rate, dur, func(ctx context.Context, i int) error {
		id := uuid.New()
		if _, err := db.Pool.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, stage_key, prompt_template_id)
			values ($1, 'plan', '{}', $2, 'noop', 'noop')`, id, user); err != nil {
			return fmt.Errorf("error inserting a task: %w", err)
		}
		now := time.Now()
		mu.Lock()
		committed[id] = now
		mu.Unlock()
		if app != nil {
			return app.post(ctx, client, webhookBody(id, user))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := eng.waitFinished(ctx, int64(n), 15*time.Second); err != nil {
		return nil, fmt.Errorf("wakeup via %s: %w", path, err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, len(committed))
	for id, at := range committed {
		s, ok := gen.startedAt(id)
		if !ok {
			return nil, errors.New("wakeup: a task was never claimed")
		}
		out = append(out, max(0, s.Sub(at)))
	}
	return out, nil
}
