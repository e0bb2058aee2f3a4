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
	c := newCompleter(db, nil, "w", 5000, 0)
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
	c := newCompleter(db, nil, "w", 1000, 0)
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
		c := newCompleter(db, nil, "w", 1000, bound)
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
	c := newCompleter(db, nil, "w", 1000, 0)
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
		c.completeThen(context.Background(), identity, user, args(), then("first"))
		record("first's goroutine returned")
		close(firstReturned)
	}()
	await("the first completion's write", db.started)

	// Two more while it is written: each returns at once, unwritten.
	othersReturned := make(chan struct{})
	go func() {
		c.completeThen(context.Background(), identity, user, args(), then("second"))
		c.completeThen(context.Background(), identity, user, args(), then("third"))
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
