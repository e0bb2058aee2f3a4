package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/supabase"
)

// IdentitySource gives the identity work is done as for a user: a minted,
// short-lived token for webhook- and sweeper-originated work.
type IdentitySource interface {
	Identity(ctx context.Context, userID uuid.UUID) (supabase.Identity, error)
}

// maxClaim is the most tasks one claim_tasks call may return (its p_limit bound).
const maxClaim = 1000

// ErrStop is the cause of work contexts cancelled by a hard stop (after the
// grace period). It is not an error of the task: the task is released.
var ErrStop = errors.New("pipeline: stopping")

// DispatcherConfig configures a Dispatcher. Zero values take the defaults.
type DispatcherConfig struct {
	// Concurrency is the global number of tasks run at once: claimed and
	// in their hooks and model calls. A task whose work is done gives back
	// its slot while its result is written, within WriteQueue (past it, a
	// task keeps its slot until its result is written). Default 50.
	Concurrency int
	// WriteQueue bounds the results written at once after their tasks
	// gave back their slots: Concurrency of them always, and up to
	// WriteQueue while those results hold at most WriteQueueBytes (the
	// task's input, extra and output, and the model's text). Bounded by
	// Concurrency alone, one completion group in flight and the results
	// that came meanwhile filled it at the rate of one group per call, and
	// from then on every task waited for that write with its slot
	// (docs/performance.md, thirty-third round). Default
	// max(Concurrency, 1000) + 1000: the results of a complete_tasks call in
	// flight (up to maxCompletions, which count here until written) and a
	// whole call's worth waiting behind it. With max(Concurrency, 1000)
	// alone, a call of 800 in flight left room for 200, and the claims
	// stopped until it returned (docs/performance.md, thirty-fourth round).
	// Negative: Concurrency alone.
	WriteQueue int
	// WriteQueueBytes is WriteQueue's bound in bytes. Default 16 MiB.
	WriteQueueBytes int
	// ClaimBatch is the most tasks claimed for one user in one round trip.
	// Smaller is fairer, larger is cheaper. Default 10.
	ClaimBatch int
	// FairShareFloor is the fewest slots a user may always hold. While
	// other users have runnable work, a user holds at most
	// max(FairShareFloor, ceil(Concurrency / active users)) slots, where a
	// slot is held from the claim until the task's work is done (a slot
	// blocked on a slow hook or model call counts); a user alone gets every
	// slot. Default 1.
	FairShareFloor int
	// MaxUsers bounds the users remembered as having work (backpressure:
	// past it new hints are dropped and the sweeper finds the work later).
	// Default 100000.
	MaxUsers int
	// HeadClaimInterval is how often, at least, a claim of a user's queue
	// starts from its head. In between, a claim that follows a full one
	// starts where that one stopped (claim_tasks' cursor), so it does not
	// step over the index entries of the tasks claimed before it, which
	// stay until vacuum removes them; a task committed behind the cursor
	// is claimed when the part ahead cannot fill a claim, or by the next
	// claim from the head. Default 1s; negative: every claim from the head.
	HeadClaimInterval time.Duration
	// ClaimAhead is the most tasks a user alone in the queue may hold
	// claimed beyond its free slots: a claim then takes up to ClaimAhead
	// more than the free slots, and those tasks start, in claim order, as
	// slots free. One claim is in flight per user, so without it a claim's
	// size is about the rate times one claim's latency; with it a user's
	// backlog is claimed in groups of up to Concurrency + ClaimAhead, fewer
	// transactions for the same tasks (docs/performance.md, seventeenth
	// round). Claimed tasks wait with their leases renewed. Default
	// Concurrency; negative: none.
	ClaimAhead int
	// ClaimAheadWindow bounds what a claim takes ahead by time as well:
	// no more than the user's tasks finished in that long at the pace they
	// finished since its last claim. Tasks that take seconds (model calls)
	// are then not claimed ahead at all, so a batch cancelled or paused, or
	// another instance that is idle, finds no more than that window of
	// work already claimed. Default 10ms.
	ClaimAheadWindow time.Duration
	// Archetype is the logger and the clock (main's one archetype). Nil:
	// discard logs, wall clock.
	Archetype *baseservice.Archetype
	// Observer receives per-task events (metrics). Optional.
	Observer Observer
}

