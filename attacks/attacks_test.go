package attacks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestAttacks runs every attack of SPEC §14 / issue #12 as B against A and
// prints the table (attack, path, expected, outcome) when all are done.
func TestAttacks(t *testing.T) {
	t.Parallel()
	t.Cleanup(printTable)
	pool := dbtest.Pool(t)

	t.Run("SweeperCrossTenantRead", func(t *testing.T) { t.Parallel(); attackSweeperCrossTenant(t, newWorld(t, pool)) })
	t.Run("SweeperRealLoop", func(t *testing.T) { t.Parallel(); attackSweeperRealLoop(t, newWorld(t, pool)) })
	t.Run("JoinOnVictimRoot", func(t *testing.T) { t.Parallel(); attackJoinOnVictimRoot(t, newWorld(t, pool)) })
	t.Run("SuccessorIsVictimTemplate", func(t *testing.T) { t.Parallel(); attackSuccessorIsVictimTemplate(t, newWorld(t, pool)) })
	t.Run("SquatIdempotencyKeys", func(t *testing.T) { t.Parallel(); attackSquatKeys(t, newWorld(t, pool)) })
	t.Run("ReuseLaunchID", func(t *testing.T) { t.Parallel(); attackReuseLaunchID(t, newWorld(t, pool)) })
	t.Run("EngineColumns", func(t *testing.T) { t.Parallel(); attackEngineColumns(t, newWorld(t, pool)) })
	t.Run("PublicTemplateHooks", func(t *testing.T) { t.Parallel(); attackPublicTemplateHooks(t, newWorld(t, pool)) })
	t.Run("ExistenceOracles", func(t *testing.T) { t.Parallel(); attackOracles(t, newWorld(t, pool)) })
	t.Run("ImportSquatting", func(t *testing.T) { t.Parallel(); attackImportSquatting(t, newWorld(t, pool)) })
	t.Run("UnpublishUsedTemplate", func(t *testing.T) { t.Parallel(); attackUnpublishUsedTemplate(t, newWorld(t, pool)) })
	t.Run("ForgeBatchCounters", func(t *testing.T) { t.Parallel(); attackForgeBatchCounters(t, newWorld(t, pool)) })
	t.Run("ClaimFromVictimCursor", func(t *testing.T) { t.Parallel(); attackClaimFromVictimCursor(t, newWorld(t, pool)) })
	t.Run("ResetThroughVictimTree", func(t *testing.T) { t.Parallel(); attackResetThroughVictimTree(t, newWorld(t, pool)) })
	t.Run("SquatChildIDs", func(t *testing.T) { t.Parallel(); attackSquatChildIDs(t, newWorld(t, pool)) })
	t.Run("ServiceFunctionsAndPrivileges", func(t *testing.T) {
		t.Parallel()
		attackPrivileges(t, newWorld(t, pool), "default privileges")
		attackPrivileges(t, newWorld(t, dbtest.LegacyPool(t)), "pre-2026 defaults")
	})
}

// victimPipeline gives A a finished two-stage pipeline: mapper (1:1) →
// merge (N:1, batch_grouping global), launched with two rows, and returns
// the stage templates and the launch.
func victimPipeline(ctx context.Context, t *testing.T, w *world, secret string) (mapper, merge string, l launched) {
	t.Helper()
	p := "A-" + uuid.NewString()[:8]
	mapper, merge = p+"-mapper", p+"-merge"
	w.templates(ctx, t, w.a,
		stage{id: mapper, key: "mapper", cfg: map[string]any{"cardinality": "1:1"}, next: []string{merge}},
		stage{id: merge, key: "merge", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "global"}},
	)
	l = w.launch(ctx, t, w.a, mapper, map[string]any{"row": 1}, map[string]any{"row": 2})
	w.drive(ctx, t, w.a, secret)
	return mapper, merge, l
}

// attackerMerge gives B a feeder stage named like A's ("mapper") whose
// successor is B's own N:1 merge with batch_grouping global.
func attackerMerge(ctx context.Context, t *testing.T, w *world) (feeder, merge string) {
	t.Helper()
	p := "B-" + uuid.NewString()[:8]
	feeder, merge = p+"-mapper", p+"-merge"
	w.templates(ctx, t, w.b,
		stage{id: feeder, key: "mapper", cfg: map[string]any{"cardinality": "1:1"}, next: []string{merge}},
		stage{id: merge, key: "merge", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "global"}, isPublic: false},
	)
	return feeder, merge
}

