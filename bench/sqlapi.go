package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// sql-api: what orchable's SQL API costs the database per task against the
// floor's two statements, measured so that the machine's drift cancels out.
//
// The throughput scenarios measure the server's CPU over a run while the
// engine, River or the floor loop share the two cores with it, and runs
// minutes apart on these machines spread by a third: a change to a SQL
// function worth a few percent cannot be seen there. Here each side works
// its own user's queue of no-op tasks (inserted alone, as throughput-noop's;
// then, in a database of their own, as launched roots of a batch) on one
// connection of its own, one call at a time, and nothing else runs:
//   - orchable: claim_tasks and complete_tasks as the engine sends them
//     through the direct transport (the compact, columnar claim from the
//     previous claim's cursor; a completion item per task with the output
//     and usage the engine sends for a no-op task (engineCompletion);
//     complete_task for a task written alone);
//   - the floor: floorClaimSQL and floorCompleteSQL, each in a transaction as
//     the owner, in one round trip (floor.go).
//
// The two alternate in short slices (A B B A …), so each pair of slices saw
// the machine alike. A slice's cost is the CPU time of that side's server
// backend, read from /proc/<pid>/schedstat (nanoseconds) around each call:
// the claims' and the completions' separately. The figures are the medians
// over the slices, per task; the ratio orchable against the floor is the
// median of the pairs' ratios. Four cases: 50 tasks per call inserted
// alone, 50 launched, one launched task per call (what a call costs before
// its rows), and one launched task per call whose stage has a 1:1 successor
// (a pipeline's task written alone: its completion makes the next stage's
// task; the floor's completion inserts a successor too, as its chains do).

// sqlAPISize is the tasks one call claims and completes (about what a
// throughput-noop claim takes at 100 workers). The one-task case is what a
// call costs before its rows: where tasks take seconds (model calls),
// claims and completions are of a few tasks.
const sqlAPISize = 50

// sqlAPISide is one side's queue, connection and tallies.
type sqlAPISide struct {
	name    string
	size    int // tasks per call
	pool    *pgxpool.Pool
	pid     int
	user    uuid.UUID
	id      supabase.Identity
	direct  *supabase.Direct
	floor   *floorQueue
	after   json.RawMessage // orchable: the claim's cursor
	done    completionArgs  // orchable: each completion's output and usage
	claimNS []float64       // per slice: claims' backend CPU, ns per task
	compNS  []float64       // per slice: completions' backend CPU, ns per task
}

// sqlAPICase is one case of sql-api: the tasks' shape and the call size.
type sqlAPICase struct {
	launched  bool // roots of a batch (batch, launch and root set), else inserted alone
	successor bool // the stage has a 1:1 successor (orchable), the floor inserts one
	size      int  // tasks per call
	// done is the output and usage the engine writes for a no-op task
	// (engineCompletion), sent with every orchable completion.
	done completionArgs
}

func sqlAPI(ctx context.Context, e *env) ([]Figure, error) {
	done, err := engineCompletion(ctx, e)
	if err != nil {
		return nil, err
	}
	var figs []Figure
	for _, c := range []sqlAPICase{
		{size: sqlAPISize}, {launched: true, size: sqlAPISize}, {launched: true, size: 1}, {launched: true, successor: true, size: 1},
	} {
		c.done = done
		f, err := sqlAPIShape(ctx, e, c)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f...)
	}
	return figs, nil
}