// Observer is told about the dispatcher's work; the service implements it
// with Prometheus metrics. Methods must be fast and safe for concurrent use.
type Observer interface {
	TaskFinished(res Result, stage string, elapsed time.Duration)
	QueueDepth(users, running int)
	ClaimFailed(err error)
}

// Stats is a snapshot of the dispatcher.
type Stats struct {
	UsersWaiting int   // users with a pending hint
	Running      int   // tasks being run (not those claimed ahead that wait for a slot)
	Claimed      int64 // tasks claimed since start
	Finished     int64 // tasks finished since start
}

// Dispatcher runs tasks with a global concurrency limit, fairly across
// users: it keeps a round-robin ring of users that may have due work (from
// webhooks, NOTIFY wake-ups and the sweeper), and on each turn claims at
// most ClaimBatch of one user's due tasks, as that user, then moves on. A
// user never holds more than a fair share of the slots while others have
// work (FairShareFloor): users at their share wait in the ring until one of
// their slots frees. A hint is only a hint: claims are conditional in the
// database, so duplicate or stale hints cost an empty claim and never a
// duplicate run.
type Dispatcher struct {
	baseservice.BaseService

	cfg    *DispatcherConfig
	ids    IdentitySource
	runner *Runner

	mu       sync.Mutex
	ring     []uuid.UUID                // users with hints, in turn order
	hints    map[uuid.UUID]uint64       // user → hint generation
	running  map[uuid.UUID]*runningTask // task → running state
	held     map[uuid.UUID]int          // user → slots held (claims in flight and running tasks); no zero entries
	cursors  map[uuid.UUID]ownerCursor  // user → where the next claim may start (after a full claim)
	ready    []readyTask                // claimed tasks waiting for a slot (ClaimAhead), in claim order
	ahead    int                        // tasks claims in flight may add to ready
	paces    map[uuid.UUID]*pace        // user → its slots given back since its last claim began
	free     int                        // free slots
	writing  int                        // tasks writing their result after giving back their slot (WriteQueue)
	written  int                        // the bytes those results hold (WriteQueueBytes)
	stopping bool

	wake     chan struct{}
	claimed  atomic.Int64
	finished atomic.Int64

	// startedWrite, when a test sets it (InitTestSignals), receives each
	// startWrite's answer: whether the task gave back its slot.
	startedWrite chan bool

	workCtx    context.Context //nolint:containedctx // the work context outlives Start and is cancelled by Stop (STYLE rule 29)
	cancelWork context.CancelCauseFunc
	wg         sync.WaitGroup // claims and tasks
	workers    *workers       // the goroutines they run on
	loopDone   chan struct{}
}

// ownerCursor is where a user's next claim may start, and when a claim of
// that user last started from the head of the queue.
type ownerCursor struct {
	after claimCursor
	head  time.Time
}

// pace counts a user's slots given back since its last claim began, for
// ClaimAheadWindow.
type pace struct {
	since time.Time
	freed int
}

// readyTask is a task claimed ahead of a free slot (ClaimAhead): it starts
// when a slot frees.
type readyTask struct {
	user uuid.UUID
	id   supabase.Identity
	c    *Claimed
}

// runningTask is the dispatcher's record of a task it is running: its owner
// (whose slot it holds) and when it was claimed (lease renewal is due half a
// lease later).
type runningTask struct {
	user    uuid.UUID
	started time.Time
}

