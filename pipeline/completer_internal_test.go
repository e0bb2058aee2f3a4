package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

// delivered holds each completion's result, for the tests that write
// completions themselves (drain, write) and read the results after.
type delivered map[*completion]chan completionResult

// add gives r a result to read from d[r].
func (d delivered) add(r *completion) *completion {
	ch := make(chan completionResult, 1)
	d[r] = ch
	r.then = func(res completionResult) { ch <- res }
	return r
}

// groupSizeDB answers every complete_tasks item and complete_task call
// with "completed" and records the size of each call.
type groupSizeDB struct {
	mu    sync.Mutex
	sizes []int
}

func (d *groupSizeDB) RPC(_ context.Context, _ supabase.Identity, fn string, args, out any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch fn {
	case "complete_tasks":
		n := len(args.(completionCall).batch)
		if n > maxCompletions {
			return fmt.Errorf("p_items must be a JSON array of at most %d", maxCompletions)
		}
		d.sizes = append(d.sizes, n)
		return json.Unmarshal([]byte("["+strings.TrimSuffix(strings.Repeat(`{"status": "completed"},`, n), ",")+"]"), out)
	case "complete_task":
		d.sizes = append(d.sizes, 1)
		return json.Unmarshal([]byte(`{"status": "completed"}`), out)
	}
	return fmt.Errorf("unexpected call %s", fn)
}

func (d *groupSizeDB) Select(context.Context, supabase.Identity, string, supabase.Query, any) error {
	return errors.New("unexpected select")
}

// TestCompletionGroupsTakeWhatOneCallTakes: by default a completion group
// takes up to 1,000 completions, what one complete_tasks call takes, and a
// larger CompleteBatch is held to that bound, so a backlog of 2,500
// completions waiting behind one in flight is written in three calls, none
// refused.
func TestCompletionGroupsTakeWhatOneCallTakes(t *testing.T) {
	t.Parallel()
	require.Equal(t, maxCompletions, (&RunnerConfig{}).withDefaults().CompleteBatch)

	db := &groupSizeDB{}
	c := newCompleter(db, nil, "w", 5000, 0, 0)
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}
	user := uuid.New()
	got := delivered{}
	req := func() *completion {
		return got.add(&completion{ctx: context.Background(), id: identity, args: map[string]any{
			"p_task_id": uuid.New(), "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": completionUsage{},
		}})
	}
	first := req()
	waiting := make([]*completion, 2500)
	for i := range waiting {
		waiting[i] = req()
	}
	// One completion in flight, 2,500 waiting behind it.
	c.queues[user] = &completionQueue{waiting: waiting}
	c.drain(user, []*completion{first})

	require.Equal(t, []int{1, 1000, 1000, 500}, db.sizes)
	for _, r := range append([]*completion{first}, waiting...) {
		res := <-got[r]
		require.NoError(t, res.err)
		require.Equal(t, "completed", res.Status)
	}
	require.Empty(t, c.queues, "the user's queue is gone once drained")
}

// TestCompletionGroupsBoundTheirOutputs: a group stops before the
// completion that would take its outputs past maxGroupOutput (large outputs
// are mostly splits, whose children the same call inserts), and an output
// larger than the bound is still written, alone.
func TestCompletionGroupsBoundTheirOutputs(t *testing.T) {
	t.Parallel()
	db := &groupSizeDB{}
	c := newCompleter(db, nil, "w", 1000, 0, 0)
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}
	user := uuid.New()
	got := delivered{}
	req := func(size int) *completion {
		out := json.RawMessage(`{"items": "` + strings.Repeat("x", size-13) + `"}`)
		require.Len(t, out, size)
		return got.add(&completion{ctx: context.Background(), id: identity, args: map[string]any{
			"p_task_id": uuid.New(), "p_worker": "w", "p_output": out, "p_usage": completionUsage{},
		}})
	}
	first := req(100)
	// Seven of 300 KiB (three fit in 1 MiB), one larger than the bound, and
	// two small ones after it.
	var waiting []*completion
	for range 7 {
		waiting = append(waiting, req(300<<10))
	}
	waiting = append(waiting, req(maxGroupOutput+1), req(100), req(100))
	c.queues[user] = &completionQueue{waiting: waiting}
	c.drain(user, []*completion{first})

	require.Equal(t, []int{1, 3, 3, 1, 1, 2}, db.sizes)
	for _, r := range append([]*completion{first}, waiting...) {
		res := <-got[r]
		require.NoError(t, res.err)
		require.Equal(t, "completed", res.Status)
	}
}

