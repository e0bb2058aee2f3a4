package migrations_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// quotaReply is submit_free_tier_tasks' answer.
type quotaReply struct {
	Success   bool        `json:"success"`
	Error     string      `json:"error"`
	Used      int         `json:"used"`
	Limit     int         `json:"limit"`
	Remaining int         `json:"remaining"`
	TaskIDs   []uuid.UUID `json:"task_ids"`
	BatchIDs  []uuid.UUID `json:"batch_ids"`
}

// freeTasks is p_tasks of n root tasks as the front end sends them.
func freeTasks(user uuid.UUID, batch *uuid.UUID, n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{
			"task_type": "gen", "tier_source": "free_pool", "step_number": 1, "status": "plan",
			"input_data": map[string]any{"topic": i}, "user_id": user, "sequence": i,
		}
		if batch != nil {
			out[i]["batch_id"] = *batch
		}
	}
	return out
}

// submitAt calls the free-tier submission as user at the instant at, in its
// own transaction, as PostgREST would run submit_free_tier_tasks.
func submitAt(ctx context.Context, t *testing.T, pool *pgxpool.Pool, user uuid.UUID, tasks []map[string]any, at time.Time) (quotaReply, error) {
	t.Helper()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, user)
	var raw []byte
	b, _ := json.Marshal(tasks)
	if err := tx.QueryRow(ctx, `select orchable.submit_free_tier($1::jsonb, $2)`, b, at).Scan(&raw); err != nil {
		return quotaReply{}, err
	}
	var r quotaReply
	require.NoError(t, json.Unmarshal(raw, &r))
	return r, tx.Commit(ctx)
}

type usageRow struct {
	Month     string
	Used      int
	Limit     int
	Remaining int
}

func usageAt(ctx context.Context, t *testing.T, pool *pgxpool.Pool, user uuid.UUID, at time.Time) usageRow {
	t.Helper()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, user)
	var u usageRow
	require.NoError(t, tx.QueryRow(ctx, `select month, used, "limit", remaining from orchable.free_tier_usage($1)`, at).
		Scan(&u.Month, &u.Used, &u.Limit, &u.Remaining))
	return u
}

var novemberEnd = time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC) //nolint:gochecknoglobals // a fixed instant

