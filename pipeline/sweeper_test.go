package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// recordingDB records the RPCs made through it, by function, and fails the
// next failures[fn] calls of fn before they reach the database.
type recordingDB struct {
	supabase.DB

	mu       sync.Mutex
	calls    map[string][]any // fn → the args of each call
	failures map[string]int
}

func newRecordingDB(db supabase.DB) *recordingDB {
	return &recordingDB{DB: db, calls: map[string][]any{}, failures: map[string]int{}}
}

func (r *recordingDB) RPC(ctx context.Context, id supabase.Identity, fn string, args, out any) error {
	r.mu.Lock()
	r.calls[fn] = append(r.calls[fn], args)
	fail := r.failures[fn] > 0
	if fail {
		r.failures[fn]--
	}
	r.mu.Unlock()
	if fail {
		return errors.New("recordingDB: injected failure")
	}
	return r.DB.RPC(ctx, id, fn, args, out)
}

func (r *recordingDB) count(fn string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls[fn])
}

func (r *recordingDB) args(fn string) []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.calls[fn]...)
}

func (r *recordingDB) failNext(fn string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[fn] = n
}

// awaitSignal waits for one signal of the sweeper (it comes within a few
// database round trips; the timeout only bounds a broken run).
func awaitSignal(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("the sweeper never handled %s", what)
	}
}

// heldModel holds every call until released, reporting each task it holds.
type heldModel struct {
	entered chan uuid.UUID
	release chan struct{}
}

func (m *heldModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	m.entered <- req.TaskID
	select {
	case <-m.release:
		return model.Response{Output: []byte(`{"result":"done"}`), ModelVersion: "held-1"}, nil
	case <-ctx.Done():
		return model.Response{}, ctx.Err()
	}
}

// claimObserver is chanObserver that also reports failed claims.
type claimObserver struct {
	chanObserver

	failed chan error
}

func (o claimObserver) ClaimFailed(err error) {
	select {
	case o.failed <- err:
	default:
	}
}

// testStart is where the fake clocks of these tests start.
func testStart() time.Time { return time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC) }

// TestSweeperSweepsWhenDue drives the sweeper's clock by hand: at Start it
// writes the engine limits (failing here) and lists due work once; nothing
// more happens until the sweep interval has passed to the nanosecond; each
// sweep tick re-queues expired leases and lists due work; the limits are
// retried with the first sweep tick and, once written, never again.
func TestSweeperSweepsWhenDue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	clock := baseservicetest.NewFakeClock(testStart())
	arch := clock.Archetype(nil)
	db := newRecordingDB(b.db)
	db.failNext("set_engine_limits", 1)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{Archetype: arch}, db, b.gen)
	// Never started: hints from due_tasks (every tenant's, the database is
	// shared) stay hints, so this test runs no task of another.
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Archetype: arch}, onlyUser{b.user}, r)
	const interval = 10 * time.Second
	s := pipeline.NewSweeper(&pipeline.SweeperConfig{
		Archetype: arch, Interval: interval, FoldInterval: time.Hour, RenewInterval: time.Hour,
		EngineLimits: pipeline.EngineLimits{MaxLineageDepth: 100},
	}, db, supabase.ServiceIdentity(""), d)
	sig := s.InitTestSignals()
	s.Start(ctx)
	t.Cleanup(s.Stop)

	awaitSignal(t, sig.Kicked, "the kick of Start")
	require.Equal(t, 1, db.count("set_engine_limits"), "written at start")
	require.Equal(t, 1, db.count("due_tasks"))
	require.Zero(t, db.count("requeue_expired_leases"))

	// Not due yet: no tick is sent, so the loop has nothing to handle; a
	// kick goes through the same loop and finds nothing else before it.
	clock.Advance(interval - time.Nanosecond)
	s.Kick()
	awaitSignal(t, sig.Kicked, "a kick")
	require.Zero(t, db.count("requeue_expired_leases"), "a sweep before the interval")
	require.Equal(t, 2, db.count("due_tasks"))
	require.Equal(t, 1, db.count("set_engine_limits"))

	// Due: one sweep, which also retries the limits.
	clock.Advance(time.Nanosecond)
	awaitSignal(t, sig.Swept, "the first sweep tick")
	require.Equal(t, 1, db.count("requeue_expired_leases"))
	require.Equal(t, 3, db.count("due_tasks"))
	require.Equal(t, 2, db.count("set_engine_limits"), "retried with the sweep after a failure")

	// The next interval: one more sweep, and the limits are not written
	// again.
	clock.Advance(interval - time.Nanosecond)
	s.Kick()
	awaitSignal(t, sig.Kicked, "a kick")
	require.Equal(t, 1, db.count("requeue_expired_leases"))
	clock.Advance(time.Nanosecond)
	awaitSignal(t, sig.Swept, "the second sweep tick")
	require.Equal(t, 2, db.count("requeue_expired_leases"))
	require.Equal(t, 2, db.count("set_engine_limits"), "written once it succeeded, never again")

	// Ticks missed by a slow loop are dropped, not queued: a jump of three
	// intervals is one sweep.
	clock.Advance(3 * interval)
	awaitSignal(t, sig.Swept, "the sweep after a jump")
	s.Kick()
	awaitSignal(t, sig.Kicked, "a kick")
	require.Equal(t, 3, db.count("requeue_expired_leases"))
	require.Empty(t, sig.Swept)
}