// NewDispatcher builds a dispatcher; Start runs it.
func NewDispatcher(cfg *DispatcherConfig, ids IdentitySource, r *Runner) *Dispatcher {
	c := *cfg
	c.Concurrency = cmp.Or(c.Concurrency, 50)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, 10)
	c.FairShareFloor = max(c.FairShareFloor, 1)
	c.MaxUsers = cmp.Or(c.MaxUsers, 100000)
	c.HeadClaimInterval = cmp.Or(c.HeadClaimInterval, time.Second)
	c.ClaimAhead = max(cmp.Or(c.ClaimAhead, c.Concurrency), 0)
	c.ClaimAheadWindow = cmp.Or(c.ClaimAheadWindow, 10*time.Millisecond)
	if c.WriteQueue == 0 {
		c.WriteQueue = max(c.Concurrency, maxCompletions) + maxCompletions
	}
	c.WriteQueue = max(c.WriteQueue, c.Concurrency)
	c.WriteQueueBytes = cmp.Or(c.WriteQueueBytes, defaultWriteQueueBytes)
	return baseservice.Init(c.Archetype, &Dispatcher{
		cfg:      &c,
		ids:      ids,
		runner:   r,
		hints:    map[uuid.UUID]uint64{},
		running:  map[uuid.UUID]*runningTask{},
		held:     map[uuid.UUID]int{},
		cursors:  map[uuid.UUID]ownerCursor{},
		paces:    map[uuid.UUID]*pace{},
		free:     c.Concurrency,
		wake:     make(chan struct{}, 1),
		workers:  newWorkers(),
		loopDone: make(chan struct{}),
	})
}

// Notify says that the user may have due work. It never blocks.
func (d *Dispatcher) Notify(userID uuid.UUID) bool {
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		return false
	}
	gen, ok := d.hints[userID]
	if !ok {
		if len(d.hints) >= d.cfg.MaxUsers {
			d.mu.Unlock()
			return false
		}
		d.ring = append(d.ring, userID)
	}
	d.hints[userID] = gen + 1
	d.mu.Unlock()
	d.signal()
	return true
}

func (d *Dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{UsersWaiting: len(d.hints), Running: len(d.running) - len(d.ready), Claimed: d.claimed.Load(), Finished: d.finished.Load()}
}

// Start runs the dispatch loop until Stop. It returns at once.
func (d *Dispatcher) Start(ctx context.Context) {
	d.workCtx, d.cancelWork = context.WithCancelCause(context.WithoutCancel(ctx))
	go d.loop()
}

// Stop stops taking work, waits for running tasks to finish until ctx ends,
// then cancels the rest with ErrStop (the runner releases them to plan) and
// waits for those releases.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	d.stopping = true
	d.startReady(0) // releases the tasks claimed ahead
	d.mu.Unlock()
	d.signal()
	<-d.loopDone
	// Completions waiting for others (RunnerConfig.CompletionLinger) are
	// written now, and no more wait.
	d.runner.completer.flush()

	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		d.cancelWork(ErrStop)
		d.workers.stop()
		return nil
	case <-ctx.Done():
		d.cancelWork(ErrStop)
		<-done
		d.workers.stop()
		return fmt.Errorf("pipeline: grace period over, released unfinished tasks: %w", ctx.Err())
	}
}

func (d *Dispatcher) loop() {
	defer close(d.loopDone)
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return
		}
		// Each user is looked at once per pass: a user at its fair share is
		// put back at the end of the ring and waits for a slot of its own
		// to free (runOne signals).
		share := d.fairShare()
		d.startReady(share)
		for tries := len(d.ring); d.free > 0 && tries > 0 && len(d.ring) > 0; tries-- {
			user := d.ring[0]
			d.ring = d.ring[1:]
			room := share - d.held[user]
			if room <= 0 {
				d.ring = append(d.ring, user)
				continue
			}
			gen := d.hints[user]
			n := min(d.free, d.cfg.ClaimBatch, room)
			extra := 0
			if len(d.ring) == 0 {
				// Alone in the queue: fill every free slot the share allows
				// in one round trip (all of them when nobody else has work),
				// and with nobody else holding a slot, claim ahead.
				n = min(d.free, maxClaim, room)
				if share == d.cfg.Concurrency {
					extra = max(0, min(d.cfg.ClaimAhead-len(d.ready)-d.ahead, maxClaim-n, d.paceAhead(user)))
				}
			}
			d.startPace(user)
			d.free -= n
			d.held[user] += n
			d.ahead += extra
			d.wg.Add(1)
			d.workers.run(func() { d.claimAndRun(user, gen, n, extra) })
		}
		d.report()
		d.mu.Unlock()
		<-d.wake
	}
}