// The quota at its edge (default 30 tasks a month): 29 used, one more
// passes (30); then one more, and two more from 29, are refused with the
// contract's shape, charging nothing. The next month (UTC) starts at zero.
func TestFreeTierQuotaEdges(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)

	t.Run("29-30-31", func(t *testing.T) {
		t.Parallel()
		user := dbtest.CreateUser(ctx, t, pool)
		r, err := submitAt(ctx, t, pool, user, freeTasks(user, nil, 29), novemberEnd)
		require.NoError(t, err)
		require.Equal(t, quotaReply{Success: true, Used: 29, Limit: 30, Remaining: 1, TaskIDs: r.TaskIDs, BatchIDs: r.BatchIDs}, r)
		require.Len(t, r.TaskIDs, 29)
		require.Len(t, r.BatchIDs, 1, "tasks without a batch share one new batch")

		r, err = submitAt(ctx, t, pool, user, freeTasks(user, nil, 2), novemberEnd)
		require.NoError(t, err)
		require.Equal(t, quotaReply{Error: "QUOTA_EXCEEDED", Used: 29, Limit: 30, Remaining: 1}, r, "29 + 2 > 30")

		r, err = submitAt(ctx, t, pool, user, freeTasks(user, nil, 1), novemberEnd)
		require.NoError(t, err)
		require.True(t, r.Success)
		require.Equal(t, 30, r.Used)
		require.Zero(t, r.Remaining)

		r, err = submitAt(ctx, t, pool, user, freeTasks(user, nil, 1), novemberEnd)
		require.NoError(t, err)
		require.Equal(t, quotaReply{Error: "QUOTA_EXCEEDED", Used: 30, Limit: 30, Remaining: 0}, r)
		require.Equal(t, usageRow{"2026-11", 30, 30, 0}, usageAt(ctx, t, pool, user, novemberEnd))

		var n int
		require.NoError(t, pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1 and tier_source = 'free_pool'`, user).Scan(&n))
		require.Equal(t, 30, n)

		// One second later it is December (UTC): a new month, a new quota.
		december := novemberEnd.Add(time.Second)
		require.Equal(t, usageRow{"2026-12", 0, 30, 30}, usageAt(ctx, t, pool, user, december))
		r, err = submitAt(ctx, t, pool, user, freeTasks(user, nil, 30), december)
		require.NoError(t, err)
		require.True(t, r.Success)
		require.Equal(t, usageRow{"2026-11", 30, 30, 0}, usageAt(ctx, t, pool, user, novemberEnd), "November is unchanged")
	})

	t.Run("RefusalLeavesNothing", func(t *testing.T) {
		t.Parallel()
		user := dbtest.CreateUser(ctx, t, pool)
		_, err := submitAt(ctx, t, pool, user, freeTasks(user, nil, 30), novemberEnd)
		require.NoError(t, err)
		// The front end creates the batch, then submits: refused, the empty
		// batch goes; a batch that already holds tasks stays.
		var empty, used uuid.UUID
		require.NoError(t, pool.QueryRow(ctx, `insert into public.task_batches (name, created_by, status, total_tasks) values ('free', $1, 'processing', 3) returning id`, user).Scan(&empty))
		require.NoError(t, pool.QueryRow(ctx, `select batch_id from public.ai_tasks where user_id = $1 limit 1`, user).Scan(&used))
		tasks := append(freeTasks(user, &empty, 3), freeTasks(user, &used, 1)...)
		r, err := submitAt(ctx, t, pool, user, tasks, novemberEnd)
		require.NoError(t, err)
		require.Equal(t, "QUOTA_EXCEEDED", r.Error)
		var batches, tasksNow, usage int
		require.NoError(t, pool.QueryRow(ctx, `select count(*) from public.task_batches where id = $1`, empty).Scan(&batches))
		require.Zero(t, batches, "the empty batch is gone")
		require.NoError(t, pool.QueryRow(ctx, `select count(*) from public.task_batches where id = $1`, used).Scan(&batches))
		require.Equal(t, 1, batches, "a batch with tasks stays")
		require.NoError(t, pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1`, user).Scan(&tasksNow))
		require.Equal(t, 30, tasksNow)
		require.NoError(t, pool.QueryRow(ctx, `select task_count from public.user_usage where user_id = $1`, user).Scan(&usage))
		require.Equal(t, 30, usage)

		// A bad task refuses the whole call before anything is charged.
		_, err = submitAt(ctx, t, pool, user, []map[string]any{{"status": "completed"}}, novemberEnd.AddDate(0, 0, 1))
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, "22023", pgErr.Code)
		require.Contains(t, pgErr.Message, "p_tasks[0]: status must be plan")
		require.Equal(t, usageRow{"2026-12", 0, 30, 30}, usageAt(ctx, t, pool, user, novemberEnd.AddDate(0, 0, 1)))
	})
}

