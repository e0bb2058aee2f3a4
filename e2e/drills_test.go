package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fullScale reports whether ORCHABLE_DRILL_SCALE=full asks for the full-size
// drills (10,000 tasks) instead of the CI size.
func fullScale() bool { return os.Getenv("ORCHABLE_DRILL_SCALE") == "full" }

// TestLostWebhooks sends no webhook at all: with the PostgREST transport
// and no DATABASE_URL (so no LISTEN/NOTIFY either), the sweeper alone must
// find and complete the whole batch.
func TestLostWebhooks(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{Transport: postgrest, NoDatabaseURL: true, Env: map[string]string{"SWEEP_INTERVAL": "200ms"}})
	u := s.createUser()
	_, root := s.importBundle(u, fixtureDir("orc-02-lesson-plan"))
	start := time.Now()
	l := s.launchBatch(u, root, "lost webhooks", fixtureRows("lost", 4))
	s.waitSettled(90*time.Second, l.BatchID)
	rep := s.checkTree(l.BatchID)
	t.Logf("lost-webhooks: tasks=%d by_stage=%v by_status=%v webhooks_sent=0 time_to_complete=%s", rep.Tasks, rep.ByStage, rep.ByStatus, time.Since(start).Round(time.Millisecond))
	s.requireTree(rep)
	require.Equal(t, map[string]int{"completed": rep.Tasks}, rep.ByStatus)
}

// TestSIGTERM stops the service mid-run with slow model calls: it must exit 0
// within the grace period, release what it could not finish (back to plan,
// no live lease of its own), and a restart completes everything exactly once.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	s := newStack(t, stackOpts{Env: map[string]string{
		"ORCHABLE_MODEL_PROVIDER": "offline", "ORCHABLE_OFFLINE_LATENCY": "2s", "SHUTDOWN_GRACE": grace.String(),
		"WORKER_CONCURRENCY": "4", "SWEEP_INTERVAL": "200ms", "WORKER_ID": "w-sigterm",
	}})
	u := s.createUser()
	_, root := s.importBundle(u, fixtureDir("orc-09-code-review"))
	l := s.launchBatch(u, root, "sigterm", fixtureRows("sigterm", 8))
	s.insertWebhooks(l.TaskIDs)
	waitFor(t, 20*time.Second, 20*time.Millisecond, "tasks in flight", func() (bool, string) {
		c := s.statusCounts(l.BatchID)
		return c["processing"] >= 4, ""
	})
	inFlight := s.statusCounts(l.BatchID)["processing"]
	sent := time.Now()
	require.NoError(t, s.svc.cmd.Process.Signal(syscall.SIGTERM))
	code, exited := s.svc.exitWithin(grace + 5*time.Second)
	require.True(t, exited, "orchable did not exit within SHUTDOWN_GRACE (%s) + 5s after SIGTERM", grace)
	exitAfter := time.Since(sent)
	require.Equal(t, 0, code, "exit code after SIGTERM")

	var live, processing, released int
	require.NoError(t, s.db.QueryRow(context.Background(), `select
		count(*) filter (where status = 'processing' and locked_by = 'w-sigterm' and locked_until > now()),
		count(*) filter (where status = 'processing'),
		count(*) filter (where status = 'plan' and started_at is null and attempts = 0 and step_number = 1)
		from public.ai_tasks where batch_id = $1`, l.BatchID).Scan(&live, &processing, &released))
	t.Logf("sigterm: in_flight_at_signal=%d exit_code=%d exit_after=%s processing_after=%d live_leases_after=%d", inFlight, code, exitAfter.Round(time.Millisecond), processing, live)
	require.Zero(t, live, "tasks left processing with a live lease of the stopped worker")
	require.Zero(t, processing, "tasks left processing after a graceful shutdown (they should be released to plan)")

	restart := time.Now()
	s.startService()
	s.waitSettled(90*time.Second, l.BatchID)
	rep := s.checkTree(l.BatchID)
	t.Logf("sigterm: tasks=%d by_stage=%v lost=%d duplicated=%d time_to_complete_after_restart=%s", rep.Tasks, rep.ByStage, rep.Missing, rep.Duplicated, time.Since(restart).Round(time.Millisecond))
	s.requireTree(rep)
	require.Equal(t, map[string]int{"auditor": 8, "architect": 8, "validator": 8}, rep.ByStage)
	require.Equal(t, map[string]int{"completed": 24}, rep.ByStatus)
}

