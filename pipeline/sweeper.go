package pipeline

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/supabase"
)

// SweeperConfig configures a Sweeper. Zero values take the defaults.
type SweeperConfig struct {
	// Interval between sweeps for due work and expired leases. Default 5s.
	Interval time.Duration
	// FoldInterval between folds of batch progress deltas into
	// task_batches. Default 500ms.
	FoldInterval time.Duration
	// RenewInterval between lease renewals of running tasks. Default: a
	// third of the runner's lease.
	RenewInterval time.Duration
	// Limit is the most due tasks read per sweep (due_tasks names every
	// owner's first due task before any owner's second). Default 1000.
	Limit int
	// PerUser is the most due tasks read per user per sweep. The sweeper
	// only wakes the owners it reads (each owner's dispatcher then claims
	// that owner's queue), so one task names an owner and more only cost
	// reads. Default 1.
	PerUser int
	// MaxLeaseLosses is how often a task may lose its lease (its worker
	// died) before it fails for good. Default 5.
	MaxLeaseLosses int
	// EngineLimits bound what one completion may create; the sweeper writes
	// them to the database (set_engine_limits) at start, where the SQL
	// engine applies them to every completion, whoever makes it. Zero
	// fields keep the database's values.
	EngineLimits EngineLimits
	// Listen, when set, is a direct database pool used to LISTEN for the
	// orchable_wakeup notification, which triggers a sweep at once.
	Listen *pgxpool.Pool
	// Archetype is the logger and the clock (main's one archetype). Nil:
	// discard logs, wall clock.
	Archetype *baseservice.Archetype
}

// EngineLimits bound fan-out and depth (SPEC §14). A completion that would
// exceed one fails its task with a message naming the setting.
type EngineLimits struct {
	// MaxSplitItems is the most children one 1:N split may create
	// (MAX_SPLIT_ITEMS, default 10,000).
	MaxSplitItems int
	// MaxChildInputBytes bounds the child input one split writes, estimated
	// as children × the parent's input size plus the split array
	// (MAX_CHILD_INPUT_BYTES, default 64 MiB).
	MaxChildInputBytes int64
	// MaxLineageDepth is the highest step a task may reach
	// (MAX_LINEAGE_DEPTH, default 100); it stops template loops.
	MaxLineageDepth int
}

// Sweeper finds work no webhook announced: as the service identity it lists
// due tasks (ids and owners only, fairly across users) and hands the owners
// to the dispatcher, re-queues tasks whose lease expired (crashed worker),
// and folds batch progress. With a direct connection it also wakes on
// LISTEN/NOTIFY. Any number of instances may run: claims are conditional.
type Sweeper struct {
	baseservice.BaseService

	cfg     *SweeperConfig
	db      supabase.DB
	service supabase.Identity
	disp    *Dispatcher

	kick        chan struct{}
	stopOnce    sync.Once
	cancel      context.CancelFunc
	done        chan struct{}
	testSignals sweeperTestSignals
}

// sweeperTestSignals tell a test that the loop has handled an event
// (River's test-signal pattern): nil channels, and so no-ops, unless a test
// sets them (export_test.go) before Start.
type sweeperTestSignals struct {
	kicked  chan struct{} // a kick was handled (due work listed)
	swept   chan struct{} // a sweep tick was handled (expired leases, due work)
	folded  chan struct{} // a fold tick was handled
	renewed chan struct{} // a renew tick was handled (RenewLeases returned)
}

func signal(c chan struct{}) {
	if c != nil {
		c <- struct{}{}
	}
}

