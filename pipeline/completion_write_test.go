package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// failingWrites is a DB whose completion writes fail while failures lasts:
// with a statement timeout, as on a real project under load, or, when
// unavailable is set, as while the database restarts.
type failingWrites struct {
	supabase.DB

	unavailable bool
	failures    atomic.Int64
	writes      atomic.Int64
}

func (f *failingWrites) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	if fn == "complete_task" || fn == "complete_tasks" {
		f.writes.Add(1)
		if f.failures.Add(-1) >= 0 {
			if f.unavailable {
				return supabase.NewError("57P03", "the database system is starting up", "", "", true)
			}
			return supabase.NewError("57014", "canceling statement due to statement timeout", "", "", true)
		}
	}
	return f.DB.RPC(ctx, id, fn, args, out)
}

// TestCompletionWriteFailureNeverCallsTheModelAgain: a valid answer whose
// completion cannot be written is written again, and when that cannot
// succeed the task fails with the reason; the model is called once either
// way (before, the lease expired and the task ran the model again). While
// the database is unavailable (a restart: 57P03), the writes go on for as
// long as a lease lasts, so a restart longer than four attempts' pauses
// (1.4 s) loses no answer; they end with the lease. The runner's clock is
// fake: its pauses take no real time.
func TestCompletionWriteFailureNeverCallsTheModelAgain(t *testing.T) {
	t.Parallel()
	const lease = time.Minute
	for _, tt := range []struct {
		name             string
		givenUnavailable bool
		givenFails       int64
		expectStatus     string
		expectWrites     int64
	}{
		{"WrittenOnRetry", false, 2, "completed", 3},
		{"NeverWritable", false, 1 << 30, "failed", 4},
		{"UnavailableLongerThanFourAttempts", true, 8, "completed", 9},
		// Pauses of 0.2, 0.4, …, 3.2 s, then 5 s: the last write that
		// starts within the lease is the 16th. The task is not failed for
		// an unavailable database: it stays processing until its lease
		// expires, and then runs again.
		{"UnavailableForAWholeLease", true, 1 << 30, "processing", 16},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			p := "cw" + uuid.NewString()[:6]
			b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo valid", cfg: map[string]any{"cardinality": "1:1"}})
			b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 1})

			db := &failingWrites{DB: b.db, unavailable: tt.givenUnavailable}
			db.failures.Store(tt.givenFails)
			e := &engine{finished: make(chan pipeline.Result, 16)}
			clock := baseservicetest.NewFakeClock(testStart())
			r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cw-" + p, LeaseDuration: lease, Archetype: clock.Archetype(nil)}, db, b.gen)
			d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, ClaimBatch: 1, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
			d.Start(ctx)
			t.Cleanup(func() { _ = d.Stop(context.Background()) })
			e.disps = append(e.disps, d)
			if tt.expectStatus == "processing" {
				// Left to its lease: the one task finishes as lost.
				e.notify(b.user)
				select {
				case res := <-e.finished:
					require.Equal(t, pipeline.OutcomeLost, res.Outcome)
					require.ErrorIs(t, res.Err, supabase.ErrUnavailable)
				case <-time.After(60 * time.Second):
					t.Fatal("the task did not finish")
				}
			} else {
				b.quiesce(ctx, t, e, b.user)
			}

			rows := b.tree(ctx, t, b.user)
			require.Len(t, rows, 1)
			require.Equal(t, tt.expectStatus, rows[0].Status, rows[0].ErrorMessage)
			require.EqualValues(t, 1, b.gen.calls.Load(), "the model is called once for an answer that was valid")
			require.Equal(t, tt.expectWrites, db.writes.Load(), "writes of the completion")
			switch tt.expectStatus {
			case "failed":
				require.Contains(t, rows[0].ErrorMessage, "output was valid but could not be written")
				require.Contains(t, rows[0].ErrorMessage, fmt.Sprintf("after %d attempts", tt.expectWrites))
				require.Contains(t, rows[0].ErrorMessage, "57014")
			case "completed":
				require.JSONEq(t, `{"value":"valid"}`, string(rows[0].Output))
			}
		})
	}
}

// heldWrites is a DB whose completion writes wait until release is closed;
// each one announces itself on started first.
type heldWrites struct {
	supabase.DB

	started chan struct{}
	release chan struct{}
}

func (f *heldWrites) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	if fn == "complete_task" || fn == "complete_tasks" {
		f.started <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.DB.RPC(ctx, id, fn, args, out)
}