// sqlAPIShape measures one case: c.size tasks per call, inserted alone or
// (launched) as roots of one batch, with the batch, launch and root set (the
// front end's shape: every task the front end launches is in a batch).
func sqlAPIShape(ctx context.Context, e *env, c sqlAPICase) ([]Figure, error) {
	size := c.size
	slicesPerSide, rounds := 24, 6
	if e.o.Quick {
		slicesPerSide, rounds = 2, 1
	}
	perSide := slicesPerSide*rounds*size + 4*size // the slices and the warm-up
	db, err := e.freshDB(ctx, false, 2)
	if err != nil {
		return nil, err
	}
	defer db.close()
	var sides [2]*sqlAPISide
	for i, name := range []string{"orchable", "floor"} {
		s, err := newSQLAPISide(ctx, e, db, name, perSide, c)
		if err != nil {
			return nil, err
		}
		s.size = size
		defer s.pool.Close()
		sides[i] = s
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks", "public.prompt_templates", "public.task_batches"); err != nil {
		return nil, err
	}
	shape := "tasks inserted alone"
	if c.launched {
		shape = "launched roots (batch, launch, root set)"
	}
	if c.successor {
		shape += " with a 1:1 successor"
	}
	for _, s := range sides {
		if _, err := os.Stat(schedstatPath(s.pid)); err != nil {
			return []Figure{{Name: "SQL API DB CPU/task alone, " + shape, Unit: "µs", Note: "n/a: the server's backends are not readable in /proc here (" + err.Error() + ")"}}, nil
		}
		// Warm-up: each statement planned and each function compiled on
		// the side's connection.
		for range 4 {
			if err := s.round(ctx, nil); err != nil {
				return nil, err
			}
		}
	}
	for k := range 2 * slicesPerSide {
		// A B B A A B …: pairs (k, k+1) each hold one slice of each side.
		s := sides[(k+k/2)%2]
		var claimNS, compNS int64
		for range rounds {
			var t [2]int64
			if err := s.round(ctx, &t); err != nil {
				return nil, err
			}
			claimNS += t[0]
			compNS += t[1]
		}
		n := float64(rounds * size)
		s.claimNS = append(s.claimNS, float64(claimNS)/n)
		s.compNS = append(s.compNS, float64(compNS)/n)
	}
	o, f := sides[0], sides[1]
	total := func(s *sqlAPISide, i int) float64 { return s.claimNS[i] + s.compNS[i] }
	ratios := func(part func(*sqlAPISide, int) float64) []float64 {
		r := make([]float64, len(o.claimNS))
		for i := range r {
			r[i] = part(o, i) / part(f, i)
		}
		return r
	}
	claimPart := func(s *sqlAPISide, i int) float64 { return s.claimNS[i] }
	compPart := func(s *sqlAPISide, i int) float64 { return s.compNS[i] }
	us := func(s *sqlAPISide, part func(*sqlAPISide, int) float64) float64 {
		v := make([]float64, len(s.claimNS))
		for i := range v {
			v[i] = part(s, i) / 1e3
		}
		return median(v)
	}
	note := func(part func(*sqlAPISide, int) float64) string {
		r := ratios(part)
		slices.Sort(r)
		return fmt.Sprintf("orchable / floor per pair of slices: median %.2f, quartiles %.2f–%.2f (%d pairs of %d × %d tasks)",
			median(r), r[len(r)/4], r[(3*len(r))/4], len(r), rounds, size)
	}
	return []Figure{
		{Name: fmt.Sprintf("SQL API DB CPU/task alone, claim + completion of %d, %s, orchable vs the floor", size, shape), Unit: "µs",
			Value: us(o, total), Baseline: us(f, total), BaselineName: "floor", Note: note(total)},
		{Name: fmt.Sprintf("of which the claim, %d, %s", size, shape), Unit: "µs", Value: us(o, claimPart), Baseline: us(f, claimPart), BaselineName: "floor", Note: note(claimPart)},
		{Name: fmt.Sprintf("of which the completion, %d, %s", size, shape), Unit: "µs", Value: us(o, compPart), Baseline: us(f, compPart), BaselineName: "floor", Note: note(compPart)},
	}, nil
}