// NewSweeper builds a sweeper. service is the service-role identity: it is
// used only for due_tasks, requeue_expired_leases and fold_batch_counters;
// giving up on tasks whose lease expired too often runs as their owner.
func NewSweeper(cfg *SweeperConfig, db supabase.DB, service supabase.Identity, disp *Dispatcher) *Sweeper {
	c := *cfg
	c.Interval = cmp.Or(c.Interval, 5*time.Second)
	c.FoldInterval = cmp.Or(c.FoldInterval, 500*time.Millisecond)
	c.RenewInterval = cmp.Or(c.RenewInterval, disp.runner.LeaseDuration()/3)
	c.Limit = cmp.Or(c.Limit, 1000)
	c.PerUser = cmp.Or(c.PerUser, 1)
	c.MaxLeaseLosses = cmp.Or(c.MaxLeaseLosses, 5)
	return baseservice.Init(c.Archetype, &Sweeper{cfg: &c, db: db, service: service, disp: disp, kick: make(chan struct{}, 1), done: make(chan struct{})})
}

// Kick asks for a sweep now (coalesced).
func (s *Sweeper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Start runs the sweeper until Stop. It returns at once; the first sweep
// runs immediately. Its tickers start here, on the archetype's clock: the
// first sweep tick is due Interval after Start, the first fold tick
// FoldInterval after it and the first renewal tick RenewInterval after it.
func (s *Sweeper) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	t := sweeperTickers{
		sweep: s.Time.NewTicker(s.cfg.Interval),
		fold:  s.Time.NewTicker(s.cfg.FoldInterval),
		renew: s.Time.NewTicker(s.cfg.RenewInterval),
	}
	var wg sync.WaitGroup
	if s.cfg.Listen != nil {
		wg.Go(func() { ; s.listen(ctx) })
	}
	wg.Go(func() { ; s.run(ctx, t) })
	go func() { wg.Wait(); close(s.done) }()
	s.Kick()
}

// Stop stops the sweeper and waits for it.
func (s *Sweeper) Stop() {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
	})
}

// sweeperTickers are the sweeper loop's tickers, made by Start.
type sweeperTickers struct {
	sweep, fold, renew *baseservice.Ticker
}

// run is the sweeper loop. The engine limits are written first; a failure
// is retried with each sweep tick until one succeeds, and never after.
func (s *Sweeper) run(ctx context.Context, t sweeperTickers) {
	defer t.sweep.Stop()
	defer t.fold.Stop()
	defer t.renew.Stop()
	limitsSet := s.setLimits(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.sweepDue(ctx)
			signal(s.testSignals.kicked)
		case <-t.sweep.C:
			if !limitsSet {
				limitsSet = s.setLimits(ctx)
			}
			s.requeue(ctx)
			s.sweepDue(ctx)
			signal(s.testSignals.swept)
		case <-t.fold.C:
			s.fold(ctx)
			signal(s.testSignals.folded)
		case <-t.renew.C:
			if err := s.disp.RenewLeases(ctx); err != nil && ctx.Err() == nil {
				s.Logger.WarnContext(ctx, "sweeper: lease renewal failed", slog.String("error", err.Error()))
			}
			signal(s.testSignals.renewed)
		}
	}
}

// setLimits writes the configured engine limits (service identity: they
// apply to every tenant). It reports whether it succeeded; a failure is
// retried on the next sweep.
func (s *Sweeper) setLimits(ctx context.Context) bool {
	l := s.cfg.EngineLimits
	if l == (EngineLimits{}) {
		return true
	}
	args := map[string]any{"p_max_split_items": nil, "p_max_child_input_bytes": nil, "p_max_depth": nil}
	if l.MaxSplitItems > 0 {
		args["p_max_split_items"] = l.MaxSplitItems
	}
	if l.MaxChildInputBytes > 0 {
		args["p_max_child_input_bytes"] = l.MaxChildInputBytes
	}
	if l.MaxLineageDepth > 0 {
		args["p_max_depth"] = l.MaxLineageDepth
	}
	if err := s.db.RPC(supabase.Idempotent(ctx), s.service, "set_engine_limits", args, nil); err != nil {
		if ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "sweeper: setting engine limits failed; retrying at the next sweep", slog.String("error", err.Error()))
		}
		return false
	}
	return true
}

