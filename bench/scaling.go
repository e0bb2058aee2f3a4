package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orchable/orchable/supabase"
)

// scaling: the cost of one completion as its merge scope or its batch
// grows (SPEC §13: flat). Each case builds its scope in full (launch_batch),
// completes all but the last tasks outside the measured window, and then
// measures the engine completing the rest (-scale-work per case), so every
// size does the same work in its window and only the scope differs:
//
//   - merge: one user's batch of N tasks of a stage whose successor is an
//     N:1 merge (batch scope). The window measures the feeders' completions
//     (-scale-work minus one); the last task is held back and its
//     completion, which closes the barrier and builds the merged input from
//     all N outputs, is measured in a second window, per scope task.
//   - batch: -scale-users users, each with one batch of -scale-batch rows
//     of a one-stage pipeline, working at once; compared with the same
//     users and work in 100-row batches.
//   - unseen: a new owner's batch of -scale-batch tasks (one stage, then
//     the feeders of an N:1 merge) in a table whose statistics describe only
//     other owners, against the same batch analyzed.
//   - history: an owner with -scale-history finished batches behind it runs
//     the pipeline of throughput-pipeline, against a new owner in the same
//     table (history.go).
//
// Per size it reports wall time, DB CPU, WAL, rows and index entries read
// and index entries written per completion, and the completion latency (model answer →
// completion committed) p50/p99, each against the smallest size.
func scaling(ctx context.Context, e *env) ([]Figure, error) {
	var figs []Figure
	var first *scaleResult
	for _, n := range e.o.ScaleMerge {
		work := min(n, e.o.ScaleWork)
		r, err := scaleCase(ctx, e, 1, n, work, true)
		if err != nil {
			return nil, fmt.Errorf("merge over %d tasks: %w", n, err)
		}
		if first == nil {
			first = &r
		}
		figs = append(figs, r.figures(fmt.Sprintf("N:1 merge over %d", n), *first, fmt.Sprintf("merge over %d", e.o.ScaleMerge[0]))...)
	}
	users := e.o.ScaleUsers
	perUser := max(1, min(e.o.ScaleWork/users, 100))
	small, err := scaleCase(ctx, e, users, 100, perUser, false)
	if err != nil {
		return nil, fmt.Errorf("%d users × 100-row batches: %w", users, err)
	}
	big, err := scaleCase(ctx, e, users, e.o.ScaleBatch, perUser, false)
	if err != nil {
		return nil, fmt.Errorf("%d users × %d-row batches: %w", users, e.o.ScaleBatch, err)
	}
	figs = append(figs, big.figures(fmt.Sprintf("%d users × %d-row batch", users, e.o.ScaleBatch), small, "100-row batches")...)

	// A new owner's first large batch, before the next ANALYZE (autovacuum
	// analyzes a table after 50 + 10 % of its rows changed, so in a large
	// shared table such a batch can stay unseen for long), against the same
	// batch with statistics that have seen it.
	// Then the same owner's batch as the feeders of an N:1 merge: every
	// completion probes the barrier's scope, and the last reads it.
	for _, merge := range []bool{false, true} {
		what := fmt.Sprintf("a new owner's %d tasks", e.o.ScaleBatch)
		if merge {
			what = fmt.Sprintf("a new owner's %d feeders of an N:1 merge", e.o.ScaleBatch)
		}
		seen, err := scaleUnseen(ctx, e, users, e.o.ScaleBatch, true, merge)
		if err != nil {
			return nil, fmt.Errorf("%s, analyzed: %w", what, err)
		}
		unseen, err := scaleUnseen(ctx, e, users, e.o.ScaleBatch, false, merge)
		if err != nil {
			return nil, fmt.Errorf("%s, unseen by the statistics: %w", what, err)
		}
		figs = append(figs, unseen.figures(what+", unseen by the statistics", seen, "the same, analyzed")...)
	}
	if e.o.ScaleHistory > 0 {
		fresh, old, err := scaleHistory(ctx, e, e.o.ScaleHistory, e.o.ScaleHistoryRoots)
		if err != nil {
			return nil, fmt.Errorf("an owner's history: %w", err)
		}
		figs = append(figs, historyFigures(e.o.ScaleHistory, fresh, old)...)
	}
	return figs, nil
}