// deadlineDB records, for each call, how far its context's deadline lay
// from the call's start (-1: none), and answers "completed".
type deadlineDB struct {
	groupSizeDB

	left []time.Duration
}

func (d *deadlineDB) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.left = append(d.left, left)
	d.mu.Unlock()
	return d.groupSizeDB.RPC(ctx, id, fn, args, out)
}

// TestCompletionCallsHaveTheWriteTimeout: each complete_tasks and
// complete_task call the completer makes is bounded by its timeout
// (RunnerConfig.WriteTimeout), from the call's start: the completions carry
// no deadline of their own (a completion that waits for a group in flight
// has no timer), and a group's call is not cut short by how long its first
// completion waited. With no timeout, no call has a deadline.
func TestCompletionCallsHaveTheWriteTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Hour
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}
	got := delivered{}
	req := func() *completion {
		return got.add(&completion{ctx: context.Background(), id: identity, args: map[string]any{
			"p_task_id": uuid.New(), "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": completionUsage{},
		}})
	}
	for _, bound := range []time.Duration{timeout, 0} {
		db := &deadlineDB{}
		c := newCompleter(db, nil, "w", 1000, bound, 0)
		user := uuid.New()
		first, waiting := req(), []*completion{req(), req(), req()}
		c.queues[user] = &completionQueue{waiting: waiting}
		c.drain(user, []*completion{first}) // complete_task alone, then one group of three
		for _, r := range append([]*completion{first}, waiting...) {
			require.NoError(t, (<-got[r]).err)
		}
		require.Equal(t, []int{1, 3}, db.sizes)
		require.Len(t, db.left, 2)
		for i, left := range db.left {
			if bound == 0 {
				require.Equal(t, time.Duration(-1), left, "call %d: no timeout, no deadline", i)
				continue
			}
			require.Greater(t, left, timeout-time.Minute, "call %d: the whole timeout from the call's start", i)
			require.LessOrEqual(t, left, timeout, "call %d", i)
		}
	}
}

// heldDB is groupSizeDB whose calls each say they started and then wait
// until release is closed.
type heldDB struct {
	groupSizeDB

	started chan struct{}
	release chan struct{}
}

func (d *heldDB) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	d.started <- struct{}{}
	<-d.release
	return d.groupSizeDB.RPC(ctx, id, fn, args, out)
}

// TestCompletionsWaitOnNoGoroutine: a completion handed to the completer
// while another of its user's is being written returns at once, before it
// is written; its result comes later, on the goroutine writing the user's
// completions, which writes the two that waited as one group after the
// first and then returns. So a task's goroutine does not wait for its
// completion's write (before, each waited for its result, and a goroutine
// of the completer's wrote the groups).
func TestCompletionsWaitOnNoGoroutine(t *testing.T) {
	t.Parallel()
	db := &heldDB{started: make(chan struct{}, 4), release: make(chan struct{})}
	c := newCompleter(db, nil, "w", 1000, 0, 0)
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}
	user := uuid.New()
	args := func() map[string]any {
		return map[string]any{"p_task_id": uuid.New(), "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": completionUsage{}}
	}
	deadline := time.After(30 * time.Second)
	await := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("never happened: %s", what)
		}
	}

	var mu sync.Mutex
	var order []string
	record := func(what string) {
		mu.Lock()
		order = append(order, what)
		mu.Unlock()
	}
	then := func(name string) func(completionResult) {
		return func(res completionResult) {
			if res.err != nil || res.Status != "completed" {
				name += fmt.Sprintf(" (%q, %v)", res.Status, res.err)
			}
			record(name)
		}
	}

	// The first completion is written by its own goroutine, which stays in
	// the call until release.
	firstReturned := make(chan struct{})
	go func() {
		c.completeThen(context.Background(), identity, user, "tpl", true, args(), then("first"))
		record("first's goroutine returned")
		close(firstReturned)
	}()
	await("the first completion's write", db.started)

	// Two more while it is written: each returns at once, unwritten.
	othersReturned := make(chan struct{})
	go func() {
		c.completeThen(context.Background(), identity, user, "tpl", true, args(), then("second"))
		c.completeThen(context.Background(), identity, user, "tpl", true, args(), then("third"))
		close(othersReturned)
	}()
	await("the completions handed over while one is written returned", othersReturned)
	mu.Lock()
	require.Empty(t, order, "nothing is written before the first call returns")
	mu.Unlock()

	close(db.release)
	await("the first completion's goroutine returned", firstReturned)
	require.Equal(t, []string{"first", "second", "third", "first's goroutine returned"}, order,
		"the waiting two got their results from the first's goroutine, before it returned")
	require.Equal(t, []int{1, 2}, db.sizes, "the first alone, then the two that waited as one group")
	require.Empty(t, c.queues, "the user's queue is gone once drained")
}