// Attack 1: B plants, under A's launch id, a completed decoy and a
// processing task with an expired lease and attempts = 5, so that the
// sweeper gives up on it and runs the barrier logic.
func attackSweeperCrossTenant(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	secret := "A-SECRET-" + uuid.NewString()[:8]
	_, _, l := victimPipeline(ctx, t, w, secret)
	feeder, _ := attackerMerge(ctx, t, w)
	dbtest.FoldCounters(ctx, t, w.pool) // settle A's batch status (another test's sweeper folds too)
	before := w.snapshot(ctx, t, w.a)

	for _, variant := range []struct{ name, completedAt string }{
		{"decoy completed_at far future", "2999-01-01"},
		{"decoy completed_at in the past (victim's task last)", "2000-01-01"},
	} {
		// Through PostgREST: every column B may write.
		_, err := w.as(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, launch_id, output_data, completed_at)
			values ('completed', 'mapper', $1, $2, '{"decoy": true}', $3)`, feeder, l.LaunchID, variant.completedAt)
		require.NoError(t, err)
		var planted uuid.UUID
		require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, launch_id, locked_until, locked_by, attempts)
			values ('processing', 'mapper', $1, $2, now() - interval '1 hour', 'ghost', 5) returning id`,
			[]any{feeder, l.LaunchID}, &planted))
		var lockedUntil *time.Time
		var attempts int
		require.NoError(t, w.pool.QueryRow(ctx, "select locked_until, attempts from public.ai_tasks where id = $1", planted).Scan(&lockedUntil, &attempts))
		record(t, "1 sweeper: forged lease/attempts on insert ("+variant.name+")", "PostgREST insert",
			"engine columns reset", fmt.Sprintf("locked_until=%v attempts=%d", lockedUntil, attempts), lockedUntil == nil && attempts == 0)

		// The sweeper's service step, then the owner step it triggers.
		var rq struct {
			GiveUpOwners []uuid.UUID `json:"give_up_owners"`
		}
		require.NoError(t, w.db.RPC(ctx, supabase.ServiceIdentity(""), "requeue_expired_leases", map[string]any{"p_max_attempts": 5}, &rq))
		for _, o := range rq.GiveUpOwners {
			require.NoError(t, w.rpc(ctx, o, "fail_expired_tasks", map[string]any{"p_max_attempts": 5}, nil))
		}
		leak := w.leaked(ctx, t, secret)
		record(t, "1 sweeper: decoy + expired task under victim's launch ("+variant.name+")", "SQL as PostgREST",
			"B holds nothing of A; A unchanged", fmt.Sprintf("leaked rows=%d, A changed=%v", leak, w.snapshot(ctx, t, w.a) != before),
			leak == 0 && w.snapshot(ctx, t, w.a) == before)

		// Defence in depth: the lease forged as if the trigger were bypassed.
		w.forge(ctx, t, "update public.ai_tasks set locked_until = now() - interval '1 hour', locked_by = 'ghost', attempts = 5 where id = $1", planted)
		require.NoError(t, w.db.RPC(ctx, supabase.ServiceIdentity(""), "requeue_expired_leases", map[string]any{"p_max_attempts": 5}, &rq))
		// requeue_expired_leases is service-wide: the attacks running in
		// parallel may have expired tasks of their own users too.
		record(t, "1 sweeper: service step names owners only ("+variant.name+")", "SQL service_role",
			"B named, A not, no task touched", fmt.Sprintf("owners=%v", rq.GiveUpOwners), slices.Contains(rq.GiveUpOwners, w.b) && !slices.Contains(rq.GiveUpOwners, w.a))
		for _, o := range rq.GiveUpOwners {
			if o != w.b {
				continue // another attack's user: its own test gives up on it
			}
			require.NoError(t, w.rpc(ctx, o, "fail_expired_tasks", map[string]any{"p_max_attempts": 5}, nil))
		}
		var status string
		require.NoError(t, w.pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", planted).Scan(&status))
		leak = w.leaked(ctx, t, secret)
		record(t, "1 sweeper: same with the lease forged past the trigger ("+variant.name+")", "SQL engine only",
			"merge scoped to B; A unchanged", fmt.Sprintf("planted=%s leaked rows=%d, A changed=%v", status, leak, w.snapshot(ctx, t, w.a) != before),
			status == "failed" && leak == 0 && w.snapshot(ctx, t, w.a) == before)
	}
}

// Attack 1 through the real service loop: the sweeper (service identity),
// the dispatcher and the runner, B's hook collector on loopback.
func attackSweeperRealLoop(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	secret := "A-SECRET-" + uuid.NewString()[:8]
	_, _, l := victimPipeline(ctx, t, w, secret)
	feeder, merge := attackerMerge(ctx, t, w)
	// A's batch status is folded from deltas; fold now, or the sweeper's
	// fold (or another test's) during the attack changes the snapshot.
	dbtest.FoldCounters(ctx, t, w.pool)
	before := w.snapshot(ctx, t, w.a)

	var got atomic.Int64
	var leakedToHook atomic.Bool
	collector := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Add(1)
		if json.Valid(body) && strings.Contains(string(body), secret) {
			leakedToHook.Store(true)
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{}`))
	}))
	t.Cleanup(collector.Close)
	hook, _ := json.Marshal(map[string]any{"post_process": map[string]any{"enabled": true, "webhook_url": collector.URL, "output_handling": "merge"}})
	_, err := w.pool.Exec(ctx, "update public.prompt_templates set stage_config = stage_config || $2 where id = $1", merge, hook)
	require.NoError(t, err)

	_, err = w.as(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, launch_id, output_data, completed_at)
		values ('completed', 'mapper', $1, $2, '{"decoy": true}', '2999-01-01')`, feeder, l.LaunchID)
	require.NoError(t, err)
	var planted uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, launch_id)
		values ('processing', 'mapper', $1, $2) returning id`, []any{feeder, l.LaunchID}, &planted))
	// As if the trigger had let the forged lease through.
	w.forge(ctx, t, "update public.ai_tasks set locked_until = now() - interval '1 hour', locked_by = 'ghost', attempts = 5 where id = $1", planted)

	runner := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "attack-loop", Hooks: pipeline.HookConfig{AllowLoopbackForTests: true}}, w.db, echoModel{secret: "B-OWN"})
	disp := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 4}, worldIdentity{users: []uuid.UUID{w.a, w.b}}, runner)
	disp.Start(ctx)
	t.Cleanup(func() { _ = disp.Stop(context.Background()) })
	sw := pipeline.NewSweeper(&pipeline.SweeperConfig{Interval: 20 * time.Millisecond}, w.db, supabase.ServiceIdentity(""), disp)
	sw.Start(ctx)
	t.Cleanup(sw.Stop)

	waitFor(ctx, t, "the sweeper to give up on the planted task and B's work to settle", func() bool {
		var open int
		_ = w.pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1 and status in ('plan', 'processing')`, w.b).Scan(&open)
		var st string
		_ = w.pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", planted).Scan(&st)
		return st == "failed" && open == 0
	})
	leak := w.leaked(ctx, t, secret)
	record(t, "1 sweeper: end to end through sweeper+dispatcher+runner", "service loop",
		"no A output in B's rows or hook", fmt.Sprintf("leaked rows=%d hook calls=%d hook saw A=%v A changed=%v", leak, got.Load(), leakedToHook.Load(), w.snapshot(ctx, t, w.a) != before),
		leak == 0 && !leakedToHook.Load() && w.snapshot(ctx, t, w.a) == before)
}

