package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// countingModel is heldModel that also records the most calls it held at
// once.
type countingModel struct {
	*heldModel

	in, most atomic.Int64
}

func (m *countingModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	n := m.in.Add(1)
	for {
		most := m.most.Load()
		if n <= most || m.most.CompareAndSwap(most, n) {
			break
		}
	}
	defer m.in.Add(-1)
	return m.heldModel.Generate(ctx, req)
}

// enteredTask waits for the next task to reach the model (within a few
// database round trips; the timeout only bounds a broken run).
func enteredTask(t *testing.T, gen *heldModel, what string) uuid.UUID {
	t.Helper()
	select {
	case id := <-gen.entered:
		return id
	case <-time.After(30 * time.Second):
		t.Fatalf("no task reached the model: %s", what)
		return uuid.Nil
	}
}

// signallingDB sends on called each time fn is called (before the call).
type signallingDB struct {
	supabase.DB

	fn     string
	called chan struct{}
}

func (s *signallingDB) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	if fn == s.fn {
		s.called <- struct{}{}
	}
	return s.DB.RPC(ctx, id, fn, args, out)
}

// stopWithin stops d, cancelling what still runs after a few seconds (a
// failed test may leave calls held in the model).
func stopWithin(ctx context.Context, d *pipeline.Dispatcher) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = d.Stop(sctx)
}

// launchHeld gives user a one-stage template (id prefix+"A", answered by
// heldModel) and launches n rows of it.
func launchHeld(ctx context.Context, t *testing.T, b *bundle, user uuid.UUID, prefix string, n int) {
	t.Helper()
	b.templates(ctx, t, user, stage{id: prefix + "A", key: "held", prompt: "FAKE echo held"})
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{"i": i}
	}
	b.launch(ctx, t, user, prefix+"A", rows...)
}

// awaitCompleted waits for n tasks to finish, each completed (within a few
// database round trips; the timeout only bounds a broken run).
func awaitCompleted(t *testing.T, finished <-chan pipeline.Result, n int) {
	t.Helper()
	for range n {
		select {
		case res := <-finished:
			require.Equal(t, pipeline.OutcomeCompleted, res.Outcome)
		case <-time.After(30 * time.Second):
			t.Fatal("a task never finished")
		}
	}
}

// claimLimits are the p_limit of each claim_tasks call db recorded.
func claimLimits(t *testing.T, db *recordingDB) []int {
	t.Helper()
	var limits []int
	for _, a := range db.args("claim_tasks") {
		args, ok := a.(map[string]any)
		require.True(t, ok)
		n, ok := args["p_limit"].(int)
		require.True(t, ok, "p_limit: %T", args["p_limit"])
		limits = append(limits, n)
	}
	return limits
}

// A user alone in the queue is claimed ClaimAhead tasks beyond its free
// slots once its pace is known (its first claim takes the free slots): they
// start, in claim order, as slots free, with no claim in between, and never
// more than Concurrency run at once. The next claim comes when they have all
// started and a slot is free.
func TestDispatcherClaimsAhead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ahead-" + uuid.NewString()[:8] + "-"
	launchHeld(ctx, t, b, b.user, p, 10)

	db := newRecordingDB(b.db)
	gen := &countingModel{heldModel: &heldModel{entered: make(chan uuid.UUID, 10), release: make(chan struct{})}}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: p}, db, gen)
	finished := make(chan pipeline.Result, 10)
	// A window of an hour: any task finished since the last claim allows
	// every task ClaimAhead allows.
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, ClaimAhead: 3, ClaimAheadWindow: time.Hour, Observer: chanObserver{finished}}, onlyUser{b.user}, r)
	d.Start(ctx)
	t.Cleanup(func() { stopWithin(ctx, d) })
	d.Notify(b.user)

	enteredTask(t, gen.heldModel, "the first of two")
	enteredTask(t, gen.heldModel, "the second of two")
	require.Equal(t, []int{2}, claimLimits(t, db), "the first claim: the free slots, no pace known yet")
	gen.release <- struct{}{}
	enteredTask(t, gen.heldModel, "the first task of the second claim")
	require.Equal(t, []int{2, 4}, claimLimits(t, db), "the freed slot and three ahead")
	// Each of the next three results starts a task claimed ahead in its
	// slot, with no claim.
	for i := range 3 {
		gen.release <- struct{}{}
		enteredTask(t, gen.heldModel, "a task claimed ahead")
		require.Len(t, claimLimits(t, db), 2, "no claim while tasks claimed ahead wait (result %d)", i+2)
	}
	// The next frees a slot with none waiting: one claim, for the free slot
	// and three ahead.
	gen.release <- struct{}{}
	enteredTask(t, gen.heldModel, "the first task of the third claim")
	require.Equal(t, []int{2, 4, 4}, claimLimits(t, db)[:3])
	for range 3 {
		gen.release <- struct{}{}
		enteredTask(t, gen.heldModel, "a task of the third claim")
	}
	for range 2 {
		gen.release <- struct{}{}
	}
	awaitCompleted(t, finished, 10)
	require.LessOrEqual(t, gen.most.Load(), int64(2), "tasks in the model at once")
	var completed int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and status = 'completed'", b.user).Scan(&completed))
	require.Equal(t, 10, completed)
}