func (s *Sweeper) sweepDue(ctx context.Context) {
	var due []struct {
		ID     uuid.UUID `json:"id"`
		UserID uuid.UUID `json:"user_id"`
	}
	err := s.db.RPC(supabase.Idempotent(ctx), s.service, "due_tasks",
		map[string]any{"p_limit": s.cfg.Limit, "p_per_user": s.cfg.PerUser}, &due)
	if err != nil {
		if ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "sweeper: listing due tasks failed", slog.String("error", err.Error()))
		}
		return
	}
	seen := map[uuid.UUID]bool{}
	for _, d := range due {
		if !seen[d.UserID] {
			seen[d.UserID] = true
			s.disp.Notify(d.UserID)
		}
	}
}

func (s *Sweeper) requeue(ctx context.Context) {
	var out struct {
		Requeued     int         `json:"requeued"`
		GiveUpOwners []uuid.UUID `json:"give_up_owners"`
	}
	err := s.db.RPC(ctx, s.service, "requeue_expired_leases", map[string]any{"p_max_attempts": s.cfg.MaxLeaseLosses}, &out)
	if err != nil {
		if ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "sweeper: re-queueing expired leases failed", slog.String("error", err.Error()))
		}
		return
	}
	// Tasks that lost their lease too often are given up as their owner:
	// failing them re-checks barriers downstream, which reads the owner's
	// outputs and may create tasks, so it never runs as the service identity.
	failed := 0
	for _, owner := range out.GiveUpOwners {
		n, err := s.giveUp(ctx, owner)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.WarnContext(ctx, "sweeper: giving up expired tasks failed",
					slog.String("user_id", owner.String()), slog.String("error", err.Error()))
			}
			continue
		}
		failed += n
	}
	if out.Requeued > 0 || failed > 0 {
		s.Logger.InfoContext(ctx, "sweeper: expired leases", slog.Int("requeued", out.Requeued), slog.Int("failed", failed))
	}
}

// giveUp fails, as owner, the owner's tasks that lost their lease
// MaxLeaseLosses times (fail_expired_tasks).
func (s *Sweeper) giveUp(ctx context.Context, owner uuid.UUID) (int, error) {
	id, err := s.disp.ids.Identity(ctx, owner)
	if err != nil {
		return 0, err
	}
	var res struct {
		Failed int `json:"failed"`
	}
	if err := s.db.RPC(ctx, id, "fail_expired_tasks", map[string]any{"p_max_attempts": s.cfg.MaxLeaseLosses}, &res); err != nil {
		return 0, err
	}
	return res.Failed, nil
}

func (s *Sweeper) fold(ctx context.Context) {
	if err := s.db.RPC(ctx, s.service, "fold_batch_counters", map[string]any{}, nil); err != nil && ctx.Err() == nil {
		s.Logger.WarnContext(ctx, "sweeper: folding batch progress failed", slog.String("error", err.Error()))
	}
}

// listen holds a dedicated connection LISTENing on orchable_wakeup and kicks
// a sweep on every notification; it reconnects with backoff.
func (s *Sweeper) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.Logger.WarnContext(ctx, "sweeper: LISTEN connection lost; reconnecting", slog.String("error", errString(err)))
		if s.Time.Sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(backoff*2, 5*time.Second)
		s.Kick() // catch up on anything missed while disconnected
	}
}

func (s *Sweeper) listenOnce(ctx context.Context) error {
	conn, err := s.cfg.Listen.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing connection must not go back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx)) // closing a possibly dead connection
	if _, err := pc.Exec(ctx, "listen orchable_wakeup"); err != nil {
		return err
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		s.wake(n.Payload)
	}
}

// wake hands the owners named in a notification straight to the dispatcher
// (no sweep needed); an empty or unreadable payload asks for a sweep.
func (s *Sweeper) wake(payload string) {
	if payload == "" {
		s.Kick()
		return
	}
	for p := range strings.SplitSeq(payload, ",") {
		user, err := uuid.Parse(p)
		if err != nil {
			s.Kick()
			return
		}
		if !s.disp.Notify(user) {
			s.Kick()
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	if errors.Is(err, pgx.ErrTxClosed) {
		return "connection closed"
	}
	return err.Error()
}