// Attack 1 (variant): B's join task claims one of A's tasks as its root, to
// receive the root's input.
func attackJoinOnVictimRoot(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	secret := "A-SECRET-" + uuid.NewString()[:8]
	_, _, l := victimPipeline(ctx, t, w, secret)
	aRoot := l.TaskIDs[0]
	_, err := w.pool.Exec(ctx, "update public.ai_tasks set input_data = input_data || jsonb_build_object('private', $2::text) where id = $1", aRoot, secret)
	require.NoError(t, err)
	dbtest.FoldCounters(ctx, t, w.pool) // settle A's batch status (another test's sweeper folds too)
	before := w.snapshot(ctx, t, w.a)

	p := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b,
		stage{id: p + "-x", key: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-join"}},
		stage{id: p + "-y", key: "y", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-join"}},
		stage{id: p + "-join", key: "join", cfg: map[string]any{"cardinality": "1:1", "dependsOn": []string{"x", "y"}}},
	)
	_, errForeign := w.as(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, root_task_id) values ('plan', 'x', $1, $2)`, p+"-x", aRoot)
	_, errRandom := w.as(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, root_task_id) values ('plan', 'x', $1, $2)`, p+"-x", uuid.New())
	record(t, "1 join: root_task_id = victim's task", "PostgREST insert",
		"refused like a random id", fmt.Sprintf("victim id: %s / random id: %s", errText(errForeign), errText(errRandom)),
		errForeign != nil && errText(errForeign) == errText(errRandom))

	// Defence in depth: the reference forged past the trigger.
	var x, y uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id) values ('plan', 'x', $1) returning id`, []any{p + "-x"}, &x))
	require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id) values ('plan', 'y', $1) returning id`, []any{p + "-y"}, &y))
	w.forge(ctx, t, "update public.ai_tasks set root_task_id = $1 where id = any($2)", aRoot, []uuid.UUID{x, y})
	w.drive(ctx, t, w.b, "B-OWN")
	var joins int
	require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and stage_key = 'join'", w.b).Scan(&joins))
	// The forged reference itself stays (the trigger is what refuses it);
	// what matters is that no content of A's crossed over.
	leak := w.contentLeaked(ctx, t, secret)
	record(t, "1 join: root forged past the trigger", "SQL engine only",
		"join built without A's input", fmt.Sprintf("joins=%d rows with A's content=%d A changed=%v", joins, leak, w.snapshot(ctx, t, w.a) != before),
		joins == 1 && leak == 0 && w.snapshot(ctx, t, w.a) == before)
}

// Attack 1 (variant): B's task names A's private template as its successor.
func attackSuccessorIsVictimTemplate(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	mapper, _, _ := victimPipeline(ctx, t, w, "A-SECRET-"+uuid.NewString()[:8])
	p := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: p, key: "b", cfg: map[string]any{"cardinality": "1:1"}})
	ntc, _ := json.Marshal([]string{mapper})
	_, err := w.as(ctx, t, w.b, `insert into public.ai_tasks (status, stage_key, prompt_template_id, next_task_config) values ('plan', 'b', $1, $2)`, p, ntc)
	require.NoError(t, err)
	w.drive(ctx, t, w.b, "B-OWN")
	var onVictim int
	require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and prompt_template_id = $2", w.b, mapper).Scan(&onVictim))
	var msg string
	require.NoError(t, w.pool.QueryRow(ctx, "select coalesce(error_message, status::text) from public.ai_tasks where user_id = $1 and stage_key = 'b'", w.b).Scan(&msg))
	record(t, "1 next_task_config names victim's private template", "SQL as PostgREST",
		"no task on A's template", fmt.Sprintf("tasks on it=%d; B's task: %.60s", onVictim, msg), onVictim == 0)
}

// Attack 2: B squats the idempotency keys of A's next children.
func attackSquatKeys(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a,
		stage{id: p + "-1", key: "one", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-2"}},
		stage{id: p + "-2", key: "two", cfg: map[string]any{"cardinality": "1:1"}},
	)
	l := w.launch(ctx, t, w.a, p+"-1", map[string]any{"row": 1})
	key := l.TaskIDs[0].String() + "/" + p + "-2"

	var stored *string
	require.NoError(t, w.asRow(ctx, t, w.b, "insert into public.ai_tasks (status, idempotency_key) values ('completed', $1) returning idempotency_key", []any{key}, &stored))
	record(t, "2 idempotency key written by a client", "PostgREST insert", "ignored (null)", fmt.Sprintf("stored=%v", stored), stored == nil)

	// Defence in depth: B holds A's key (as if written past the trigger).
	var squat uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.b, "insert into public.ai_tasks (status) values ('completed') returning id", nil, &squat))
	w.forge(ctx, t, "update public.ai_tasks set idempotency_key = $2 where id = $1", squat, key)
	w.drive(ctx, t, w.a, "A")
	var children int
	require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and stage_key = 'two'", w.a).Scan(&children))
	record(t, "2 victim's child key squatted by attacker", "SQL engine only", "A's child created", fmt.Sprintf("A's children=%d", children), children == 1)
}

// Attack 2 (launch scope): B reuses A's launch id to join or pre-empt A's
// global merge.
func attackReuseLaunchID(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a,
		stage{id: p + "-m", key: "mapper", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-g"}},
		stage{id: p + "-g", key: "merge", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "global"}},
	)
	l := w.launch(ctx, t, w.a, p+"-m", map[string]any{"row": 1}, map[string]any{"row": 2})
	q := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: q, key: "mapper", cfg: map[string]any{"cardinality": "1:1"}})

	errLaunch := w.rpc(ctx, w.b, "launch_batch", map[string]any{"p_template_id": q, "p_rows": []map[string]any{{"x": 1}}, "p_launch_id": l.LaunchID}, nil)
	record(t, "2 launch_batch with victim's launch id", "RPC", "refused", errText(errLaunch), pgCode(errLaunch) == "42501")
	_, errBatch := w.as(ctx, t, w.b, "insert into public.task_batches (name, launch_id) values ('x', $1)", l.LaunchID)
	record(t, "2 batch row with victim's launch id", "PostgREST insert", "refused", errText(errBatch), pgCode(errBatch) == "42501")

	w.drive(ctx, t, w.a, "A")
	var merged string
	require.NoError(t, w.pool.QueryRow(ctx, "select coalesce(input_data->>'_merged_from_count', '') from public.ai_tasks where user_id = $1 and stage_key = 'merge'", w.a).Scan(&merged))
	record(t, "2 victim's global merge after the attempts", "SQL as PostgREST", "merges A's 2 rows", "merged_from_count="+merged, merged == "2")
}