// scaleUnseen measures the engine working one new owner's batch of size
// one-stage tasks in a table whose statistics describe only other owners
// (users of them, 100 finished tasks each), with the new owner's rows
// analyzed or not. merge: the tasks are one batch, feeders of an N:1 merge.
func scaleUnseen(ctx context.Context, e *env, users, size int, analyzed, merge bool) (scaleResult, error) {
	var out scaleResult
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return out, err
	}
	defer db.close()
	others := make([]uuid.UUID, users)
	for u := range others {
		if others[u], err = createUser(ctx, db.Pool); err != nil {
			return out, err
		}
	}
	stage := stageDef{ID: "s1", Key: "s1", Prompt: "Row %%input.n%%."}
	if err := createTemplates(ctx, db.Pool, others[0], stage); err != nil {
		return out, err
	}
	if _, err := copyTasks(ctx, db.Pool, others, stage.ID, stage.Key, "completed", 100*users); err != nil {
		return out, err
	}
	if err := vacuumAnalyze(ctx, db.Pool, "public.ai_tasks", "public.task_batches", "public.prompt_templates"); err != nil {
		return out, err
	}
	owner, err := createUser(ctx, db.Pool)
	if err != nil {
		return out, err
	}
	own := []stageDef{{ID: "new-s1", Key: "s1", Prompt: "Row %%input.n%%."}}
	batch := uuid.Nil
	if merge {
		own[0].Next = []string{"new-m1"}
		own = append(own, stageDef{ID: "new-m1", Key: "m1", Prompt: "Merge.", Config: map[string]any{"cardinality": "N:1"}})
		if err := db.Pool.QueryRow(ctx, "insert into public.task_batches (created_by, launch_id) values ($1, gen_random_uuid()) returning id", owner).Scan(&batch); err != nil {
			return out, fmt.Errorf("error creating the new owner's batch: %w", err)
		}
	}
	if err := createTemplates(ctx, db.Pool, owner, own...); err != nil {
		return out, err
	}
	if _, err := copyTasksIn(ctx, db.Pool, []uuid.UUID{owner}, own[0].ID, own[0].Key, "plan", size, batch); err != nil {
		return out, err
	}
	if analyzed {
		if _, err := db.Pool.Exec(ctx, "analyze public.ai_tasks"); err != nil {
			return out, fmt.Errorf("error analyzing: %w", err)
		}
	}
	gen := newStampModel(0, 0)
	rec, err := newCompletionClock(ctx, db, gen)
	if err != nil {
		return out, err
	}
	out.done = size
	out.cost, out.lat, err = workWindow(ctx, e, db, gen, rec, out.done, 2*time.Minute)
	return out, err
}

// newCompletionClock records the completions of the tasks now planned.
func newCompletionClock(ctx context.Context, db *database, gen *stampModel) (*completionClock, error) {
	rec := &completionClock{answered: gen.answeredAt, at: map[uuid.UUID]time.Duration{}, want: map[uuid.UUID]bool{}}
	planned, err := db.Pool.Query(ctx, "select id from public.ai_tasks where status = 'plan'")
	if err != nil {
		return nil, fmt.Errorf("error reading the tasks to work: %w", err)
	}
	ids, err := pgx.CollectRows(planned, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("error reading the tasks to work: %w", err)
	}
	for _, id := range ids {
		rec.want[id] = true
	}
	return rec, nil
}