// newSQLAPISide makes a user with n no-op tasks due (launched: as roots of
// one batch of theirs) and a connection of its own (a pool of one, so its
// backend does not change).
func newSQLAPISide(ctx context.Context, e *env, db *database, name string, n int, c sqlAPICase) (*sqlAPISide, error) {
	s := &sqlAPISide{name: name}
	var err error
	if s.user, err = createUser(ctx, db.Pool); err != nil {
		return nil, err
	}
	tmpl := "noop-" + name
	stage := stageDef{ID: tmpl, Key: "noop", Prompt: "Answer with ok.", OutputSchema: noopSchema}
	stages := []stageDef{stage}
	if c.successor {
		// The successor's template first: a template's successors must exist.
		next := stageDef{ID: tmpl + "-next", Key: "next", Prompt: "Answer with ok.", OutputSchema: noopSchema, Config: map[string]any{"cardinality": "1:1"}}
		stage.Config, stage.Next = map[string]any{"cardinality": "1:1"}, []string{next.ID}
		stages = []stageDef{next, stage}
	}
	if err := createTemplates(ctx, db.Pool, s.user, stages...); err != nil {
		return nil, err
	}
	var batch uuid.UUID
	if c.launched {
		if err := db.Pool.QueryRow(ctx, `insert into public.task_batches (name, status, created_by, launch_id, total_tasks)
			values ('sql-api', 'processing', $1, gen_random_uuid(), $2) returning id`, s.user, n).Scan(&batch); err != nil {
			return nil, fmt.Errorf("error creating the batch: %w", err)
		}
	}
	if _, err := copyTasksIn(ctx, db.Pool, []uuid.UUID{s.user}, tmpl, "noop", "plan", n, batch); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(e.dbURL(db.Name))
	if err != nil {
		return nil, fmt.Errorf("error parsing the database URL: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = 1, 1
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("error connecting: %w", err)
	}
	if err := s.pool.QueryRow(ctx, "select pg_backend_pid()").Scan(&s.pid); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("error reading the backend's pid: %w", err)
	}
	if s.id, err = newClaimsIdentity().Identity(ctx, s.user); err != nil {
		s.pool.Close()
		return nil, err
	}
	if name == "orchable" {
		s.direct = supabase.NewDirect(s.pool, nil)
		s.done = c.done
	} else {
		chain := 1
		if c.successor {
			chain = 2
		}
		s.floor = &floorQueue{pool: s.pool, user: s.user, claims: string(s.id.Claims), worker: "floor", chain: chain}
	}
	return s, nil
}

// round claims s.size tasks and completes them; with t, it adds the
// backend's CPU time of the claim to t[0] and of the completion to t[1].
func (s *sqlAPISide) round(ctx context.Context, t *[2]int64) error {
	var ids []uuid.UUID
	claim := func() error {
		var err error
		if s.direct == nil {
			ids, err = s.floor.claim(ctx, s.size)
			return err
		}
		ids, err = s.claimOrchable(ctx)
		return err
	}
	complete := func() error {
		if s.direct == nil {
			var c int
			err := s.floor.tx(ctx, func(b *pgx.Batch) {
				b.Queue(floorCompleteSQL, ids, s.floor.worker, s.floor.chain).QueryRow(func(row pgx.Row) error { return row.Scan(&c) })
			})
			if err == nil && c != len(ids) {
				err = fmt.Errorf("floor: %d of %d tasks completed", c, len(ids))
			}
			return err
		}
		return s.completeOrchable(ctx, ids)
	}
	for i, call := range []func() error{claim, complete} {
		before, err := readSchedstat(s.pid)
		if err != nil {
			return err
		}
		if err := call(); err != nil {
			return fmt.Errorf("sql-api, %s: %w", s.name, err)
		}
		after, err := readSchedstat(s.pid)
		if err != nil {
			return err
		}
		if t != nil {
			t[i] += after - before
		}
		if i == 0 && len(ids) != s.size {
			return fmt.Errorf("sql-api, %s: claimed %d tasks, want %d", s.name, len(ids), s.size)
		}
	}
	return nil
}

// claimOrchable claims as the engine does (pipeline.Runner's claim): the
// compact result in columns, from the previous claim's cursor.
func (s *sqlAPISide) claimOrchable(ctx context.Context) ([]uuid.UUID, error) {
	args := map[string]any{
		"p_worker": "sql-api", "p_lease_seconds": 300, "p_limit": s.size, "p_task_ids": nil,
		"p_compact": true, "p_after_run_after": nil, "p_after_id": nil, "p_columns": true,
	}
	if len(s.after) > 0 && string(s.after) != "null" {
		var c struct {
			RunAfter time.Time `json:"run_after"`
			ID       uuid.UUID `json:"id"`
		}
		if err := json.Unmarshal(s.after, &c); err != nil {
			return nil, fmt.Errorf("error reading the claim's cursor: %w", err)
		}
		args["p_after_run_after"], args["p_after_id"] = c.RunAfter, c.ID
	}
	var out struct {
		Tasks struct {
			ID []uuid.UUID `json:"id"`
		} `json:"tasks"`
		After json.RawMessage `json:"after"`
	}
	if err := s.direct.RPC(ctx, s.id, "claim_tasks", args, &out); err != nil {
		return nil, err
	}
	s.after = out.After
	return out.Tasks.ID, nil
}

// completionArgs is what a completion sends for a task besides its id.
type completionArgs struct {
	Output json.RawMessage
	Usage  json.RawMessage
}

