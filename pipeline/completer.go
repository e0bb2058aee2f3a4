package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/google/uuid"

	"github.com/orchable/orchable/supabase"
)

// completer writes completions with group commit: per user, one batch is in
// flight at a time; completions that arrive meanwhile wait and go together
// in the next complete_tasks call (one transaction, one commit). Under load
// many tasks share one round trip and one commit.
//
// Alone, a completion is written at once, unless it is a leaf's: the
// completion of a task whose template's last completion made nothing
// (completed, created 0, waiting 0: no successor, no barrier) waits up to
// linger for others of its owner to go with it. Where model calls take
// seconds, tasks finish a few at a time, and a call per completion was most
// of what a task cost the database (docs/performance.md, thirty-second
// round). A leaf's completion gates no successor, so the wait adds nothing
// to a pipeline's stage overhead; any other completion is written at once,
// with the leaves waiting before it. Which templates are leaves is learnt
// from the results (SQL decides what a completion makes): a template's
// first completion is written at once, and one that made something is no
// longer a leaf. A task whose own next_task_config gives it successors
// under a leaf template waits up to linger once; that is all a wrong guess
// costs.
type completer struct {
	db       supabase.DB
	gate     *callGate
	worker   string
	maxBatch int
	// timeout bounds each call (RunnerConfig.WriteTimeout; 0: no bound).
	// It is set per call, not per completion: a completion that waits for
	// a group in flight has no timer of its own, and a group's call gets
	// the whole timeout, however long its first completion waited.
	timeout time.Duration

	// linger is how long a leaf's completion waits for others (0: none).
	linger time.Duration
	// afterFunc is time.AfterFunc (tests replace it).
	afterFunc func(time.Duration, func()) stopper
	// lingerStarted, when a test sets it (Runner.InitTestSignals),
	// receives a value each time a leaf's completion starts waiting for
	// others: sent under mu, so the wait has begun when it is received.
	lingerStarted chan struct{}

	mu     sync.Mutex
	queues map[uuid.UUID]*completionQueue
	// leaves holds the outcome of the last completion of each owner's
	// template: true when it made nothing (see the type's comment). Keyed
	// by owner as well, so no tenant's tasks decide whether another's wait
	// (SPEC §14). At most maxLeaves entries.
	leaves map[leafKey]bool
	// flushed: the service is stopping, nothing waits any more (flush).
	flushed bool
}

// maxLeaves bounds the templates the completer remembers; past it the
// memory starts again (every template's next completion is written at once).
const maxLeaves = 10000

// leafKey is an owner's template ("" for a task without one).
type leafKey struct {
	user uuid.UUID
	tpl  string
}

// stopper is a timer's Stop.
type stopper interface{ Stop() bool }

type completionQueue struct {
	waiting []*completion
	// lingering is the timer of a group of leaves waiting for more (nil:
	// none; the queue exists while a group is written or lingers).
	lingering stopper
}

type completion struct {
	ctx  context.Context //nolint:containedctx // the waiting caller's context (no deadline: each call gets the completer's timeout), used for its fallback write
	id   supabase.Identity
	key  leafKey        // the task's owner and template: what leaves is keyed by
	args map[string]any // task_id, output, usage
	// then receives the result, on the goroutine that wrote the completion
	// (completeThen).
	then func(completionResult)
}

// itemOutcome is one item's result in complete_tasks' result.
type itemOutcome struct {
	Status  string `json:"status"`
	Error   string `json:"error"`
	Code    string `json:"code"`
	Created *int   `json:"created"`
	Waiting *int   `json:"waiting"`
}

// madeNothing says whether a completion's result is a leaf's: completed,
// with nothing created and no barrier waiting (a duplicate, which reports
// no waiting, says nothing).
func madeNothing(status string, created, waiting *int) bool {
	return status == "completed" && created != nil && *created == 0 && waiting != nil && *waiting == 0
}

// decodeOutcomes decodes complete_tasks' result, an array of one outcome
// per item. It runs for every group of completions, so it uses jsonv1, as
// decodeClaim does, with encoding/json's semantics for itemOutcome
// (FuzzDecodeOutcomesMatchesEncodingJSON): decoded into raw items and then
// each item on its own with encoding/json, 100 outcomes cost about four
// times as much (BenchmarkDecodeOutcomes).
func decodeOutcomes(raw []byte, out *[]itemOutcome) error {
	if err := jsonv1.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("error decoding complete_tasks result: %w", err)
	}
	return nil
}