// workWindow runs the engine (100 workers, through rec) in a metered window
// until done tasks are finished, and returns the database's cost and the
// completion latencies rec recorded.
func workWindow(ctx context.Context, e *env, db *database, gen *stampModel, rec *completionClock, done int, timeout time.Duration) (dbCost, []time.Duration, error) {
	m, err := e.startCost(ctx, db)
	if err != nil {
		return dbCost{}, nil, err
	}
	eng := newEngine(db.Pool, gen, engineConfig{
		Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true,
		Wrap: func(d supabase.DB) supabase.DB { rec.DB = d; return rec },
	}, e.log)
	eng.run(ctx) // startCost warmed the pool
	err = eng.waitFinished(ctx, int64(done), timeout)
	eng.stop(ctx)
	if err != nil {
		return dbCost{}, nil, err
	}
	cost, err := m.stop(ctx)
	if err != nil {
		return dbCost{}, nil, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lat := make([]time.Duration, 0, len(rec.at))
	for _, d := range rec.at {
		lat = append(lat, d)
	}
	return cost, lat, nil
}

// scaleResult is what one case measured.
type scaleResult struct {
	done    int
	cost    dbCost
	lat     []time.Duration // per completion: model answer → committed
	lastLat time.Duration   // the merge case's closing completion (it creates the merge child)
	// The merge case measures its closing completion in a window of its own
	// (the feeders' window excludes it): it reads the whole scope to build
	// the merged input, so its cost is per scope task, not flat.
	scope   int
	closing dbCost
}

func (r scaleResult) per(v float64) float64 { return perTask(v, r.done) }

func (r scaleResult) figures(label string, base scaleResult, baseName string) []Figure {
	rd := func(c scaleResult) float64 {
		t := c.cost.sum(allTables)
		return c.per(float64(t.SeqRead + t.IdxFetch))
	}
	ixr := func(c scaleResult) float64 { return c.per(float64(c.cost.sum(allTables).IdxRead)) }
	ix := func(c scaleResult) float64 { return c.per(float64(c.cost.DBWAL.Entries())) }
	hit := func(c scaleResult) float64 { return c.per(float64(c.cost.sum(allTables).BlksHit)) }
	miss := func(c scaleResult) float64 { return c.per(float64(c.cost.sum(allTables).BlksRead)) }
	figs := []Figure{
		{
			Name: fmt.Sprintf("%s: wall time/completion (%d completions)", label, r.done), Unit: "ms",
			Value: r.per(ms(r.cost.Wall)), Baseline: base.per(ms(base.cost.Wall)), BaselineName: baseName,
		},
		{Name: "  DB CPU/completion", Unit: "ms", Note: r.cost.CPUNA, Value: r.per(ms(r.cost.DBCPU)), Baseline: base.per(ms(base.cost.DBCPU)), BaselineName: baseName},
		{Name: "  WAL/completion, bench DB's records", Unit: "bytes", Note: r.cost.WALNA, Value: r.per(float64(r.cost.DBWAL.Total)), Baseline: base.per(float64(base.cost.DBWAL.Total)), BaselineName: baseName},
		{Name: "  WAL/completion, bench DB's records without full-page images", Unit: "bytes", Note: r.cost.WALNA, Value: r.per(float64(r.cost.DBWAL.NoFPI)), Baseline: base.per(float64(base.cost.DBWAL.NoFPI)), BaselineName: baseName},
		{Name: "  WAL/completion, server-wide", Unit: "bytes", Value: r.per(float64(r.cost.WAL)), Baseline: base.per(float64(base.cost.WAL)), BaselineName: baseName},
		{Name: "  rows read/completion (seq + index fetches)", Unit: "rows", Value: rd(r), Baseline: rd(base), BaselineName: baseName},
		{Name: "  index entries read/completion (index scans)", Unit: "entries", Value: ixr(r), Baseline: ixr(base), BaselineName: baseName},
		{Name: "  index entries written/completion (WAL)", Unit: "entries", Note: r.cost.WALNA, Value: ix(r), Baseline: ix(base), BaselineName: baseName},
		{Name: "  shared buffers found/completion (tables and indexes)", Unit: "blocks", Value: hit(r), Baseline: hit(base), BaselineName: baseName},
		{Name: "  shared buffers missed/completion (read in from the OS)", Unit: "blocks", Value: miss(r), Baseline: miss(base), BaselineName: baseName},
		{
			Name: "  completion latency p50 (answer → committed)", Unit: "ms",
			Value: ms(percentile(r.lat, 0.5)), Baseline: ms(percentile(base.lat, 0.5)), BaselineName: baseName,
		},
		{Name: "  completion latency p99", Unit: "ms", Value: ms(percentile(r.lat, 0.99)), Baseline: ms(percentile(base.lat, 0.99)), BaselineName: baseName},
	}
	if r.lastLat > 0 {
		// Per scope task: the closing completion builds the merged input of
		// every feeder's output, so it is flat when this does not grow.
		per := func(c scaleResult, v float64) float64 { return perTask(v, c.scope) }
		cr := func(c scaleResult) float64 {
			t := c.closing.sum(allTables)
			return per(c, float64(t.SeqRead+t.IdxFetch))
		}
		figs = append(figs,
			Figure{
				Name: "  the closing completion (creates the merge child), latency", Unit: "ms", Value: ms(r.lastLat),
				Baseline: ms(base.lastLat), BaselineName: baseName,
			},
			Figure{
				Name: "  the closing completion's window, DB CPU per scope task", Unit: "µs", Note: r.closing.CPUNA,
				Value: 1000 * per(r, ms(r.closing.DBCPU)), Baseline: 1000 * per(base, ms(base.closing.DBCPU)), BaselineName: baseName,
			},
			Figure{Name: "  the closing completion's window, rows read per scope task", Unit: "rows", Value: cr(r), Baseline: cr(base), BaselineName: baseName},
		)
	}
	figs = append(figs, Figure{Name: "  noise: other DBs' sessions active, % of samples", Unit: "%", Value: 100 * r.cost.BusyOther})
	return figs
}

// scaleCase builds users × one batch of size tasks, completes all but work
// of each batch outside the window, and measures the engine completing the
// rest. merge: the stage has an N:1 successor (batch scope).
func scaleCase(ctx context.Context, e *env, users, size, work int, merge bool) (scaleResult, error) {
	var out scaleResult
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return out, err
	}
	defer db.close()
	owners := make([]uuid.UUID, users)
	ids := newClaimsIdentity()
	direct := supabase.NewDirect(db.Pool, nil)
	for u := range owners {
		if owners[u], err = createUser(ctx, db.Pool); err != nil {
			return out, err
		}
		stage := stageDef{ID: fmt.Sprintf("s1-%d", u), Key: "s1", Prompt: "Row %%input.n%%."}
		defs := []stageDef{stage}
		if merge {
			defs[0].Next = []string{fmt.Sprintf("m1-%d", u)}
			defs = append(defs, stageDef{ID: fmt.Sprintf("m1-%d", u), Key: "m1", Prompt: "Merge.", Config: map[string]any{"cardinality": "N:1"}})
		}
		if err := createTemplates(ctx, db.Pool, owners[u], defs...); err != nil {
			return out, err
		}
		// launch_batch makes the batch and the work rows the window
		// completes; the rest of the scope is copied in, completed, as
		// the engine would have left it (faster than launching and
		// completing it, and it leaves no dead rows).
		rows := make([]map[string]any, work)
		for i := range rows {
			rows[i] = map[string]any{"n": i}
		}
		id, _ := ids.Identity(ctx, owners[u])
		var launched struct {
			BatchID  uuid.UUID `json:"batch_id"`
			LaunchID uuid.UUID `json:"launch_id"`
		}
		if err := direct.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": stage.ID, "p_rows": rows}, &launched); err != nil {
			return out, fmt.Errorf("error launching %d rows: %w", work, err)
		}
		if err := copyCompleted(ctx, db, owners[u], stage, launched.BatchID, launched.LaunchID, work, size); err != nil {
			return out, err
		}
	}
	// As the sweeper and autovacuum would have (autovacuum is off on the
	// bench server): the window starts without pending counter deltas or
	// dead rows of the setup.
	if err := foldCounters(ctx, db); err != nil {
		return out, err
	}
	if err := vacuumAnalyze(ctx, db.Pool, "public.ai_tasks", "public.task_batches", "public.task_batch_counter_deltas", "public.prompt_templates"); err != nil {
		return out, err
	}
	// The merge case holds its scope's last task back (run_after tomorrow)
	// and completes it in a second window: the first measures the feeders'
	// completions, the second the closing one.
	var held uuid.UUID
	if merge {
		if err := db.Pool.QueryRow(ctx, `with e as (select set_config('orchable.engine', 'on', true))
			update public.ai_tasks set run_after = now() + interval '1 day'
			where id = (select id from public.ai_tasks, e where status = 'plan' order by sequence desc limit 1) returning id`).Scan(&held); err != nil {
			return out, fmt.Errorf("error holding the last task back: %w", err)
		}
	}
	gen := newStampModel(0, 0)
	rec, err := newCompletionClock(ctx, db, gen)
	if err != nil {
		return out, err
	}
	out.done = users * work
	if merge {
		out.done-- // the held task
	}
	if out.cost, out.lat, err = workWindow(ctx, e, db, gen, rec, out.done, 30*time.Second); err != nil {
		return out, err
	}
	if len(out.lat) < out.done {
		return out, fmt.Errorf("%d completion latencies for %d completions", len(out.lat), out.done)
	}
	if !merge {
		return out, nil
	}
	// The closing completion, in its own window (with the claim and run of
	// the merge child it creates).
	if _, err := db.Pool.Exec(ctx, `with e as (select set_config('orchable.engine', 'on', true))
		update public.ai_tasks set run_after = now() from e where id = $1`, held); err != nil {
		return out, fmt.Errorf("error releasing the held task: %w", err)
	}
	m2, err := e.startCost(ctx, db)
	if err != nil {
		return out, err
	}
	eng2 := newEngine(db.Pool, gen, engineConfig{
		Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true,
		Wrap: func(d supabase.DB) supabase.DB { rec.DB = d; return rec },
	}, e.log)
	eng2.run(ctx)
	err = eng2.waitFinished(ctx, 2, 30*time.Second)
	eng2.stop(ctx)
	if err != nil {
		return out, fmt.Errorf("the closing completion: %w", err)
	}
	if out.closing, err = m2.stop(ctx); err != nil {
		return out, err
	}
	out.scope = size
	rec.mu.Lock()
	out.lastLat = rec.at[held]
	rec.mu.Unlock()
	var merges int
	if err := db.Pool.QueryRow(ctx, "select count(*) from public.ai_tasks where stage_key = 'm1'").Scan(&merges); err != nil {
		return out, fmt.Errorf("error counting merges: %w", err)
	}
	if merges != users {
		return out, fmt.Errorf("%d merge children, want %d", merges, users)
	}
	return out, nil
}