// A claim takes ahead no more than the user's tasks finish in
// ClaimAheadWindow at their pace since its last claim: work that takes
// longer than the window per slot (a model call of seconds, against a
// window of milliseconds) is not claimed ahead at all.
func TestDispatcherClaimsAheadOnlyWhatFinishesInTheWindow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "window-" + uuid.NewString()[:8] + "-"
	launchHeld(ctx, t, b, b.user, p, 4)

	db := newRecordingDB(b.db)
	gen := &heldModel{entered: make(chan uuid.UUID, 10), release: make(chan struct{})}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: p}, db, gen)
	finished := make(chan pipeline.Result, 10)
	// A window of a nanosecond: one task finished since the last claim
	// began, microseconds ago at least, is a pace of less than one task per
	// window.
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, ClaimAhead: 3, ClaimAheadWindow: time.Nanosecond, Observer: chanObserver{finished}}, onlyUser{b.user}, r)
	d.Start(ctx)
	t.Cleanup(func() { stopWithin(ctx, d) })
	d.Notify(b.user)
	enteredTask(t, gen, "the first of two")
	enteredTask(t, gen, "the second of two")
	for range 2 {
		gen.release <- struct{}{}
		enteredTask(t, gen, "a task claimed for a freed slot")
	}
	require.Equal(t, []int{2, 1, 1}, claimLimits(t, db)[:3], "the free slots only")
	for range 2 {
		gen.release <- struct{}{}
	}
	awaitCompleted(t, finished, 4)
}

// Tasks claimed ahead wait for a slot only while their user is within its
// fair share: when another user has work, a freed slot goes to that user's
// claim, not to the next task claimed ahead.
func TestDispatcherClaimAheadYieldsToOtherUsers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "yield-" + uuid.NewString()[:8] + "-"
	other := dbtest.CreateUser(ctx, t, b.pool)
	launchHeld(ctx, t, b, b.user, p+"a-", 6)

	gen := &heldModel{entered: make(chan uuid.UUID, 10), release: make(chan struct{})}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: p}, b.db, gen)
	finished := make(chan pipeline.Result, 10)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, ClaimAhead: 2, ClaimAheadWindow: time.Hour, Observer: chanObserver{finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	t.Cleanup(func() { stopWithin(ctx, d) })
	d.Notify(b.user)
	enteredTask(t, gen, "the first user's first task")
	enteredTask(t, gen, "the first user's second task")
	// A result: the next claim takes the freed slot and two ahead.
	gen.release <- struct{}{}
	enteredTask(t, gen, "the first user's third task")

	// The other user's one task, then a slot freed by the first user.
	launchHeld(ctx, t, b, other, p+"b-", 1)
	var otherTask uuid.UUID
	require.NoError(t, b.pool.QueryRow(ctx, "select id from public.ai_tasks where user_id = $1", other).Scan(&otherTask))
	d.Notify(other)
	gen.release <- struct{}{}
	require.Equal(t, otherTask, enteredTask(t, gen, "the next task"), "the freed slot goes to the other user")

	// The first user's other three, the two claimed ahead among them, all
	// run.
	for range 3 {
		gen.release <- struct{}{}
		enteredTask(t, gen, "one of the first user's tasks")
	}
	for range 2 {
		gen.release <- struct{}{}
	}
	awaitCompleted(t, finished, 7)
}

// Stopping releases the tasks claimed ahead that have not started (back to
// plan, for another instance or the next start), and lets the running ones
// finish.
func TestDispatcherStopReleasesTasksClaimedAhead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "stop-" + uuid.NewString()[:8] + "-"
	launchHeld(ctx, t, b, b.user, p, 6)

	db := newRecordingDB(b.db)
	released := &signallingDB{DB: db, fn: "release_task", called: make(chan struct{}, 10)}
	gen := &heldModel{entered: make(chan uuid.UUID, 10), release: make(chan struct{})}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: p}, released, gen)
	finished := make(chan pipeline.Result, 10)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 1, ClaimAhead: 3, ClaimAheadWindow: time.Hour, Observer: chanObserver{finished}}, onlyUser{b.user}, r)
	d.Start(ctx)
	d.Notify(b.user)
	enteredTask(t, gen, "the first task")
	gen.release <- struct{}{}
	enteredTask(t, gen, "the running task")
	require.Equal(t, []int{1, 4}, claimLimits(t, db), "the slot, then the slot and three ahead")

	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(ctx) }()
	// Once the three tasks claimed ahead are being released (Stop has
	// begun: none of them can start), the running task finishes.
	for range 3 {
		select {
		case <-released.called:
		case <-time.After(30 * time.Second):
			t.Fatal("the tasks claimed ahead were not released")
		}
	}
	gen.release <- struct{}{}
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Stop never returned")
	}
	awaitCompleted(t, finished, 2) // the first task and the running one
	require.Equal(t, 3, db.count("release_task"), "the three tasks claimed ahead were released")
	var completed, planned, processing int
	require.NoError(t, b.pool.QueryRow(ctx, `select count(*) filter (where status = 'completed'), count(*) filter (where status = 'plan' and locked_by is null),
		count(*) filter (where status = 'processing') from public.ai_tasks where user_id = $1`, b.user).Scan(&completed, &planned, &processing))
	require.Equal(t, 2, completed)
	require.Equal(t, 4, planned, "three released and one never claimed")
	require.Zero(t, processing)
}