type completionResult struct {
	Status string
	Error  string
	err    error
	// leaf is madeNothing of the result (false when it failed).
	leaf bool
}

// maxCompletions is the most items one complete_tasks call takes (its
// p_items bound).
const maxCompletions = 1000

func newCompleter(db supabase.DB, gate *callGate, worker string, maxBatch int, timeout, linger time.Duration) *completer {
	return &completer{
		db: db, gate: gate, worker: worker, maxBatch: min(max(maxBatch, 1), maxCompletions), timeout: timeout,
		linger: max(linger, 0), afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		queues: map[uuid.UUID]*completionQueue{}, leaves: map[leafKey]bool{},
	}
}

// callContext is ctx bounded by the completer's timeout, for one call.
func (c *completer) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// completeThen writes one completion and calls then with its result. No
// goroutine waits for it. When none of user's completions is being
// written, the calling goroutine writes this one at once, then every group
// of user's that queued meanwhile, and returns when none is left (then
// runs after the first call); unless it is a leaf's (tpl's last completion
// made nothing) and mayWait (nothing waits for its write: its task gave
// back its slot), when it waits up to the linger for others, and the group
// is written on the timer's goroutine, or on that of a completion that
// must not wait. Otherwise the completion waits for the next group, and
// then runs on the goroutine that writes that group, after its call. So
// then must not block: the completions after it wait for it.
// Each call a completion takes part in is bounded by the completer's
// timeout; ctx should carry no deadline of its own (the caller's values
// and cancellation only).
func (c *completer) completeThen(ctx context.Context, id supabase.Identity, user uuid.UUID, tpl string, mayWait bool, args map[string]any, then func(completionResult)) {
	if c.maxBatch <= 1 {
		res := c.single(ctx, id, args)
		c.learn(leafKey{user, tpl}, res.err == nil, res.leaf)
		then(res)
		return
	}
	key := leafKey{user, tpl}
	req := &completion{ctx: ctx, id: id, key: key, args: args, then: then}
	c.mu.Lock()
	q, inFlight := c.queues[user]
	if !inFlight {
		q = &completionQueue{}
		c.queues[user] = q
		if mayWait && c.linger > 0 && !c.flushed && c.leaves[key] {
			// A leaf alone: wait for others (lingered writes the group).
			q.waiting = append(q.waiting, req)
			q.lingering = c.afterFunc(c.linger, func() { c.lingered(user, q) })
			if c.lingerStarted != nil {
				c.lingerStarted <- struct{}{}
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.drain(user, []*completion{req})
		return
	}
	q.waiting = append(q.waiting, req)
	if q.lingering != nil && (!mayWait || !c.leaves[key] || len(q.waiting) >= c.maxBatch) && q.lingering.Stop() {
		// Lingering leaves and a completion that must not wait (one that
		// is not a leaf's, or whose task kept its slot: the dispatcher's
		// results in writing are at their bound), or a full group: written
		// now, on this goroutine, the leaves with it.
		q.lingering = nil
		batch := q.next(c.maxBatch)
		c.mu.Unlock()
		c.drain(user, batch)
		return
	}
	c.mu.Unlock()
}

// next takes the next group off q's waiting completions (groupSize of
// them). It must be called with the completer's mu held.
func (q *completionQueue) next(maxBatch int) []*completion {
	n := groupSize(q.waiting, maxBatch)
	batch := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	return batch
}

// flush writes every group of leaves that waits, now (each on a goroutine
// of its own), and from now on no completion waits: the dispatcher is
// stopping, and waits for every result to be written.
func (c *completer) flush() {
	c.mu.Lock()
	c.flushed = true
	var groups [][]*completion
	var users []uuid.UUID
	for user, q := range c.queues {
		if q.lingering != nil && q.lingering.Stop() {
			q.lingering = nil
			groups = append(groups, q.next(c.maxBatch))
			users = append(users, user)
		}
	}
	c.mu.Unlock()
	for i, batch := range groups {
		go c.drain(users[i], batch)
	}
}

// lingered writes the group of user's leaves whose wait is over (q is
// user's queue, which the timer that calls it kept).
func (c *completer) lingered(user uuid.UUID, q *completionQueue) {
	c.mu.Lock()
	q.lingering = nil
	batch := q.next(c.maxBatch)
	c.mu.Unlock()
	c.drain(user, batch)
}

// learn records whether a written completion of an owner's template made
// nothing (written: its write succeeded, so leaf says so).
func (c *completer) learn(key leafKey, written, leaf bool) {
	if !written || c.linger <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.leaves[key]; !ok && len(c.leaves) >= maxLeaves {
		clear(c.leaves)
	}
	c.leaves[key] = leaf
}

// drain writes batches for the user until nobody is waiting.
func (c *completer) drain(user uuid.UUID, batch []*completion) {
	for {
		c.write(batch)
		c.mu.Lock()
		q := c.queues[user]
		if len(q.waiting) == 0 {
			delete(c.queues, user)
			c.mu.Unlock()
			return
		}
		batch = q.next(c.maxBatch)
		c.mu.Unlock()
	}
}

// maxGroupOutput bounds the bytes of the outputs one group writes. A group
// takes up to maxBatch completions, but stops before the one that would
// take its outputs past this bound (it takes at least one). A large output
// is mostly a split, whose children the same call inserts: 1,000 of them
// in one call could outlast the statement timeout PostgREST applies
// (8 s for authenticated on Supabase), and then every completion of the
// group is written again alone. The bound also keeps the request's body
// within what a gateway in front of PostgREST accepts.
const maxGroupOutput = 1 << 20

// groupSize is how many of waiting the next group takes.
func groupSize(waiting []*completion, maxBatch int) int {
	n, size := 0, 0
	for n < len(waiting) && n < maxBatch {
		if out, ok := waiting[n].args["p_output"].(json.RawMessage); ok {
			size += len(out)
		}
		if n > 0 && size > maxGroupOutput {
			break
		}
		n++
	}
	return n
}

func (c *completer) write(batch []*completion) {
	if len(batch) == 1 {
		r := batch[0]
		c.deliver(r, c.single(r.ctx, r.id, r.args))
		return
	}
	var raw json.RawMessage
	ctx, cancel := c.callContext(batch[0].ctx)
	err := c.gate.rpc(ctx, c.db, batch[0].id, "complete_tasks", completionCall{worker: c.worker, batch: batch}, &raw)
	cancel()
	var results []itemOutcome
	if err == nil {
		err = decodeOutcomes(raw, &results)
	}
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("complete_tasks returned %d results for %d items", len(results), len(batch))
	}
	for i, r := range batch {
		if err != nil {
			// The whole call failed, or its result could not be read:
			// complete_task is idempotent (a task already completed with
			// this output is a duplicate), so each falls back to its own
			// call.
			c.deliver(r, c.single(r.ctx, r.id, r.args))
			continue
		}
		res := results[i]
		if res.Code != "" {
			// This item failed inside the batch (its changes were rolled
			// back to its savepoint): a deadlock or serialisation conflict
			// with another batch is retried alone; anything else is reported.
			if res.Code == "40P01" || res.Code == "40001" || res.Code == "55P03" {
				c.deliver(r, c.single(r.ctx, r.id, r.args))
				continue
			}
			r.then(completionResult{err: supabase.NewError(res.Code, res.Error, "", "", true)})
			continue
		}
		c.deliver(r, completionResult{Status: res.Status, Error: res.Error, leaf: madeNothing(res.Status, res.Created, res.Waiting)})
	}
}

// deliver learns from r's result (whether its template is a leaf's) and
// hands it to r.then.
func (c *completer) deliver(r *completion, res completionResult) {
	c.learn(r.key, res.err == nil, res.leaf)
	r.then(res)
}

func (c *completer) single(ctx context.Context, id supabase.Identity, args map[string]any) completionResult {
	var out struct {
		Status  string `json:"status"`
		Error   string `json:"error"`
		Created *int   `json:"created"`
		Waiting *int   `json:"waiting"`
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	if err := c.gate.rpc(supabase.Idempotent(ctx), c.db, id, "complete_task", args, &out); err != nil {
		return completionResult{err: err}
	}
	return completionResult{Status: out.Status, Error: out.Error, leaf: madeNothing(out.Status, out.Created, out.Waiting)}
}