// Concurrent submissions of one user at the boundary: 25 used, ten
// transactions each submit one task at once; the per-user lock lets exactly
// five through, whatever the interleaving.
func TestFreeTierConcurrentSubmits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	_, err := submitAt(ctx, t, pool, user, freeTasks(user, nil, 25), novemberEnd)
	require.NoError(t, err)

	const callers = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed, refused := 0, 0
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			if _, err := tx.Exec(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
				`{"sub":"`+user.String()+`","role":"authenticated"}`); err != nil {
				t.Error(err)
				return
			}
			b, _ := json.Marshal(freeTasks(user, nil, 1))
			var raw []byte
			if err := tx.QueryRow(ctx, `select orchable.submit_free_tier($1::jsonb, $2)`, b, novemberEnd).Scan(&raw); err != nil {
				t.Error(err)
				return
			}
			if err := tx.Commit(ctx); err != nil {
				t.Error(err)
				return
			}
			var r quotaReply
			_ = json.Unmarshal(raw, &r)
			mu.Lock()
			defer mu.Unlock()
			if r.Success {
				passed++
			} else {
				refused++
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, 5, passed)
	require.Equal(t, 5, refused)
	require.Equal(t, usageRow{"2026-11", 30, 30, 0}, usageAt(ctx, t, pool, user, novemberEnd))
	var n int
	require.NoError(t, pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1`, user).Scan(&n))
	require.Equal(t, 30, n)
}

// The per-user lock, step by step: at 29 used, transaction 1 submits one
// task and stays open; transaction 2's submission of the same user waits
// on the lock (seen in pg_stat_activity, not by sleeping), and once 1
// commits it sees 30 and is refused. Another user is not blocked meanwhile.
func TestFreeTierSubmitWaitsForTheUsersLock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user, other := dbtest.CreateUser(ctx, t, pool), dbtest.CreateUser(ctx, t, pool)
	_, err := submitAt(ctx, t, pool, user, freeTasks(user, nil, 29), novemberEnd)
	require.NoError(t, err)
	b, _ := json.Marshal(freeTasks(user, nil, 1))

	tx1, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx1.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx1, user)
	var first quotaReply
	var raw []byte
	require.NoError(t, tx1.QueryRow(ctx, `select orchable.submit_free_tier($1::jsonb, $2)`, b, novemberEnd).Scan(&raw))
	require.NoError(t, json.Unmarshal(raw, &first))
	require.True(t, first.Success)

	conn2, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn2.Release()
	var pid2 int
	require.NoError(t, conn2.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid2))
	type result struct {
		r   quotaReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		tx2, err := conn2.Begin(ctx)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer func() { _ = tx2.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx2.Exec(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`,
			`{"sub":"`+user.String()+`","role":"authenticated"}`); err != nil {
			done <- result{err: err}
			return
		}
		var raw []byte
		if err := tx2.QueryRow(ctx, `select orchable.submit_free_tier($1::jsonb, $2)`, b, novemberEnd).Scan(&raw); err != nil {
			done <- result{err: err}
			return
		}
		var r quotaReply
		_ = json.Unmarshal(raw, &r)
		done <- result{r: r, err: tx2.Commit(ctx)}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx, `select coalesce((select wait_event_type = 'Lock' from pg_stat_activity where pid = $1), false)`, pid2).Scan(&waiting))
		if waiting {
			break
		}
		require.True(t, time.Now().Before(deadline), "the second submission never waited on the lock")
		select {
		case r := <-done:
			t.Fatalf("the second submission did not wait: %+v", r)
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Another user is not blocked by this user's lock.
	r, err := submitAt(ctx, t, pool, other, freeTasks(other, nil, 1), novemberEnd)
	require.NoError(t, err)
	require.True(t, r.Success)

	require.NoError(t, tx1.Commit(ctx))
	second := <-done
	require.NoError(t, second.err)
	require.Equal(t, quotaReply{Error: "QUOTA_EXCEEDED", Used: 30, Limit: 30, Remaining: 0}, second.r)
}