// Engine-owned columns written by a client through PostgREST.
func attackEngineColumns(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: p, key: "b", cfg: map[string]any{"cardinality": "1:1"}})
	l := w.launch(ctx, t, w.b, p, map[string]any{"x": 1})
	var claimed []json.RawMessage
	require.NoError(t, w.rpc(ctx, w.b, "claim_tasks", map[string]any{"p_worker": "real", "p_limit": 1}, &claimed))
	_, err := w.as(ctx, t, w.b, `update public.ai_tasks set locked_until = now() + interval '10 years', locked_by = 'mine', attempts = -100,
		idempotency_key = 'x', approved_by = $2 where id = $1`, l.TaskIDs[0], w.a)
	require.NoError(t, err)
	var lockedBy string
	var attempts int
	var idem, approvedBy *string
	require.NoError(t, w.pool.QueryRow(ctx, "select locked_by, attempts, idempotency_key, approved_by::text from public.ai_tasks where id = $1", l.TaskIDs[0]).Scan(&lockedBy, &attempts, &idem, &approvedBy))
	record(t, "3 lease/attempts/key/approved_by updated by a client", "PostgREST update",
		"engine values kept; approved_by = writer", fmt.Sprintf("locked_by=%s attempts=%d key=%v approved_by=%v", lockedBy, attempts, idem, deref(approvedBy)),
		lockedBy == "real" && attempts == 1 && idem == nil && deref(approvedBy) == w.b.String())
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// Attack 3: A runs B's public template, whose hooks would receive A's input
// and output.
func attackPublicTemplateHooks(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	var calls atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"hooked": true}`))
	}))
	t.Cleanup(collector.Close)
	hooks := map[string]any{
		"cardinality":  "1:1",
		"pre_process":  map[string]any{"enabled": true, "webhook_url": collector.URL + "/pre"},
		"post_process": map[string]any{"enabled": true, "webhook_url": collector.URL + "/post"},
	}
	pb, pa := "B-"+uuid.NewString()[:8], "A-"+uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: pb, key: "pub", cfg: hooks, isPublic: true})
	w.templates(ctx, t, w.a, stage{id: pa, key: "own", cfg: hooks})

	runner := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "hooks", Hooks: pipeline.HookConfig{AllowLoopbackForTests: true}}, w.db, echoModel{secret: "A-OUT"})
	run := func(tpl string) (int64, string) {
		before := calls.Load()
		l := w.launch(ctx, t, w.a, tpl, map[string]any{"private": "A-INPUT"})
		claimed, err := runner.Claim(ctx, identity(w.a), 1, l.TaskIDs)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		res := runner.Run(ctx, identity(w.a), &claimed[0])
		require.Equal(t, pipeline.OutcomeCompleted, res.Outcome, "%v", res.Err)
		var extra string
		require.NoError(t, w.pool.QueryRow(ctx, "select coalesce(extra->>'hooks_ignored', '') from public.ai_tasks where id = $1", l.TaskIDs[0]).Scan(&extra))
		return calls.Load() - before, extra
	}
	own, ownExtra := run(pa)
	record(t, "4 control: the owner's own template hooks", "service loop", "called (2 calls)", fmt.Sprintf("calls=%d extra=%q", own, ownExtra), own == 2 && ownExtra == "")
	foreign, extra := run(pb)
	record(t, "4 victim runs attacker's public template with hooks", "service loop",
		"hooks not called; extra says so", fmt.Sprintf("calls=%d hooks_ignored=%s", foreign, extra),
		foreign == 0 && extra == `["pre_process", "post_process"]`)
}

// Attack 4b (table row 4b): B publishes a template, A runs tasks on it, then B makes it
// private again. A's tasks on it can no longer run, but nothing else of A's
// may stall: the tasks on A's own template still run, and the stranded task
// fails with a clear error instead of making every claim of A's fail (the
// UPDATE policy's template check used to refuse any write to such a row).
func attackUnpublishUsedTemplate(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	pb, pa := "B-"+uuid.NewString()[:8], "A-"+uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: pb, key: "pub", cfg: map[string]any{"cardinality": "1:1"}, isPublic: true})
	w.templates(ctx, t, w.a, stage{id: pa, key: "own", cfg: map[string]any{"cardinality": "1:1"}})
	onB := w.launch(ctx, t, w.a, pb, map[string]any{"row": 1})
	onA := w.launch(ctx, t, w.a, pa, map[string]any{"row": 2}, map[string]any{"row": 3})
	_, err := w.as(ctx, t, w.b, "update public.prompt_templates set is_public = false where id = $1", pb)
	require.NoError(t, err)

	runner := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "unpublish"}, w.db, echoModel{secret: "A-OUT"})
	claimed, err := runner.Claim(ctx, identity(w.a), 10, append(append([]uuid.UUID{}, onB.TaskIDs...), onA.TaskIDs...))
	record(t, "4b attacker unpublishes a template the victim's tasks use", "claim_tasks",
		"victim's claim succeeds", fmt.Sprintf("claimed %d of 3, error %v", len(claimed), err), err == nil && len(claimed) == 3)
	if err != nil {
		return
	}
	outcomes := map[uuid.UUID]pipeline.Outcome{}
	for i := range claimed {
		outcomes[claimed[i].Task.ID] = runner.Run(ctx, identity(w.a), &claimed[i]).Outcome
	}
	var status, msg string
	require.NoError(t, w.pool.QueryRow(ctx, "select status::text, coalesce(error_message, '') from public.ai_tasks where id = $1", onB.TaskIDs[0]).Scan(&status, &msg))
	ok := outcomes[onA.TaskIDs[0]] == pipeline.OutcomeCompleted && outcomes[onA.TaskIDs[1]] == pipeline.OutcomeCompleted &&
		status == "failed" && strings.Contains(msg, "prompt template")
	record(t, "4b victim's other tasks run; the stranded one fails clearly", "service loop",
		"own: completed; stranded: failed", fmt.Sprintf("own %s/%s, stranded %s %q", outcomes[onA.TaskIDs[0]], outcomes[onA.TaskIDs[1]], status, msg), ok)
}

// Attack 4: existence oracles through reference columns.
func attackOracles(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	mapper, merge, l := victimPipeline(ctx, t, w, "A-SECRET-"+uuid.NewString()[:8])
	var aConfig, aComponent uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.a, "insert into public.lab_orchestrator_configs (name) values ('private') returning id", nil, &aConfig))
	require.NoError(t, w.asRow(ctx, t, w.a, "insert into public.custom_components (name) values ('private') returning id", nil, &aComponent))
	q := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: q, key: "b", cfg: map[string]any{}})

	probes := []struct {
		name, sql string
		victim    any
		random    any
	}{
		{"parent_task_id", "insert into public.ai_tasks (status, parent_task_id) values ('plan', $1)", l.TaskIDs[0], uuid.New()},
		{"root_task_id", "insert into public.ai_tasks (status, root_task_id) values ('plan', $1)", l.TaskIDs[0], uuid.New()},
		{"batch_id", "insert into public.ai_tasks (status, batch_id) values ('plan', $1)", l.BatchID, uuid.New()},
		{"prompt_template_id", "insert into public.ai_tasks (status, prompt_template_id) values ('plan', $1)", mapper, uuid.NewString()},
		{"next_stage_template_id", "insert into public.prompt_templates (template, next_stage_template_id) values ('x', $1)", mapper, uuid.NewString()},
		{"custom_component_id", "insert into public.prompt_templates (template, custom_component_id) values ('x', $1)", aComponent, uuid.New()},
		{"orchestrator_config_id", "insert into public.task_batches (name, orchestrator_config_id) values ('x', $1)", aConfig, uuid.New()},
	}
	for _, p := range probes {
		_, ev := w.as(ctx, t, w.b, p.sql, p.victim)
		_, er := w.as(ctx, t, w.b, p.sql, p.random)
		record(t, "5 oracle: "+p.name+" = victim's id vs random id", "PostgREST insert",
			"same refusal", fmt.Sprintf("%s | %s", errText(ev), errText(er)), ev != nil && errText(ev) == errText(er))
	}
	// The barrier helpers take the owner as an argument. Both are SECURITY
	// DEFINER (docs/threat-model.md): asked about A, each must refuse as it
	// refuses a made-up owner; asked about B's own tasks in A's batch, each
	// must find none of A's.
	var stages []string
	require.NoError(t, w.pool.QueryRow(ctx, "select array_agg(distinct stage_key) from public.ai_tasks where batch_id = $1", l.BatchID).Scan(&stages))
	_, ev := w.as(ctx, t, w.b, "select orchable.scope_has_open(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", w.a, l.BatchID, stages)
	_, er := w.as(ctx, t, w.b, "select orchable.scope_has_open(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", uuid.New(), l.BatchID, stages)
	record(t, "5 oracle: scope_has_open on the victim's batch vs a random owner", "SQL as PostgREST", "same refusal (42501)",
		fmt.Sprintf("%s | %s", errText(ev), errText(er)), pgCode(ev) == "42501" && errText(ev) == errText(er))
	_, ev = w.as(ctx, t, w.b, "select count(*) from orchable.scope_tasks(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", w.a, l.BatchID, stages)
	_, er = w.as(ctx, t, w.b, "select count(*) from orchable.scope_tasks(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", uuid.New(), l.BatchID, stages)
	record(t, "5 oracle: scope_tasks on the victim's batch vs a random owner", "SQL as PostgREST", "same refusal (42501)",
		fmt.Sprintf("%s | %s", errText(ev), errText(er)), pgCode(ev) == "42501" && errText(ev) == errText(er))
	var rowsOfA int
	errRows := w.asRow(ctx, t, w.b, "select count(*) from orchable.scope_tasks(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", []any{w.b, l.BatchID, stages}, &rowsOfA)
	record(t, "5 read the victim's batch through scope_tasks as oneself", "SQL as PostgREST", "no row of A",
		fmt.Sprintf("rows=%d err=%s", rowsOfA, errText(errRows)), errRows == nil && rowsOfA == 0 && len(stages) > 0)
	var openOfA bool
	errOpen := w.asRow(ctx, t, w.b, "select orchable.scope_has_open(p_owner => $1, p_batch => $2, p_launch => null, p_root => null, p_stages => $3)", []any{w.b, l.BatchID, stages}, &openOfA)
	record(t, "5 probe the victim's open batch through scope_has_open as oneself", "SQL as PostgREST", "nothing open",
		fmt.Sprintf("open=%t err=%s", openOfA, errText(errOpen)), errOpen == nil && !openOfA && len(stages) > 0)
	// orchable.barrier_child (SECURITY INVOKER) decides a barrier's check
	// and returns the child it would insert and the upstream stages it
	// probed. B dresses a row as A's feeder in A's launch and names A's
	// merge: refused as for a made-up owner. As itself in A's launch, with
	// A's merge: no child, no stage of A's templates.
	var fromA struct {
		ID     uuid.UUID `json:"id"`
		Launch uuid.UUID `json:"launch_id"`
		Batch  uuid.UUID `json:"batch_id"`
		Root   uuid.UUID `json:"root_task_id"`
	}
	require.NoError(t, w.pool.QueryRow(ctx, "select id, launch_id, batch_id, coalesce(root_task_id, id) from public.ai_tasks where id = $1", l.TaskIDs[0]).
		Scan(&fromA.ID, &fromA.Launch, &fromA.Batch, &fromA.Root))
	const barrierChild = `select b.rc, b.child is null, coalesce(array_length(b.upstream, 1), 0)
		from orchable.barrier_child(jsonb_populate_record(null::public.ai_tasks, $1::jsonb),
		  (select p from public.prompt_templates p where p.id = $2 union all select jsonb_populate_record(null::public.prompt_templates, $3::jsonb) limit 1),
		  '{"cardinality": "N:1", "batch_grouping": "global"}', $4::text[], false, null) b`
	trig := func(owner uuid.UUID) string {
		return fmt.Sprintf(`{"id": %q, "user_id": %q, "launch_id": %q, "batch_id": %q, "root_task_id": %q, "stage_key": "mapper",
			"status": "completed", "step_number": 1}`, fromA.ID, owner, fromA.Launch, fromA.Batch, fromA.Root)
	}
	succOfA := fmt.Sprintf(`{"id": %q, "user_id": %q, "stage_key": "merge", "stage_config": {"cardinality": "N:1", "batch_grouping": "global"}}`, merge, w.a)
	// As the feeders' stage, "mapper"; as oneself another, so that A's
	// "mapper" would be among the upstream stages if A's templates showed.
	_, ev = w.as(ctx, t, w.b, barrierChild, trig(w.a), merge, succOfA, []string{"mapper"})
	_, er = w.as(ctx, t, w.b, barrierChild, trig(uuid.New()), merge, succOfA, []string{"mapper"})
	record(t, "5 barrier_child on the victim's feeder and merge vs a random owner", "SQL as PostgREST", "same refusal (42501)",
		fmt.Sprintf("%s | %s", errText(ev), errText(er)), pgCode(ev) == "42501" && errText(ev) == errText(er))
	var rc, noChild int
	var childNull bool
	errChild := w.asRow(ctx, t, w.b, barrierChild, []any{trig(w.b), merge, succOfA, []string{"designer"}}, &rc, &childNull, &noChild)
	record(t, "5 barrier_child as oneself in the victim's launch, naming the victim's merge", "SQL as PostgREST",
		"no child, no stage of A's", fmt.Sprintf("rc=%d child_null=%t upstream=%d err=%s", rc, childNull, noChild, errText(errChild)),
		errChild == nil && rc <= 0 && childNull && noChild == 0)
	// approved_by: no FK error either way; the writer is recorded.
	var got string
	require.NoError(t, w.asRow(ctx, t, w.b, "insert into public.ai_tasks (status, approved_by) values ('completed', $1) returning approved_by::text", []any{w.a}, &got))
	var got2 string
	require.NoError(t, w.asRow(ctx, t, w.b, "insert into public.ai_tasks (status, approved_by) values ('completed', $1) returning approved_by::text", []any{uuid.New()}, &got2))
	record(t, "5 oracle: approved_by = victim's id vs random id", "PostgREST insert", "both accepted as the writer",
		got+" | "+got2, got == w.b.String() && got2 == w.b.String())
}

// Attack 4 (squatting): B pre-creates the predictable ids of A's next
// import.
func attackImportSquatting(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	bundle, err := pipeline.SampleBundle()
	require.NoError(t, err)
	plan, err := bundle.Plan(w.a)
	require.NoError(t, err)
	for _, tpl := range plan.Templates {
		_, err := w.as(ctx, t, w.b, "insert into public.prompt_templates (id, template) values ($1, 'squatted')", tpl.ID)
		require.NoError(t, err)
	}
	_, err = w.as(ctx, t, w.b, "insert into public.lab_orchestrator_configs (id, name) values ($1, 'squatted')", plan.Config.ID)
	require.NoError(t, err)

	res, err := pipeline.Import(ctx, w.db, identity(w.a), bundle)
	ok := err == nil && len(res.TemplateIDs) == len(plan.Templates)
	var owned int
	if ok {
		require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.prompt_templates where id = any($1) and user_id = $2", res.TemplateIDs, w.a).Scan(&owned))
	}
	again, err2 := pipeline.Import(ctx, w.db, identity(w.a), bundle)
	record(t, "5 squat the victim's next import ids", "RPC import_pipeline", "A's import succeeds on private ids",
		fmt.Sprintf("err=%v owned=%d/%d stable=%v", err, owned, len(plan.Templates), err2 == nil && fmt.Sprint(again.TemplateIDs) == fmt.Sprint(res.TemplateIDs)),
		ok && owned == len(plan.Templates) && err2 == nil && fmt.Sprint(again.TemplateIDs) == fmt.Sprint(res.TemplateIDs))

	// A launches the imported pipeline and it runs on A's templates only.
	l := w.launch(ctx, t, w.a, res.RootTemplateID, map[string]any{"topic": "x"})
	var tpl string
	require.NoError(t, w.pool.QueryRow(ctx, "select prompt_template_id from public.ai_tasks where id = $1", l.TaskIDs[0]).Scan(&tpl))
	record(t, "5 victim launches the re-homed pipeline", "RPC launch_batch", "root on A's template", tpl, tpl == res.RootTemplateID)
}

// Attack 6: service-only functions and dangerous privileges.
func attackPrivileges(t *testing.T, w *world, variant string) {
	t.Helper()
	ctx := t.Context()
	for _, c := range []struct{ name, sql string }{
		{"due_tasks", "select public.due_tasks(10)"},
		{"requeue_expired_leases", "select public.requeue_expired_leases(1)"},
		{"fold_batch_counters", "select public.fold_batch_counters()"},
		{"set_engine_limits", "select public.set_engine_limits(1000000)"},
		{"trigger function", "select public.set_updated_at()"},
		{"truncate ai_tasks", "truncate public.ai_tasks"},
		{"read counter deltas", "select count(*) from public.task_batch_counter_deltas"},
		{"create trigger on ai_tasks", "create trigger x before insert on public.ai_tasks for each row execute function public.set_updated_at()"},
	} {
		_, err := w.as(ctx, t, w.b, c.sql)
		record(t, "6 "+c.name+" as a user ("+variant+")", "SQL as PostgREST", "permission denied", errText(err), pgCode(err) == "42501")
	}
	// The service identity runs no engine logic.
	err := w.db.RPC(ctx, supabase.ServiceIdentity(""), "claim_tasks", map[string]any{"p_worker": "svc"}, nil)
	record(t, "6 claim_tasks as the service identity ("+variant+")", "RPC service_role", "refused", errText(err), pgCode(err) == "42501")
}

// Attack 6b: the engine counts the status changes of a set-based claim or
// completion once per batch through orchable.count_moves (SECURITY DEFINER:
// the counter deltas are closed to clients, and the engine runs as the
// caller). B asks it to count moves in A's batch, and marks its own updates
// as counted already (orchable.counting, which the row trigger reads).
func attackForgeBatchCounters(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a, stage{id: p, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	l := w.launch(ctx, t, w.a, p, map[string]any{"row": 1}, map[string]any{"row": 2})

	var n int
	err := w.asRow(ctx, t, w.b, "select orchable.count_moves(array[$1::uuid, $1::uuid, null], 'plan', 'completed')", []any{l.BatchID}, &n)
	require.NoError(t, err)
	dbtest.FoldCounters(ctx, t, w.pool)
	var pending, completed int
	require.NoError(t, w.pool.QueryRow(ctx, "select pending_tasks, completed_tasks from public.task_batches where id = $1", l.BatchID).Scan(&pending, &completed))
	record(t, "6b count_moves asked to count moves in victim's batch", "SQL engine only", "nothing counted",
		fmt.Sprintf("delta rows=%d, A's batch pending=%d completed=%d", n, pending, completed), n == 0 && pending == 2 && completed == 0)

	// The mark only ever skips the marker's own rows: B's update of its own
	// task under it leaves B's batch uncounted (harming only B), and the
	// row trigger cannot touch a row B may not update.
	q := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: q, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	lb := w.launch(ctx, t, w.b, q, map[string]any{"row": 1})
	tx, err := w.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, w.b)
	_, err = tx.Exec(ctx, "select set_config('orchable.counting', 'deferred', true)")
	require.NoError(t, err)
	tag, err := tx.Exec(ctx, "update public.ai_tasks set status = 'completed' where id = any($1)", []uuid.UUID{l.TaskIDs[0], lb.TaskIDs[0]})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	dbtest.FoldCounters(ctx, t, w.pool)
	var aStatus string
	require.NoError(t, w.pool.QueryRow(ctx, "select status from public.ai_tasks where id = $1", l.TaskIDs[0]).Scan(&aStatus))
	require.NoError(t, w.pool.QueryRow(ctx, "select pending_tasks, completed_tasks from public.task_batches where id = $1", l.BatchID).Scan(&pending, &completed))
	record(t, "6b status updates marked as counted, A's task among them", "SQL", "A's task and counters unchanged",
		fmt.Sprintf("%s; A's task %s, A's batch pending=%d completed=%d", tag, aStatus, pending, completed), aStatus == "plan" && pending == 2 && completed == 0)
}

// attackClaimFromVictimCursor: claim_tasks' cursor (p_after_run_after,
// p_after_id) says where the caller's queue is walked from. B passes the
// keys of A's queued tasks (B knows A's ids and can guess their run_after),
// and a key before every key, through the transport the engine uses: B
// claims its own task and nothing of A's, and A's tasks stay runnable.
func attackClaimFromVictimCursor(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a, stage{id: p, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	la := w.launch(ctx, t, w.a, p, map[string]any{"row": 1}, map[string]any{"row": 2}, map[string]any{"row": 3})
	q := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: q, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	lb := w.launch(ctx, t, w.b, q, map[string]any{"row": 1})

	type key struct {
		RunAfter time.Time
		ID       uuid.UUID
	}
	var keys []key
	rows, err := w.pool.Query(ctx, "select run_after, id from public.ai_tasks where id = any($1) order by run_after, id", la.TaskIDs)
	require.NoError(t, err)
	for rows.Next() {
		var k key
		require.NoError(t, rows.Scan(&k.RunAfter, &k.ID))
		keys = append(keys, k)
	}
	require.NoError(t, rows.Err())
	require.Len(t, keys, 3)
	cursors := []map[string]any{
		{"p_after_run_after": keys[0].RunAfter, "p_after_id": keys[0].ID},
		{"p_after_run_after": keys[2].RunAfter, "p_after_id": keys[2].ID},
		{"p_after_run_after": "-infinity", "p_after_id": uuid.Nil},
	}
	var got []uuid.UUID
	for _, c := range cursors {
		args := map[string]any{"p_worker": "attacker", "p_lease_seconds": 300, "p_limit": 100, "p_task_ids": nil, "p_compact": true}
		maps.Copy(args, c)
		var out struct {
			Tasks []struct {
				ID     uuid.UUID `json:"id"`
				UserID uuid.UUID `json:"user_id"`
			} `json:"tasks"`
		}
		require.NoError(t, w.db.RPC(ctx, identity(w.b), "claim_tasks", args, &out))
		for _, task := range out.Tasks {
			got = append(got, task.ID)
		}
	}
	var aPlan int
	require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where id = any($1) and status = 'plan' and locked_by is null", la.TaskIDs).Scan(&aPlan))
	record(t, "13 claim_tasks from a cursor at A's queued tasks, and before every key", "SQL (direct transport, as B)", "only B's own task; A's tasks runnable",
		fmt.Sprintf("claimed %v (B's task %s); A's runnable tasks %d of 3", got, lb.TaskIDs[0], aPlan),
		slices.Equal(got, []uuid.UUID{lb.TaskIDs[0]}) && aPlan == 3)
}

// Attack 14: a task's reset for a retry finds what it removes through
// orchable.descendant_ids (SECURITY DEFINER: it walks parent_task_id with no
// policy) and the barrier scope index. B asks the walk about A's tree, as A
// and as itself; dresses its own failed task as a merge of A's batch and
// points it into A's tree; retries it, and A's task.
func attackResetThroughVictimTree(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a, stage{id: p, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	la := w.launch(ctx, t, w.a, p, map[string]any{"row": 1})
	aRoot := la.TaskIDs[0]
	// A's root has a child, as the engine makes one.
	aChild := uuid.New()
	tx, err := w.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, batch_id, launch_id, stage_key, parent_task_id, root_task_id, hierarchy_path, idempotency_key)
		values ($1, 'completed', '{}', $2, $3, $4, 'two', $5, $5, jsonb_build_array($5::uuid::text), 'succ/' || $5::uuid::text)`, aChild, w.a, la.BatchID, la.LaunchID, aRoot)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "update public.ai_tasks set status = 'completed' where id = $1", aRoot)
	require.NoError(t, err)
	// And a merge of A's launch, as check_barrier makes one.
	aMerge := uuid.New()
	scope := "launch:" + la.LaunchID.String()
	_, err = tx.Exec(ctx, `insert into public.ai_tasks (id, status, input_data, user_id, batch_id, launch_id, stage_key, parent_task_id, root_task_id, hierarchy_path, idempotency_key, extra)
		values ($1, 'completed', '{}', $2, $3, $4, 'merge', $5, $5, jsonb_build_array($5::uuid::text), 'barrier/m/' || $6::text,
		        jsonb_build_object('_barrier', jsonb_build_object('scope', $6::text, 'stages', '["one", "two"]'::jsonb)))`,
		aMerge, w.a, la.BatchID, la.LaunchID, aChild, scope)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	q := "B-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.b, stage{id: q, key: "one", cfg: map[string]any{"cardinality": "1:1"}})
	lb := w.launch(ctx, t, w.b, q, map[string]any{"row": 1})
	bTask := lb.TaskIDs[0]
	_, err = w.pool.Exec(ctx, "with e as (select set_config('orchable.engine', 'on', true)) update public.ai_tasks set status = 'failed' from e where id = $1", bTask)
	require.NoError(t, err)

	var n int
	errAsA := w.asRow(ctx, t, w.b, "select count(*)::int from orchable.descendant_ids($1, $2)", []any{w.a, aRoot}, &n)
	errAsB := w.asRow(ctx, t, w.b, "select count(*)::int from orchable.descendant_ids($1, $2)", []any{w.b, aRoot}, &n)
	record(t, "14 descendant_ids asked for A's tree, naming A and naming B", "SQL as B", "refused; nothing",
		fmt.Sprintf("naming A: %s; naming B: %s, %d ids", errText(errAsA), errText(errAsB), n), pgCode(errAsA) == "42501" && errAsB == nil && n == 0)

	// B's own task in A's launch, with A's root in its path and a merge's
	// marks of A's launch (columns B may write on its own row), pointed into
	// A's tree, then retried; and A's root retried by B.
	_, errLaunch := w.as(ctx, t, w.b, "update public.ai_tasks set launch_id = $2 where id = $1", bTask, la.LaunchID)
	_, errDress := w.as(ctx, t, w.b, `update public.ai_tasks set extra = jsonb_build_object('_barrier', jsonb_build_object('scope', $2::text, 'stages', '["one", "two"]'::jsonb)),
		hierarchy_path = jsonb_build_array($3::uuid::text) where id = $1`, bTask, scope, aRoot)
	_, errParent := w.as(ctx, t, w.b, "update public.ai_tasks set parent_task_id = $2, root_task_id = $2 where id = $1", bTask, aRoot)
	errRetryOwn := w.db.RPC(ctx, identity(w.b), "retry_failed_task", map[string]any{"p_task_id": bTask}, nil)
	errRetryA := w.db.RPC(ctx, identity(w.b), "retry_failed_task", map[string]any{"p_task_id": aRoot}, nil)
	var left int
	require.NoError(t, w.pool.QueryRow(ctx, "select count(*) from public.ai_tasks where id = any($1) and status = 'completed'", []uuid.UUID{aRoot, aChild, aMerge}).Scan(&left))
	record(t, "14 own task put in A's launch, dressed as A's merge and A's child, retried; retry of A's root", "SQL and RPC as B", "A's root, child and merge kept",
		fmt.Sprintf("launch: %s; dress: %s; parent: %s; own retry: %s; A's root: %s; A's tasks completed %d of 3",
			errText(errLaunch), errText(errDress), errText(errParent), errText(errRetryOwn), errText(errRetryA), left),
		left == 3 && errRetryA != nil)
}