// completionClock wraps the engine's database and records, per task, the
// time from the model's answer to the return of the call that committed the
// task's completion (complete_tasks or complete_task).
type completionClock struct {
	supabase.DB

	answered func(uuid.UUID) (time.Time, bool)

	mu   sync.Mutex
	want map[uuid.UUID]bool // the tasks of the window (not the merge child)
	at   map[uuid.UUID]time.Duration
	last time.Duration // the latest-committed completion's latency
}

func (c *completionClock) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	err := c.DB.RPC(ctx, id, fn, args, out)
	if err != nil || (fn != "complete_tasks" && fn != "complete_task") {
		return err
	}
	now := time.Now()
	// The arguments as the database receives them (how the engine builds
	// them is its business: a map, or a body it writes itself).
	var body []byte
	if enc, ok := args.(supabase.EncodedArgs); ok {
		body, _, err = enc.EncodeArgs()
	} else {
		body, err = json.Marshal(args)
	}
	var a struct {
		TaskID uuid.UUID `json:"p_task_id"`
		Items  []struct {
			TaskID uuid.UUID `json:"task_id"`
		} `json:"p_items"`
	}
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	if err != nil {
		return fmt.Errorf("bench: reading %s's arguments: %w", fn, err)
	}
	tasks := []uuid.UUID{a.TaskID}
	if fn == "complete_tasks" {
		tasks = tasks[:0]
		for _, it := range a.Items {
			tasks = append(tasks, it.TaskID)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tid := range tasks {
		if ans, ok := c.answered(tid); ok && c.want[tid] {
			c.at[tid] = now.Sub(ans)
			c.last = now.Sub(ans)
		}
	}
	return nil
}

// copyCompleted copies tasks from..to-1 (sequence) of the batch, completed,
// as launch_batch and the engine would have left them.
func copyCompleted(ctx context.Context, db *database, owner uuid.UUID, stage stageDef, batch, launch uuid.UUID, from, to int) error {
	if to <= from {
		return nil
	}
	now := time.Now().Add(-time.Minute)
	rows := make([][]any, 0, to-from)
	for i := from; i < to; i++ {
		id := uuid.New()
		rows = append(rows, []any{
			id, stage.Key, "completed", fmt.Sprintf(`{"n": %d}`, i), `{"items":[0]}`, owner, batch, launch, id,
			1, stage.Key, stage.ID, i, 1, now, now,
			fmt.Sprintf(`{"launcher_metadata":{"original_index":%d,"launch_id":"%s"}}`, i, launch),
		})
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error copying completed tasks: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Engine mode: the references are the launch's own (checked by
	// construction), as launch_batch sets them.
	if _, err := tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)"); err != nil {
		return fmt.Errorf("error copying completed tasks: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"public", "ai_tasks"},
		[]string{
			"id", "task_type", "status", "input_data", "output_data", "user_id", "batch_id", "launch_id", "root_task_id",
			"step_number", "stage_key", "prompt_template_id", "sequence", "attempts", "run_after", "completed_at", "extra",
		},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("error copying %d completed tasks: %w", len(rows), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error copying completed tasks: %w", err)
	}
	return nil
}