// announcingModel announces each model call on called, then answers as its
// Generator does; the third call first waits for third to close.
type announcingModel struct {
	pipeline.Generator

	called chan struct{}
	third  chan struct{}
	calls  *atomic.Int64
}

func (m announcingModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	m.called <- struct{}{}
	if m.calls.Add(1) == 3 {
		select {
		case <-m.third:
		case <-ctx.Done():
			return model.Response{}, context.Cause(ctx)
		}
	}
	return m.Generator.Generate(ctx, req)
}

// slotRun is a dispatcher of one slot over three tasks of one 1:1 stage,
// whose completion writes wait until release is called and whose third
// model call waits for gen.third, with the helpers the write-queue tests
// share.
type slotRun struct {
	b          *bundle
	db         *heldWrites
	gen        announcingModel
	e          *engine
	d          *pipeline.Dispatcher
	release    func()
	third      func() // lets the third model call answer
	await      func(what string, c <-chan struct{})
	awaitWrite func(what string) bool
	finished   func(what string)
}

func newSlotRun(t *testing.T, prefix string, cfg pipeline.DispatcherConfig) *slotRun {
	t.Helper()
	b := setup(t)
	ctx := t.Context()
	p := prefix + uuid.NewString()[:6]
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo valid", cfg: map[string]any{"cardinality": "1:1"}})
	b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 1}, map[string]any{"n": 2}, map[string]any{"n": 3})

	s := &slotRun{b: b}
	s.db = &heldWrites{DB: b.db, started: make(chan struct{}, 10), release: make(chan struct{})}
	s.gen = announcingModel{Generator: b.gen, called: make(chan struct{}, 10), third: make(chan struct{}), calls: new(atomic.Int64)}
	s.e = &engine{finished: make(chan pipeline.Result, 16)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: prefix + "-" + p}, s.db, s.gen)
	cfg.Concurrency, cfg.ClaimBatch, cfg.Observer = 1, 1, chanObserver{s.e.finished}
	s.d = pipeline.NewDispatcher(&cfg, claimsIdentity{}, r)
	wrote := s.d.InitTestSignals()
	s.d.Start(ctx)
	t.Cleanup(func() { _ = s.d.Stop(context.Background()) })
	var released sync.Once
	s.release = func() { released.Do(func() { close(s.db.release) }) }
	t.Cleanup(s.release) // before Stop (cleanups run last first): a failed test leaves no write held
	var thirdOnce sync.Once
	s.third = func() { thirdOnce.Do(func() { close(s.gen.third) }) }
	t.Cleanup(s.third) // nor a model call held
	s.e.disps = append(s.e.disps, s.d)
	s.d.Notify(b.user)

	deadline := time.After(30 * time.Second)
	s.await = func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-deadline:
			t.Fatalf("never happened: %s", what)
		}
	}
	s.awaitWrite = func(what string) bool {
		t.Helper()
		select {
		case freed := <-wrote:
			return freed
		case <-deadline:
			t.Fatalf("never happened: %s", what)
			return false
		}
	}
	s.finished = func(what string) {
		t.Helper()
		select {
		case <-s.e.finished:
		case <-deadline:
			t.Fatalf("never happened: %s", what)
		}
	}
	return s
}

// untilSecondCall waits for the first task to give back its slot and its
// write to start (and be held), then for the second task's model call.
func (s *slotRun) untilSecondCall(t *testing.T) {
	t.Helper()
	s.await("the first task's model call", s.gen.called)
	require.True(t, s.awaitWrite("the first task's work done"), "the first task gives back its slot while its result is written")
	s.await("the first task's write", s.db.started)
	s.await("the second task's model call, while the first task's result is being written", s.gen.called)
}

// finish releases the held writes and checks that the three tasks end
// completed, each with one model call.
func (s *slotRun) finish(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	s.release()
	s.b.quiesce(ctx, t, s.e, s.b.user)
	rows := s.b.tree(ctx, t, s.b.user)
	require.Equal(t, map[string]int{"completed": 3}, countBy(rows, func(r row) string { return r.Status }))
	require.EqualValues(t, 3, s.b.gen.calls.Load(), "each task called the model once")
	n, size := s.d.WritesHeld()
	require.Zero(t, n, "no result left in the write queue")
	require.Zero(t, size, "no byte left in the write queue")
}