// fairShare is the most slots one user may hold now:
// max(FairShareFloor, ceil(Concurrency / active users)), where the active
// users are those with a hint (runnable work) or a held slot. A user alone
// gets every slot. It must be called with d.mu held.
func (d *Dispatcher) fairShare() int {
	active := len(d.hints)
	for u := range d.held { // at most Concurrency entries
		if _, ok := d.hints[u]; !ok {
			active++
		}
	}
	if active <= 1 {
		return d.cfg.Concurrency
	}
	return max(d.cfg.FairShareFloor, (d.cfg.Concurrency+active-1)/active)
}

// release gives back n of user's held slots. It must be called with d.mu held.
func (d *Dispatcher) release(user uuid.UUID, n int) {
	if n <= 0 {
		return
	}
	d.free += n
	if d.held[user] -= n; d.held[user] <= 0 {
		delete(d.held, user)
		if _, ok := d.hints[user]; !ok {
			delete(d.paces, user) // idle: its pace starts again with its next claim
		}
	}
}

// paceAhead is the most a claim of user may take ahead by
// ClaimAheadWindow: its slots given back since its last claim began, per
// ClaimAheadWindow of the time since (0 before its first claim). It must
// be called with d.mu held.
func (d *Dispatcher) paceAhead(user uuid.UUID) int {
	p, ok := d.paces[user]
	if !ok {
		return 0
	}
	elapsed := d.Time.Now().Sub(p.since)
	if elapsed <= 0 {
		return 0
	}
	return int(min(int64(p.freed)*int64(d.cfg.ClaimAheadWindow)/int64(elapsed), maxClaim))
}

// startPace starts counting user's slots given back for its next claim. It
// must be called with d.mu held.
func (d *Dispatcher) startPace(user uuid.UUID) {
	p, ok := d.paces[user]
	if !ok {
		p = &pace{}
		d.paces[user] = p
	}
	p.since, p.freed = d.Time.Now(), 0
}

// giveBack gives back one of user's slots: to the next task claimed ahead
// when there is one, otherwise to the free slots. It must be called with
// d.mu held.
func (d *Dispatcher) giveBack(user uuid.UUID) {
	if p, ok := d.paces[user]; ok {
		p.freed++
	}
	d.release(user, 1)
	if len(d.ready) > 0 {
		d.startReady(d.fairShare())
	}
}

// startReady starts tasks claimed ahead, in claim order, in free slots,
// while their user is within share; once stopping it releases them. It
// must be called with d.mu held.
func (d *Dispatcher) startReady(share int) {
	if d.stopping {
		// Not started once stopping: released to plan, as a hard stop
		// releases what it cancels.
		for _, r := range d.ready {
			d.workers.run(func() { d.dropReady(r) })
		}
		d.ready = nil
		return
	}
	for d.free > 0 && len(d.ready) > 0 {
		r := d.ready[0]
		if d.held[r.user] >= share {
			return
		}
		d.ready[0] = readyTask{}
		d.ready = d.ready[1:]
		d.free--
		d.held[r.user]++
		ctx := d.workCtx
		d.workers.run(func() { d.runOne(ctx, r.user, r.id, r.c) })
	}
}

// dropReady releases a task claimed ahead that will not run (the
// dispatcher is stopping).
func (d *Dispatcher) dropReady(r readyTask) {
	defer d.wg.Done()
	d.runner.release(r.id, r.c, d.runner.taskLogger(r.c))
	d.mu.Lock()
	delete(d.running, r.c.Task.ID)
	d.mu.Unlock()
}

// defaultWriteQueueBytes is WriteQueueBytes' default.
const defaultWriteQueueBytes = 16 << 20