// TestDrillKill9 kills the service with SIGKILL at random points of a run of
// a 1:1 → 1:N → N:1 pipeline (ORC-02, offline model), restarts it, several
// times: every task ends terminal, nothing is lost, no child is duplicated and
// the counters equal a recount. Leases of the killed worker expire after
// LEASE_DURATION (10s, the minimum) before the sweeper re-queues them.
func TestDrillKill9(t *testing.T) {
	t.Parallel()
	rows, kills := 60, 3
	if fullScale() {
		rows, kills = 4000, 5 // ≈ 10,000 tasks
	}
	s := newStack(t, stackOpts{Env: map[string]string{
		"ORCHABLE_MODEL_PROVIDER": "offline", "ORCHABLE_OFFLINE_LATENCY": "150ms", "ORCHABLE_OFFLINE_JITTER": "100ms",
		"WORKER_CONCURRENCY": "8", "LEASE_DURATION": "10s", "MODEL_TIMEOUT": "30s", "SWEEP_INTERVAL": "200ms", "LOG_LEVEL": "warn",
	}})
	if fullScale() {
		s.svcEnv = append(s.svcEnv, "WORKER_CONCURRENCY=50", "ORCHABLE_OFFLINE_LATENCY=20ms", "ORCHABLE_OFFLINE_JITTER=20ms")
	}
	u := s.createUser()
	_, root := s.importBundle(u, fixtureDir("orc-02-lesson-plan"))
	start := time.Now()
	l := s.launchBatch(u, root, "kill -9", fixtureRows("kill", rows))
	seed := drillSeed(t)
	rng := rand.New(rand.NewPCG(seed, 9)) // drill randomness
	var killedInFlight []int
	for i := range kills {
		// A deliberate pause (timer, not a condition wait) picks a random
		// point of the run to kill at.
		pause := time.NewTimer(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		<-pause.C
		killedInFlight = append(killedInFlight, s.statusCounts(l.BatchID)["processing"])
		require.NoError(t, s.svc.cmd.Process.Signal(syscall.SIGKILL), "kill %d", i)
		_, ok := s.svc.exitWithin(10 * time.Second)
		require.True(t, ok)
		s.startService()
	}
	lastRestart := time.Now()
	s.waitSettled(5*time.Minute, l.BatchID)
	recovery := time.Since(lastRestart)
	rep := s.checkTree(l.BatchID)
	var dupKeys int
	require.NoError(t, s.db.QueryRow(context.Background(), `select count(*) from (select idempotency_key from public.ai_tasks
		where batch_id = $1 and idempotency_key is not null group by 1 having count(*) > 1) d`, l.BatchID).Scan(&dupKeys))
	t.Logf("kill-9: tasks=%d by_stage=%v by_status=%v kills=%d in_flight_at_kills=%v lost=%d duplicated=%d dup_idempotency_keys=%d time_to_recover_after_last_restart=%s total=%s",
		rep.Tasks, rep.ByStage, rep.ByStatus, kills, killedInFlight, rep.Missing, rep.Duplicated, dupKeys, recovery.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	s.requireTree(rep)
	require.Zero(t, dupKeys)
	require.Equal(t, rows, rep.Roots)
	require.Equal(t, map[string]int{"completed": rep.Tasks}, rep.ByStatus)
	mismatch, msg := s.counterMismatch(l.BatchID)
	require.False(t, mismatch, msg)
}

// drillSeed is the random seed of a drill: ORCHABLE_DRILL_SEED replays a
// run, else the clock. It is logged, so a failure can be replayed.
func drillSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano()) // a clock reading as a seed
	if v := os.Getenv("ORCHABLE_DRILL_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ORCHABLE_DRILL_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("drill seed %d (replay with ORCHABLE_DRILL_SEED=%d)", seed, seed)
	return seed
}
