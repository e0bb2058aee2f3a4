package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// noopArgs is the River baseline's job: it does nothing.
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	done   *atomic.Int64
	worked func(id int64)
	// took, when set, is how long job n takes: Work sleeps that long first
	// (slow-tasks: a model call's time).
	took func(n int) time.Duration
}

func (w *noopWorker) Work(ctx context.Context, j *river.Job[noopArgs]) error {
	if w.took != nil {
		t := time.NewTimer(w.took(j.Args.N))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if w.worked != nil {
		w.worked(j.ID)
	}
	w.done.Add(1)
	return nil
}

// riverFast is the baseline's fast fetch settings (the issue's).
const (
	riverFetchCooldown     = 2 * time.Millisecond
	riverFetchPollInterval = 20 * time.Millisecond
)

func newRiverClient(db *database, workers int, w *noopWorker, log *slog.Logger) (*river.Client[pgx.Tx], error) {
	ws := river.NewWorkers()
	if err := river.AddWorkerSafely(ws, w); err != nil {
		return nil, fmt.Errorf("error adding the River worker: %w", err)
	}
	c, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		FetchCooldown:     riverFetchCooldown,
		FetchPollInterval: riverFetchPollInterval,
		Workers:           ws,
		Logger:            log,
	})
	if err != nil {
		return nil, fmt.Errorf("error building the River client: %w", err)
	}
	return c, nil
}

// riverRun is what one River throughput run measured.
type riverRun struct {
	rate float64 // jobs/s
	cost *dbCost // nil unless metered
}

// riverThroughput works n pre-inserted no-op jobs with the given workers and
// returns jobs/s (until every job is completed in the database) and, with
// meter, what the work cost the database.
func riverThroughput(ctx context.Context, e *env, n, workers int, meter bool) (riverRun, error) {
	return riverWork(ctx, e, n, workers, meter, nil)
}

// riverWork is riverThroughput with each job taking took(n) (nil: no time).
func riverWork(ctx context.Context, e *env, n, workers int, meter bool, took func(n int) time.Duration) (riverRun, error) {
	var out riverRun
	db, err := e.freshDB(ctx, true, e.o.Conns)
	if err != nil {
		return out, err
	}
	defer db.close()
	var done atomic.Int64
	c, err := newRiverClient(db, workers, &noopWorker{done: &done, took: took}, e.log)
	if err != nil {
		return out, err
	}
	const chunk = 10000
	for i := 0; i < n; i += chunk {
		params := make([]river.InsertManyParams, 0, chunk)
		for j := i; j < min(n, i+chunk); j++ {
			params = append(params, river.InsertManyParams{Args: noopArgs{N: j}})
		}
		if _, err := c.InsertManyFast(ctx, params); err != nil {
			return out, fmt.Errorf("error inserting River jobs: %w", err)
		}
	}
	if err := analyze(ctx, db.Pool, "river_job"); err != nil {
		return out, err
	}
	var m *costMeter
	if meter {
		if m, err = e.startCost(ctx, db); err != nil {
			return out, err
		}
	}
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return out, fmt.Errorf("error starting River: %w", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
	}
	defer stop()
	for done.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Minute {
			return out, fmt.Errorf("river: only %d/%d jobs worked", done.Load(), n)
		}
	}
	// Worked is not completed: River records completions in batches.
	for {
		var completed int
		if err := db.Pool.QueryRow(ctx, "select count(*) from river_job where state = 'completed'").Scan(&completed); err != nil {
			return out, fmt.Errorf("error counting River jobs: %w", err)
		}
		if completed >= n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	out.rate = float64(n) / time.Since(start).Seconds()
	if m != nil {
		stop()
		cost, err := m.stop(ctx)
		if err != nil {
			return out, err
		}
		out.cost = &cost
	}
	return out, nil
}

// riverWakeup inserts jobs at rate per second for dur (one transaction per
// insert, open loop) and returns the insert-commit → Work latencies.
func riverWakeup(ctx context.Context, e *env, rate int, dur time.Duration, history int) ([]time.Duration, error) {
	db, err := e.freshDB(ctx, true, e.o.Conns)
	if err != nil {
		return nil, err
	}
	defer db.close()
	// A table that already holds finished work, with fresh statistics.
	if _, err := db.Pool.Exec(ctx, `insert into river_job (state, args, kind, max_attempts, queue, attempt, finalized_at, scheduled_at, priority)
		select 'completed', '{}', 'noop', 25, 'default', 1, now(), now(), 1 from generate_series(1, $1)`, history); err != nil {
		return nil, fmt.Errorf("error inserting River history: %w", err)
	}
	if err := analyze(ctx, db.Pool, "river_job"); err != nil {
		return nil, err
	}
	var (
		mu        sync.Mutex
		committed = map[int64]time.Time{}
		worked    = map[int64]time.Time{}
		done      atomic.Int64
	)
	w := &noopWorker{done: &done, worked: func(id int64) {
		now := time.Now()
		mu.Lock()
		worked[id] = now
		mu.Unlock()
	}}
	c, err := newRiverClient(db, 100, w, e.log)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("error starting River: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
	}()
	time.Sleep(200 * time.Millisecond) // let the client settle (leadership, listener)
	n, err := openLoop(ctx, rate, dur, func(ctx context.Context, i int) error {
		res, err := c.Insert(ctx, noopArgs{N: i}, nil)
		if err != nil {
			return fmt.Errorf("error inserting a River job: %w", err)
		}
		now := time.Now()
		mu.Lock()
		committed[res.Job.ID] = now
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for done.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, len(committed))
	for id, at := range committed {
		if wt, ok := worked[id]; ok {
			out = append(out, max(0, wt.Sub(at)))
		}
	}
	return out, nil
}

// openLoop calls fn at a fixed rate for dur: call i is scheduled at
// start + i/rate and runs in its own goroutine whatever the previous calls
// are doing. It returns the number of calls made.
func openLoop(ctx context.Context, rate int, dur time.Duration, fn func(ctx context.Context, i int) error) (int, error) {
	n := int(dur.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return i, ctx.Err()
			case <-time.After(d):
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, i); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	return n, firstErr
}