// startWrite is called when a task's model work is done and only the write
// of its result, which holds size bytes, is left: the task gives back its
// slot, so the next claim need not wait for that write, unless the results
// already being written fill WriteQueue (then the task keeps its slot
// until written, which bounds the results held in memory). It reports
// whether the slot was given back. The task stays in running: its lease
// is renewed until the write ends.
func (d *Dispatcher) startWrite(user uuid.UUID, size int) bool {
	d.mu.Lock()
	freed := d.writing < d.cfg.Concurrency ||
		(d.writing < d.cfg.WriteQueue && d.written+size <= d.cfg.WriteQueueBytes)
	if freed {
		d.writing++
		d.written += size
		d.giveBack(user)
	}
	if d.startedWrite != nil {
		// Sent under the lock (the channel is buffered), so the test sees
		// the hand-overs in the order they happened: sent after Unlock, a
		// task that took the freed slot could report its own first.
		d.startedWrite <- freed
	}
	d.mu.Unlock()
	if freed {
		d.signal()
	}
	return freed
}

// report must be called with d.mu held.
func (d *Dispatcher) report() {
	if d.cfg.Observer != nil {
		d.cfg.Observer.QueueDepth(len(d.hints), len(d.running)-len(d.ready))
	}
}

// claimAndRun claims up to n+extra of the user's due tasks and runs the
// first n in the slots held for them; slots not used are given back, and
// the rest wait in ready for slots to free (ClaimAhead).
func (d *Dispatcher) claimAndRun(user uuid.UUID, gen uint64, n, extra int) {
	defer d.wg.Done()
	ctx := d.workCtx
	claimed, err := d.claim(ctx, user, n+extra)
	var id supabase.Identity
	if err == nil && len(claimed) > 0 {
		// Taken before the bookkeeping, for the tasks that wait in ready.
		id, err = d.ids.Identity(ctx, user)
		if err != nil { // cannot happen after a successful claim with the same source, but be safe
			d.Logger.Error("pipeline: no identity for user", slog.String("user_id", user.String()), slog.String("error", err.Error()))
			d.mu.Lock()
			d.ahead -= extra
			d.release(user, n) // the leases expire and the sweeper requeues them
			if d.hints[user] == gen {
				delete(d.hints, user)
			} else {
				d.ring = append(d.ring, user)
			}
			d.mu.Unlock()
			d.signal()
			return
		}
	}
	d.mu.Lock()
	d.ahead -= extra
	run := min(len(claimed), n)
	d.release(user, n-run)
	switch {
	case err != nil:
		// Keep the hint out of the ring: the sweeper retries later, so a
		// failing database does not turn into a busy loop.
		if d.hints[user] == gen {
			delete(d.hints, user)
		} else {
			d.ring = append(d.ring, user)
		}
	case len(claimed) == n+extra:
		d.ring = append(d.ring, user) // probably more work: back of the ring
	case d.hints[user] == gen:
		delete(d.hints, user) // drained and no new hint since
		if d.held[user] == 0 {
			delete(d.paces, user) // idle: its pace starts again with its next claim
		}
	default:
		d.ring = append(d.ring, user) // a newer hint arrived meanwhile
	}
	now := d.Time.Now()
	for i := range claimed {
		d.running[claimed[i].Task.ID] = &runningTask{user: user, started: now}
	}
	for i := run; i < len(claimed); i++ {
		d.wg.Add(1)
		d.ready = append(d.ready, readyTask{user: user, id: id, c: &claimed[i]})
	}
	if run < len(claimed) {
		// Slots may have freed during the claim.
		d.startReady(d.fairShare())
	}
	d.mu.Unlock()
	d.signal()
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.Logger.Warn("pipeline: claim failed", slog.String("user_id", user.String()), slog.String("error", err.Error()))
		}
		if d.cfg.Observer != nil {
			d.cfg.Observer.ClaimFailed(err)
		}
		return
	}
	d.claimed.Add(int64(len(claimed)))
	if run == 0 {
		return
	}
	d.wg.Add(run) // one for each task run (runOne)
	for i := 1; i < run; i++ {
		c := &claimed[i]
		d.workers.run(func() { d.runOne(ctx, user, id, c) })
	}
	d.runOne(ctx, user, id, &claimed[0])
}