// TestSweeperRenewsLeasesWhenDue: a task claimed at the clock's start (lease
// 90 s) is running; renewal ticks come every third of a lease (30 s) and
// renew only tasks that have run at least half a lease (45 s). The tick at
// 30 s renews nothing; the tick at 60 s renews the task as its owner, in
// the database; the tick at 90 s renews it again. No tick comes before its
// time.
func TestSweeperRenewsLeasesWhenDue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "rn-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "held", prompt: "FAKE echo held", cfg: map[string]any{"cardinality": "1:1"}})
	b.launch(ctx, t, b.user, p+"A", map[string]any{"i": 1})

	clock := baseservicetest.NewFakeClock(testStart())
	arch := clock.Archetype(nil)
	db := newRecordingDB(b.db)
	gen := &heldModel{entered: make(chan uuid.UUID, 1), release: make(chan struct{})}
	const lease = 90 * time.Second
	r := pipeline.NewRunner(&pipeline.RunnerConfig{Archetype: arch, LeaseDuration: lease, WorkerID: "rn-" + p}, db, gen)
	finished := make(chan pipeline.Result, 10)
	obs := claimObserver{chanObserver: chanObserver{finished}, failed: make(chan error, 100)}
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Archetype: arch, Observer: obs}, onlyUser{b.user}, r)
	s := pipeline.NewSweeper(&pipeline.SweeperConfig{Archetype: arch, Interval: time.Hour, FoldInterval: time.Hour}, db, supabase.ServiceIdentity(""), d)
	sig := s.InitTestSignals()
	d.Start(ctx)
	s.Start(ctx)
	t.Cleanup(func() {
		s.Stop()
		_ = d.Stop(context.WithoutCancel(ctx))
	})

	// The start-up sweep lists due work across the shared database; hand
	// this user to the dispatcher directly too, and again after a failed
	// claim (a failed claim drops the hint until the next sweep, which
	// this clock never brings).
	d.Notify(b.user)
	var task uuid.UUID
	deadline := time.After(30 * time.Second)
	for task == uuid.Nil {
		select {
		case task = <-gen.entered:
		case err := <-obs.failed:
			t.Logf("a claim failed (another user's, or under load): %v", err)
			d.Notify(b.user)
		case <-deadline:
			t.Fatal("the task never reached the model")
		}
	}
	awaitSignal(t, sig.Kicked, "the kick of Start")
	leaseUntil := func() time.Time {
		t.Helper()
		var until time.Time
		require.NoError(t, b.pool.QueryRow(ctx, "select locked_until from public.ai_tasks where id = $1", task).Scan(&until))
		return until
	}
	claimedUntil := leaseUntil()

	// 30 s - 1 ns: no tick yet.
	clock.Advance(lease/3 - time.Nanosecond)
	s.Kick()
	awaitSignal(t, sig.Kicked, "a kick")
	require.Empty(t, sig.Renewed, "a renewal tick before its interval")

	// 30 s: the tick comes; the task has run 30 s < 45 s, nothing to renew.
	clock.Advance(time.Nanosecond)
	awaitSignal(t, sig.Renewed, "the renewal tick at 30 s")
	require.Zero(t, db.count("renew_leases"), "renewed before half a lease")

	// 60 s: renewed, as the owner, by this worker, for a whole lease.
	clock.Advance(lease / 3)
	awaitSignal(t, sig.Renewed, "the renewal tick at 60 s")
	require.Equal(t, 1, db.count("renew_leases"))
	args, ok := db.args("renew_leases")[0].(map[string]any)
	require.True(t, ok)
	require.Equal(t, []uuid.UUID{task}, args["p_task_ids"])
	require.Equal(t, "rn-"+p, args["p_worker"])
	require.Equal(t, 90, args["p_lease_seconds"])
	require.True(t, leaseUntil().After(claimedUntil), "the lease in the database moved")

	// 90 s: renewed again (every tick once due).
	clock.Advance(lease / 3)
	awaitSignal(t, sig.Renewed, "the renewal tick at 90 s")
	require.Equal(t, 2, db.count("renew_leases"))

	close(gen.release)
	select {
	case res := <-finished:
		require.Equal(t, pipeline.OutcomeCompleted, res.Outcome)
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not finish")
	}
}