// TestSlotGivenBackWhileResultIsWritten: a task whose work is done gives back
// its slot while its result is written, so the next task runs during that
// write (before, the slot was held until the write ended, and every task
// waited for the writes of the ones before it); past the write queue
// (DispatcherConfig.WriteQueue: Concurrency results always, more within
// WriteQueue and WriteQueueBytes), a task keeps its slot until written.
func TestSlotGivenBackWhileResultIsWritten(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  pipeline.DispatcherConfig
	}{
		{"concurrency_alone", pipeline.DispatcherConfig{WriteQueue: -1}},
		{"queue_full", pipeline.DispatcherConfig{WriteQueue: 1}},
		{"bytes_full", pipeline.DispatcherConfig{WriteQueue: 2, WriteQueueBytes: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSlotRun(t, "sw", tt.cfg)
			s.untilSecondCall(t)
			require.False(t, s.awaitWrite("the second task's work done"),
				"with the write queue full, the second task keeps its slot until its own result is written")
			select {
			case <-s.gen.called:
				t.Fatal("a third task ran while the only slot was held")
			default:
			}
			require.Equal(t, 2, s.d.Stats().Running, "both tasks are running until their results are written")

			// Both writes end; the third task, which takes the second one's
			// slot, waits in its model call until both have finished (their
			// slots and write counts given back), so what it sees does not
			// depend on which goroutine runs first.
			s.release()
			s.finished("the first task")
			s.finished("the second task")
			s.third()
			require.True(t, s.awaitWrite("the third task's work done"), "the third task's result is the only one being written")
			s.finish(t)
		})
	}
}

// TestWriteQueueHoldsResultsBeyondConcurrency: with one slot and a write
// queue of two, the second task gives back its slot while the first task's
// result is still being written, so the third runs during both writes; the
// third then keeps its slot, the queue being full.
func TestWriteQueueHoldsResultsBeyondConcurrency(t *testing.T) {
	t.Parallel()
	s := newSlotRun(t, "wq", pipeline.DispatcherConfig{WriteQueue: 2})
	s.untilSecondCall(t)
	require.True(t, s.awaitWrite("the second task's work done"),
		"one result being written with one slot: the second gives back its slot too, within the write queue")
	s.await("the third task's model call, while two results wait to be written", s.gen.called)
	s.third()
	require.False(t, s.awaitWrite("the third task's work done"), "two results being written fill the queue: the third keeps its slot")
	require.Equal(t, 3, s.d.Stats().Running, "every task runs until its result is written")
	n, size := s.d.WritesHeld()
	require.Equal(t, 2, n, "the first two results are in the write queue")
	require.Positive(t, size, "with their bytes")
	s.finish(t)
}

// countedCalls records the most claims and completion writes in flight at
// once.
type countedCalls struct {
	supabase.DB

	inFlight atomic.Int64
	most     atomic.Int64
}

func (c *countedCalls) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	if fn == "claim_tasks" || fn == "complete_tasks" || fn == "complete_task" {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
		}
	}
	return c.DB.RPC(ctx, id, fn, args, out)
}