// engineCompletion runs one no-op task through the engine's runner (the
// offline model, as throughput-noop's) and returns the output and usage its
// completion sent, so that the scenario's completions carry what the
// engine's do. Its usage is about 500 bytes (the final call's token counts,
// model and response ids, regenerations, and extra.usage: every usage field
// of every call and the estimated cost); a hand-written one without the
// nested usage made the completion look about a third cheaper
// (docs/performance.md, twenty-fifth round).
func engineCompletion(ctx context.Context, e *env) (completionArgs, error) {
	var out completionArgs
	db, user, err := noopQueue(ctx, e, 1, 0) // throughput-noop's task
	if err != nil {
		return out, err
	}
	defer db.close()
	id, err := newClaimsIdentity().Identity(ctx, user)
	if err != nil {
		return out, err
	}
	gen, err := offlineModel()
	if err != nil {
		return out, err
	}
	capture := &completionCapture{DB: supabase.NewDirect(db.Pool, nil)}
	runner := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "sql-api", MaxRegenerations: -1}, capture, gen)
	claimed, err := runner.Claim(ctx, id, 1, nil)
	if err != nil {
		return out, fmt.Errorf("error claiming the engine's task: %w", err)
	}
	if len(claimed) != 1 {
		return out, fmt.Errorf("claimed %d of the engine's one task", len(claimed))
	}
	if res := runner.Run(ctx, id, &claimed[0]); res.Outcome != pipeline.OutcomeCompleted {
		return out, fmt.Errorf("the engine's task ended %q: %v", res.Outcome, res.Err)
	}
	if capture.done.Output == nil || capture.done.Usage == nil {
		return out, errors.New("the engine completed its task without a complete_task call")
	}
	return capture.done, nil
}

// completionCapture records the output and usage of the complete_task calls
// it passes on.
type completionCapture struct {
	supabase.DB
	done completionArgs
}

func (c *completionCapture) RPC(ctx context.Context, id supabase.Identity, fn string, args any, out any) error {
	if m, ok := args.(map[string]any); ok && fn == "complete_task" {
		var err error
		if c.done.Output, err = json.Marshal(m["p_output"]); err != nil {
			return fmt.Errorf("error encoding the engine's output: %w", err)
		}
		if c.done.Usage, err = json.Marshal(m["p_usage"]); err != nil {
			return fmt.Errorf("error encoding the engine's usage: %w", err)
		}
	}
	return c.DB.RPC(ctx, id, fn, args, out)
}

// completeOrchable completes ids as the engine's completer does: one task
// alone with complete_task (what the completer sends when nothing else
// waits), several with complete_tasks, one item per task.
func (s *sqlAPISide) completeOrchable(ctx context.Context, ids []uuid.UUID) error {
	if len(ids) == 1 {
		var out struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		err := s.direct.RPC(ctx, s.id, "complete_task", map[string]any{
			"p_task_id": ids[0], "p_worker": "sql-api", "p_output": s.done.Output, "p_usage": s.done.Usage,
		}, &out)
		if err == nil && out.Status != "completed" {
			err = fmt.Errorf("complete_task: the task ended %q (%s)", out.Status, out.Error)
		}
		return err
	}
	type item struct {
		TaskID uuid.UUID       `json:"task_id"`
		Output json.RawMessage `json:"output"`
		Usage  json.RawMessage `json:"usage"`
	}
	items := make([]item, len(ids))
	for i, id := range ids {
		items[i] = item{TaskID: id, Output: s.done.Output, Usage: s.done.Usage}
	}
	var results []struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := s.direct.RPC(ctx, s.id, "complete_tasks", map[string]any{"p_worker": "sql-api", "p_items": items}, &results); err != nil {
		return err
	}
	for _, r := range results {
		if r.Status != "completed" {
			return fmt.Errorf("complete_tasks: an item ended %q (%s)", r.Status, r.Error)
		}
	}
	return nil
}

func schedstatPath(pid int) string {
	return filepath.Join("/proc", strconv.Itoa(pid), "schedstat")
}

// readSchedstat returns the CPU time the process has run, in nanoseconds
// (the first field of /proc/<pid>/schedstat).
func readSchedstat(pid int) (int64, error) {
	b, err := os.ReadFile(schedstatPath(pid))
	if err != nil {
		return 0, fmt.Errorf("error reading the backend's CPU time: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("/proc schedstat: unexpected format")
	}
	return strconv.ParseInt(f[0], 10, 64)
}