// Every field the front end sends is kept (the original dropped most), the
// task is its own root, and the operator's quota setting applies.
func TestFreeTierSubmitKeepsFields(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	var batch uuid.UUID
	launch := uuid.New()
	require.NoError(t, pool.QueryRow(ctx, `insert into public.task_batches (name, created_by, launch_id) values ('free', $1, $2) returning id`, user, launch).Scan(&batch))
	tpl := "ft-keep-" + user.String() // a fresh id per run (-count=N)
	_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, user_id, template, stage_key) values ($2, $1, 'x', 'gen')`, user, tpl)
	require.NoError(t, err)
	task := map[string]any{
		"batch_id": batch, "launch_id": launch, "stage_key": "gen", "task_type": "generic", "tier_source": "free_pool",
		"step_number": 1, "status": "plan", "input_data": map[string]any{"topic": "t", "_orchestrator_name": "p"},
		"lo_code": "LO-7", "prompt_template_id": tpl, "user_id": user, "sequence": 4,
		"extra": map[string]any{"launcher_metadata": map[string]any{"original_index": 4}},
	}
	r, err := submitAt(ctx, t, pool, user, []map[string]any{task}, time.Now())
	require.NoError(t, err)
	require.True(t, r.Success)
	require.Equal(t, []uuid.UUID{batch}, r.BatchIDs)
	var got struct {
		batch, launch, root  uuid.UUID
		stage, lo, tpl, tier string
		step, seq            int
		input, extra, status string
	}
	require.NoError(t, pool.QueryRow(ctx, `select batch_id, launch_id, root_task_id, stage_key, lo_code, prompt_template_id, tier_source,
		step_number, sequence, input_data::text, extra::text, status::text from public.ai_tasks where id = $1`, r.TaskIDs[0]).
		Scan(&got.batch, &got.launch, &got.root, &got.stage, &got.lo, &got.tpl, &got.tier, &got.step, &got.seq, &got.input, &got.extra, &got.status))
	require.Equal(t, batch, got.batch)
	require.Equal(t, launch, got.launch)
	require.Equal(t, r.TaskIDs[0], got.root)
	require.Equal(t, []string{"gen", "LO-7", tpl, "free_pool", "plan"}, []string{got.stage, got.lo, got.tpl, got.tier, got.status})
	require.Equal(t, []int{1, 4}, []int{got.step, got.seq})
	require.JSONEq(t, `{"topic": "t", "_orchestrator_name": "p"}`, got.input)
	require.JSONEq(t, `{"launcher_metadata": {"original_index": 4}}`, got.extra)

	// The operator sets the quota (service_role); inside this transaction
	// the user sees the new limit.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, `set local role service_role`)
	require.NoError(t, err)
	var set []byte
	require.NoError(t, tx.QueryRow(ctx, `select public.set_free_tier_quota(100)`).Scan(&set))
	require.JSONEq(t, `{"monthly_task_limit": 100}`, string(set))
	_, err = tx.Exec(ctx, `reset role`)
	require.NoError(t, err)
	dbtest.AsUser(ctx, t, tx, user)
	var lim, used int
	require.NoError(t, tx.QueryRow(ctx, `select used, "limit" from public.get_free_tier_usage()`).Scan(&used, &lim))
	require.Equal(t, []int{1, 100}, []int{used, lim})
	_, err = tx.Exec(ctx, `select public.set_free_tier_quota(-1)`)
	require.Error(t, err, "users cannot set the quota")
}

// get_free_tier_usage and get_user_usage as the front end calls them; the
// tasks the engine creates from a free-pool task are free-pool tasks too,
// and count.
func TestFreeTierUsageAndSuccessors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	a, b := "ft-a-"+user.String(), "ft-b-"+user.String() // fresh ids per run (-count=N)
	_, err := pool.Exec(ctx, `insert into public.prompt_templates (id, user_id, template, stage_key, next_stage_template_ids, stage_config) values
		($2, $1, 'a', 'a', jsonb_build_array($3::text), '{}'), ($3, $1, 'b', 'b', '[]', '{"cardinality": "1:N", "split_path": "items"}')`, user, a, b)
	require.NoError(t, err)
	task := map[string]any{"prompt_template_id": a, "stage_key": "a", "input_data": map[string]any{"x": 1}}
	r, err := submitAt(ctx, t, pool, user, []map[string]any{task}, time.Now())
	require.NoError(t, err)
	require.True(t, r.Success)

	as := func(sql string, args ...any) []byte {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		dbtest.AsUser(ctx, t, tx, user)
		var out []byte
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&out), sql)
		require.NoError(t, tx.Commit(ctx))
		return out
	}
	var claimed []struct {
		Task struct {
			ID         uuid.UUID `json:"id"`
			TierSource string    `json:"tier_source"`
		} `json:"task"`
	}
	require.NoError(t, json.Unmarshal(as(`select public.claim_tasks('ft', 60, 10)`), &claimed))
	require.Len(t, claimed, 1)
	require.Equal(t, "free_pool", claimed[0].Task.TierSource, "the claimed task says it is free-pool (the runner picks pool keys)")
	as(`select to_jsonb(public.complete_task($1, 'ft', '{"items": [1, 2, 3]}'::jsonb))`, claimed[0].Task.ID)

	var children, free int
	require.NoError(t, pool.QueryRow(ctx, `select count(*), count(*) filter (where tier_source = 'free_pool') from public.ai_tasks
		where user_id = $1 and parent_task_id is not null`, user).Scan(&children, &free))
	require.Equal(t, 3, children)
	require.Equal(t, 3, free, "successors of a free-pool task are free-pool")

	var u struct {
		Month     string `json:"month"`
		Used      int    `json:"used"`
		Limit     int    `json:"limit"`
		Remaining int    `json:"remaining"`
	}
	require.NoError(t, json.Unmarshal(as(`select to_jsonb(x) from public.get_free_tier_usage() x`), &u))
	require.Equal(t, time.Now().UTC().Format("2006-01"), u.Month)
	require.Equal(t, []int{4, 30, 26}, []int{u.Used, u.Limit, u.Remaining}, "1 submitted + 3 successors")

	var rows []struct {
		Month     string `json:"month"`
		TaskCount int    `json:"task_count"`
	}
	require.NoError(t, json.Unmarshal(as(`select jsonb_agg(to_jsonb(x)) from public.get_user_usage($1) x`, user), &rows))
	require.Equal(t, u.Month, rows[0].Month, "data[0] is the current month")
	require.Equal(t, 4, rows[0].TaskCount)

	// A user who used nothing still gets the current month first.
	other := dbtest.CreateUser(ctx, t, pool)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dbtest.AsUser(ctx, t, tx, other)
	var month string
	var count int
	require.NoError(t, tx.QueryRow(ctx, `select month, task_count from public.get_user_usage($1)`, other).Scan(&month, &count))
	require.Equal(t, []any{u.Month, 0}, []any{month, count})
}

var _ = pgx.ErrNoRows