func (d *Dispatcher) claim(ctx context.Context, user uuid.UUID, n int) ([]Claimed, error) {
	id, err := d.ids.Identity(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("error getting an identity for user %s: %w", user, err)
	}
	// One claim per user is in flight (the user is out of the ring until
	// it returns), so the user's cursor is this claim's to read and write.
	head := d.Time.Now()
	var after *claimCursor
	d.mu.Lock()
	if c, ok := d.cursors[user]; ok && head.Sub(c.head) < d.cfg.HeadClaimInterval {
		after, head = &c.after, c.head
	}
	d.mu.Unlock()
	claimed, next, err := d.runner.claim(ctx, id, n, nil, after)
	d.mu.Lock()
	if err != nil || next == nil || len(claimed) < n {
		// The queue is drained, or in doubt: the next claim starts from
		// the head (where it would have to look anyway).
		delete(d.cursors, user)
	} else {
		d.cursors[user] = ownerCursor{after: *next, head: head}
	}
	d.mu.Unlock()
	return claimed, err
}

// runOne runs a claimed task in one of user's slots. The caller has added
// one to d.wg for it, which runOne gives back once the task's outcome is
// written: on this goroutine, or on the goroutine that writes its
// completion (Runner.runThen), so the task's goroutine does not wait for
// that write and goes back to the workers at once.
func (d *Dispatcher) runOne(ctx context.Context, user uuid.UUID, id supabase.Identity, c *Claimed) {
	start := d.Time.Now()
	writing, size := false, 0
	d.runner.runThen(ctx, id, c, func(n int) bool {
		writing, size = d.startWrite(user, n), n
		return writing
	}, func(res Result) {
		d.taskDone(user, c, res, writing, size, start)
	})
}

// taskDone is the end of runOne, once the task's outcome is written. The
// task gave back its slot at startWrite when writing is set; its result
// held size bytes.
func (d *Dispatcher) taskDone(user uuid.UUID, c *Claimed, res Result, writing bool, size int, start time.Time) {
	defer d.wg.Done()
	d.finished.Add(1)
	d.mu.Lock()
	delete(d.running, c.Task.ID)
	if writing {
		d.writing--
		d.written -= size
	} else {
		d.giveBack(user)
	}
	// The user may have more due work (e.g. the successors just created).
	if !d.stopping && (res.Outcome == OutcomeCompleted || res.Outcome == OutcomeFailed) {
		if _, ok := d.hints[c.Task.UserID]; !ok {
			d.hints[c.Task.UserID] = 1
			d.ring = append(d.ring, c.Task.UserID)
		}
	}
	d.mu.Unlock()
	d.signal()
	if d.cfg.Observer != nil {
		d.cfg.Observer.TaskFinished(res, deref(c.Task.StageKey), d.Time.Now().Sub(start))
	}
}

// RenewLeases extends the leases of tasks that have been running for more
// than half a lease, grouped by user, one round trip per user. The service
// calls it periodically (every third of a lease).
func (d *Dispatcher) RenewLeases(ctx context.Context) error {
	half := d.runner.LeaseDuration() / 2
	now := d.Time.Now()
	byUser := map[uuid.UUID][]uuid.UUID{}
	d.mu.Lock()
	for id, r := range d.running {
		if now.Sub(r.started) >= half {
			byUser[r.user] = append(byUser[r.user], id)
		}
	}
	d.mu.Unlock()
	var errs []error
	for user, tasks := range byUser {
		id, err := d.ids.Identity(ctx, user)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		args := map[string]any{
			"p_task_ids":      tasks,
			"p_worker":        d.runner.WorkerID(),
			"p_lease_seconds": int(d.runner.LeaseDuration() / time.Second),
		}
		if err := d.runner.db.RPC(supabase.Idempotent(ctx), id, "renew_leases", args, nil); err != nil {
			errs = append(errs, fmt.Errorf("error renewing leases of user %s: %w", user, err))
		}
	}
	return errors.Join(errs...)
}