// TestRunnerBoundsItsDatabaseCalls: with many users working at once, the
// runner has at most DBCalls claims and completion writes in flight (the
// rest wait in the engine; DBCallWait is long here, so none goes ahead
// without a place), and every task still completes with its successors.
func TestRunnerBoundsItsDatabaseCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	users := []uuid.UUID{b.user}
	for range 5 {
		users = append(users, dbtest.CreateUser(ctx, t, b.pool))
	}
	for _, u := range users {
		p := "gate" + uuid.NewString()[:6]
		b.templates(ctx, t, u,
			stage{id: p + "A", key: "a", prompt: "FAKE echo one", next: []string{p + "B"}, cfg: map[string]any{"cardinality": "1:1"}},
			stage{id: p + "B", key: "b", prompt: "FAKE echo two"})
		b.launch(ctx, t, u, p+"A", map[string]any{"n": 1}, map[string]any{"n": 2}, map[string]any{"n": 3}, map[string]any{"n": 4})
	}
	db := &countedCalls{DB: b.db}
	e := &engine{finished: make(chan pipeline.Result, 1000)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "gate-" + uuid.NewString()[:6], DBCalls: 2, DBCallWait: time.Hour}, db, b.gen)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 24, ClaimBatch: 2, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	e.disps = append(e.disps, d)
	e.notify(users...)
	b.quiesce(ctx, t, e, users...)

	require.LessOrEqual(t, db.most.Load(), int64(2), "claims and completion writes in flight at once")
	var completed int
	require.NoError(t, b.pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = any($1) and status = 'completed'`, users).Scan(&completed))
	require.Equal(t, len(users)*4*2, completed, "every task and its successor")
}

// completionCalls records the completions of each complete_task and
// complete_tasks call.
type completionCalls struct {
	supabase.DB

	mu    sync.Mutex
	sizes []int
}

func (c *completionCalls) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	n := 0
	switch fn {
	case "complete_task":
		n = 1
	case "complete_tasks":
		body, _, err := args.(supabase.EncodedArgs).EncodeArgs()
		if err != nil {
			return err
		}
		var call struct {
			Items []json.RawMessage `json:"p_items"`
		}
		if err := json.Unmarshal(body, &call); err != nil {
			return err
		}
		n = len(call.Items)
	}
	if n > 0 {
		c.mu.Lock()
		c.sizes = append(c.sizes, n)
		c.mu.Unlock()
	}
	return c.DB.RPC(ctx, id, fn, args, out)
}

// TestLeafCompletionWaitsOnlyWithItsSlotGivenBack: a leaf's completion (its
// template's last completion made nothing) waits for others of its owner
// (RunnerConfig.CompletionLinger, here far longer than the test) only when
// its task gave back its slot. With one slot: the first task's completion
// is written alone (its template not yet known to be a leaf's); the second
// task gives back its slot and its completion waits; the third keeps its
// slot (Concurrency results already being written, WriteQueue -1), so its
// completion is written at once, and the waiting one with it: a linger
// never holds a slot (the third's model call answers only once the
// second's completion waits). Then a fourth: stopping the dispatcher after its model call writes
// its completion at once, whether it was waiting by then or came after
// (TestLeafCompletionsLinger checks the flush itself).
func TestLeafCompletionWaitsOnlyWithItsSlotGivenBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	p := "lw" + uuid.NewString()[:6]
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo valid", cfg: map[string]any{"cardinality": "1:1"}})

	db := &completionCalls{DB: b.db}
	gen := announcingModel{Generator: b.gen, called: make(chan struct{}, 10), third: make(chan struct{}), calls: new(atomic.Int64)}
	var thirdOnce sync.Once
	third := func() { thirdOnce.Do(func() { close(gen.third) }) }
	e := &engine{finished: make(chan pipeline.Result, 16)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "lw-" + p, CompletionLinger: time.Hour}, db, gen)
	lingering := r.InitTestSignals()
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 1, ClaimBatch: 1, ClaimAhead: -1, WriteQueue: -1, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Stop(context.Background())
		}
	})
	t.Cleanup(third) // before Stop (cleanups run last first): a failed test leaves no model call held
	e.disps = append(e.disps, d)
	deadline := time.After(30 * time.Second)
	finished := func(what string) {
		t.Helper()
		select {
		case <-e.finished:
		case <-deadline:
			t.Fatalf("never happened: %s", what)
		}
	}
	sizes := func() []int {
		db.mu.Lock()
		defer db.mu.Unlock()
		return append([]int(nil), db.sizes...)
	}

	b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 1})
	d.Notify(b.user)
	finished("the first task")
	require.Equal(t, []int{1}, sizes(), "the template's first completion, alone")

	b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 2}, map[string]any{"n": 3})
	d.Notify(b.user)
	// The third task's model call answers only once the second's
	// completion waits: the second gives back its slot before it hands its
	// completion over, so the third could otherwise be written first, alone.
	select {
	case <-lingering:
	case <-deadline:
		t.Fatal("never happened: the second task's completion waiting")
	}
	require.Equal(t, []int{1}, sizes(), "the second's completion waits, unwritten")
	third()
	finished("the second and third tasks")
	finished("the second and third tasks")
	require.Equal(t, []int{1, 2}, sizes(), "the waiting second with the third, which kept its slot")

	b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 4})
	d.Notify(b.user)
	for range 4 {
		select {
		case <-gen.called:
		case <-deadline:
			t.Fatal("never happened: the fourth task's model call")
		}
	}
	stopped = true
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(stopCtx), "stopping writes the waiting completion at once")
	finished("the fourth task")
	rows := b.tree(ctx, t, b.user)
	require.Equal(t, map[string]int{"completed": 4}, countBy(rows, func(r row) string { return r.Status }))
	require.Equal(t, []int{1, 2, 1}, sizes())
}