// leafDB answers complete_task and every complete_tasks item with
// "completed", made[task] children created (0 for a task not in it), and
// records each call's task ids.
type leafDB struct {
	mu    sync.Mutex
	made  map[uuid.UUID]int
	calls [][]uuid.UUID
}

func (d *leafDB) result(a map[string]any) string {
	return fmt.Sprintf(`{"status": "completed", "created": %d, "waiting": 0}`, d.made[a["p_task_id"].(uuid.UUID)])
}

func (d *leafDB) RPC(_ context.Context, _ supabase.Identity, fn string, args, out any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch fn {
	case "complete_tasks":
		var ids []uuid.UUID
		var items []string
		for _, r := range args.(completionCall).batch {
			ids = append(ids, r.args["p_task_id"].(uuid.UUID))
			items = append(items, d.result(r.args))
		}
		d.calls = append(d.calls, ids)
		return json.Unmarshal([]byte("["+strings.Join(items, ",")+"]"), out)
	case "complete_task":
		a := args.(map[string]any)
		d.calls = append(d.calls, []uuid.UUID{a["p_task_id"].(uuid.UUID)})
		return json.Unmarshal([]byte(d.result(a)), out)
	}
	return fmt.Errorf("unexpected call %s", fn)
}

func (d *leafDB) Select(context.Context, supabase.Identity, string, supabase.Query, any) error {
	return errors.New("unexpected select")
}

// sizes is the number of completions in each call so far.
func (d *leafDB) sizes() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for _, c := range d.calls {
		out = append(out, len(c))
	}
	return out
}

// manualTimers stands in for time.AfterFunc: a timer fires when the test
// says so.
type manualTimers struct {
	mu     sync.Mutex
	armed  []*manualTimer
	linger []time.Duration
}

type manualTimer struct {
	f       func()
	stopped bool
	fired   bool
}

func (m *manualTimers) afterFunc(d time.Duration, f func()) stopper {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &manualTimer{f: f}
	m.armed = append(m.armed, t)
	m.linger = append(m.linger, d)
	return &manualStop{m: m, t: t}
}

type manualStop struct {
	m *manualTimers
	t *manualTimer
}

func (s *manualStop) Stop() bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	was := !s.t.stopped && !s.t.fired
	s.t.stopped = true
	return was
}

// fire runs the last timer armed, as time.AfterFunc would when it expires,
// unless it was stopped; it says whether it ran.
func (m *manualTimers) fire() bool {
	m.mu.Lock()
	t := m.armed[len(m.armed)-1]
	run := !t.stopped && !t.fired
	t.fired = true
	m.mu.Unlock()
	if run {
		t.f()
	}
	return run
}

// pending is the number of timers armed and neither fired nor stopped.
func (m *manualTimers) pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.armed {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}