// Attack 15: a child's id starts with its parent's first 48 bits
// (orchable.child_id, so that siblings are claimed together), and B knows
// A's task ids. Ids are unique across tenants, so an id B holds first is an
// id A's insert cannot take: B fills its own queue with ids in A's root's
// prefix (zero, all-ones and sequential tails, and a thousand random ones,
// as child_id makes them), then A's root splits. The 74 random bits after
// the prefix leave B nothing better than a guess (2^-74 an id), and rows in
// A's prefix are still B's: A's claims never see them.
func attackSquatChildIDs(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	p := "A-" + uuid.NewString()[:8]
	w.templates(ctx, t, w.a,
		stage{id: p + "-1", key: "one", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "-2"}},
		stage{id: p + "-2", key: "two", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}},
	)
	l := w.launch(ctx, t, w.a, p+"-1", map[string]any{"row": 1})
	root := l.TaskIDs[0]
	prefix := root.String()[:14]
	var squats []uuid.UUID
	for _, tail := range []string{"0000-0000-000000000000", "ffff-ffff-ffffffffffff", "4fff-bfff-ffffffffffff"} {
		squats = append(squats, uuid.MustParse(prefix+tail))
	}
	for i := range 1000 {
		squats = append(squats, uuid.MustParse(fmt.Sprintf("%s4000-8000-%012x", prefix, i)))
		squats = append(squats, uuid.MustParse(prefix+uuid.NewString()[14:]))
	}
	_, err := w.as(ctx, t, w.b, "insert into public.ai_tasks (id, status, input_data) select x, 'plan', '{}' from unnest($1::uuid[]) x", squats)
	require.NoError(t, err)

	// A runs its root as the service would: claim, then complete it, which
	// splits it in two.
	var claimed []struct {
		Task struct {
			ID uuid.UUID `json:"id"`
		} `json:"task"`
	}
	require.NoError(t, w.rpc(ctx, w.a, "claim_tasks", map[string]any{"p_worker": "a", "p_limit": 100}, &claimed))
	require.Len(t, claimed, 1)
	var res map[string]any
	err = w.rpc(ctx, w.a, "complete_task", map[string]any{
		"p_task_id": root, "p_worker": "a", "p_output": map[string]any{"items": []string{"A-1", "A-2"}}, "p_usage": map[string]any{},
	}, &res)
	claimed = nil
	if err == nil {
		err = w.rpc(ctx, w.a, "claim_tasks", map[string]any{"p_worker": "a", "p_limit": 100}, &claimed)
	}
	var aChildren, aPrefixed, bKept int
	require.NoError(t, w.pool.QueryRow(ctx, `select count(*), count(*) filter (where left(id::text, 14) = $2) from public.ai_tasks
		where user_id = $1 and parent_task_id = $3`, w.a, prefix, root).Scan(&aChildren, &aPrefixed))
	require.NoError(t, w.pool.QueryRow(ctx, `select count(*) from public.ai_tasks
		where id = any($2) and user_id = $1 and status = 'plan' and locked_by is null`, w.b, squats).Scan(&bKept))
	aClaimedB := 0
	for _, c := range claimed {
		if slices.Contains(squats, c.Task.ID) {
			aClaimedB++
		}
	}
	record(t, "15 ids in A's children's prefix (A's root's first 48 bits) held by B first: 2,003 of them, sequential and random tails",
		"PostgREST insert as B, then A's split (SQL)", "A's split makes both children in its prefix; A claims them and none of B's rows; B's rows stay B's",
		fmt.Sprintf("completion err=%v result=%v; A's children %d (%d in the prefix), A claimed %d (%d of B's); B's rows untouched %d of %d",
			err, res["status"], aChildren, aPrefixed, len(claimed), aClaimedB, bKept, len(squats)),
		err == nil && res["status"] == "completed" && aChildren == 2 && aPrefixed == 2 && len(claimed) == 2 && aClaimedB == 0 && bKept == len(squats))
}