// TestLeafCompletionsLinger: the completion of a task whose template's last
// completion made nothing (a leaf) waits, when none of its owner's is being
// written, for others to be written with it: the waiting group goes in one
// call when its wait is over, when a completion that must not wait comes
// (written at once, the leaves with it), or when the group is full. A
// template's first completion, and every completion of a template whose
// last one made something, is written at once; a leaf template whose
// completion made something stops being one. Without a linger, nothing
// waits.
func TestLeafCompletionsLinger(t *testing.T) {
	t.Parallel()
	const linger = 50 * time.Millisecond
	require.Equal(t, linger, (&RunnerConfig{}).withDefaults().CompletionLinger)
	identity := supabase.Identity{Claims: []byte(`{"sub":"` + uuid.NewString() + `","role":"authenticated"}`)}
	user := uuid.New()

	type completeFunc = func(tpl string) (uuid.UUID, chan completionResult)
	setup := func(maxBatch int, linger time.Duration) (*completer, *leafDB, *manualTimers, completeFunc, func(string, bool) (uuid.UUID, chan completionResult)) {
		db := &leafDB{made: map[uuid.UUID]int{}}
		c := newCompleter(db, nil, "w", maxBatch, 0, linger)
		timers := &manualTimers{}
		c.afterFunc = timers.afterFunc
		completeMay := func(tpl string, mayWait bool) (uuid.UUID, chan completionResult) {
			id := uuid.New()
			ch := make(chan completionResult, 1)
			c.completeThen(context.Background(), identity, user, tpl, mayWait, map[string]any{
				"p_task_id": id, "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": completionUsage{},
			}, func(res completionResult) { ch <- res })
			return id, ch
		}
		complete := func(tpl string) (uuid.UUID, chan completionResult) { return completeMay(tpl, true) }
		return c, db, timers, complete, completeMay
	}
	written := func(t *testing.T, ch chan completionResult) {
		t.Helper()
		select {
		case res := <-ch:
			require.NoError(t, res.err)
			require.Equal(t, "completed", res.Status)
		default:
			t.Fatal("the completion was not written")
		}
	}
	unwritten := func(t *testing.T, ch chan completionResult) {
		t.Helper()
		select {
		case res := <-ch:
			t.Fatalf("the completion was written: %+v", res)
		default:
		}
	}

	t.Run("waits for its linger", func(t *testing.T) {
		t.Parallel()
		c, db, timers, complete, _ := setup(1000, linger)
		_, first := complete("leaf")
		written(t, first) // the template's first completion: not known to be a leaf
		_, second := complete("leaf")
		_, third := complete("leaf")
		unwritten(t, second)
		unwritten(t, third)
		require.Equal(t, []int{1}, db.sizes(), "the two leaves wait")
		require.Equal(t, []time.Duration{linger}, timers.linger, "one wait, of the linger, for the group")
		require.True(t, timers.fire())
		written(t, second)
		written(t, third)
		require.Equal(t, []int{1, 2}, db.sizes(), "the waiting two in one call")
		require.Empty(t, c.queues, "the user's queue is gone once written")
	})

	t.Run("a completion that must not wait takes the leaves with it", func(t *testing.T) {
		t.Parallel()
		c, db, timers, complete, _ := setup(1000, linger)
		_, leaf := complete("leaf")
		written(t, leaf) // the first of its template
		_, a := complete("leaf")
		_, b := complete("leaf")
		unwritten(t, a)
		unwritten(t, b)
		other, ch := complete("other") // a template not known to be a leaf's: must not wait
		written(t, a)
		written(t, b)
		written(t, ch)
		require.Equal(t, []int{1, 3}, db.sizes(), "the two leaves went with the completion that could not wait")
		require.Equal(t, other, db.calls[1][2])
		require.Zero(t, timers.pending(), "the wait was stopped")
		require.False(t, timers.fire(), "a stopped wait writes nothing")
		require.Equal(t, []int{1, 3}, db.sizes())
		require.Empty(t, c.queues)
	})

	t.Run("a template whose completion made something is written at once", func(t *testing.T) {
		t.Parallel()
		_, db, timers, complete, _ := setup(1000, linger)
		_, ch := complete("split")
		written(t, ch) // learnt: a leaf (made nothing)
		next, ch := complete("split")
		unwritten(t, ch)
		db.mu.Lock()
		db.made[next] = 10 // this one makes children
		db.mu.Unlock()
		require.True(t, timers.fire())
		written(t, ch)
		_, ch = complete("split")
		written(t, ch) // no longer a leaf: at once
		require.Equal(t, []int{1, 1, 1}, db.sizes())
		require.Len(t, timers.armed, 1, "no wait after the template made something")
	})

	t.Run("a completion whose task kept its slot does not wait", func(t *testing.T) {
		t.Parallel()
		c, db, timers, complete, completeMay := setup(1000, linger)
		_, ch := complete("leaf")
		written(t, ch)
		_, a := complete("leaf")
		unwritten(t, a)
		_, kept := completeMay("leaf", false) // its slot was not given back: something waits for it
		written(t, a)
		written(t, kept)
		require.Equal(t, []int{1, 2}, db.sizes(), "the lingering leaf went with it")
		require.Zero(t, timers.pending())
		require.Empty(t, c.queues)
		_, alone := completeMay("leaf", false)
		written(t, alone)
		require.Equal(t, []int{1, 2, 1}, db.sizes(), "alone, it is written at once")
		require.Len(t, timers.armed, 1)
	})

	t.Run("a full group does not wait", func(t *testing.T) {
		t.Parallel()
		c, db, timers, complete, _ := setup(3, linger)
		_, ch := complete("leaf")
		written(t, ch)
		var chs []chan completionResult
		for range 3 {
			_, ch := complete("leaf")
			chs = append(chs, ch)
		}
		for _, ch := range chs {
			written(t, ch)
		}
		require.Equal(t, []int{1, 3}, db.sizes(), "written when the group was full")
		require.Zero(t, timers.pending())
		require.Empty(t, c.queues)
	})

	t.Run("flushed when stopping", func(t *testing.T) {
		t.Parallel()
		c, db, timers, complete, _ := setup(1000, linger)
		_, ch := complete("leaf")
		written(t, ch)
		_, a := complete("leaf")
		_, b := complete("leaf")
		unwritten(t, a)
		c.flush() // writes the waiting group on a goroutine of its own
		for _, ch := range []chan completionResult{a, b} {
			select {
			case res := <-ch:
				require.NoError(t, res.err)
			case <-time.After(30 * time.Second):
				t.Fatal("the waiting group was not written when flushed")
			}
		}
		require.Equal(t, []int{1, 2}, db.sizes())
		require.Zero(t, timers.pending(), "its wait was stopped")
		_, ch = complete("leaf")
		written(t, ch) // flushed: nothing waits any more
		require.Equal(t, []int{1, 2, 1}, db.sizes())
		require.Len(t, timers.armed, 1)
	})

	t.Run("learnt per owner", func(t *testing.T) {
		t.Parallel()
		db := &leafDB{made: map[uuid.UUID]int{}}
		c := newCompleter(db, nil, "w", 1000, 0, linger)
		timers := &manualTimers{}
		c.afterFunc = timers.afterFunc
		completeAs := func(owner uuid.UUID) chan completionResult {
			ch := make(chan completionResult, 1)
			c.completeThen(context.Background(), identity, owner, "shared", true, map[string]any{
				"p_task_id": uuid.New(), "p_worker": "w", "p_output": json.RawMessage(`{"ok": true}`), "p_usage": completionUsage{},
			}, func(res completionResult) { ch <- res })
			return ch
		}
		attacker, victim := uuid.New(), uuid.New()
		written(t, completeAs(attacker)) // the attacker's completions of the template make nothing
		unwritten(t, completeAs(attacker))
		written(t, completeAs(victim)) // another owner's first completion of it: not known to be a leaf's
		require.Len(t, timers.armed, 1, "only the attacker's completion waited")
		require.True(t, timers.fire())
		require.Equal(t, []int{1, 1, 1}, db.sizes())
	})

	t.Run("no linger", func(t *testing.T) {
		t.Parallel()
		_, db, timers, complete, _ := setup(1000, 0)
		for range 3 {
			_, ch := complete("leaf")
			written(t, ch)
		}
		require.Equal(t, []int{1, 1, 1}, db.sizes())
		require.Empty(t, timers.armed)
	})
}
