package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// scriptedModel answers by the first line of the rendered prompt:
//
//	FAKE split <n>       → {"items": [0, …, n-1]}
//	FAKE echo <text>     → {"value": "<text>"}
//	FAKE fail <text>     → a permanent model error when text contains "!"
//	FAKE invalid         → an invalid-output error (regenerated), then valid
//	anything else        → {"result": "<first line>"}
type scriptedModel struct {
	calls   atomic.Int64
	mu      sync.Mutex
	byTask  map[uuid.UUID]int
	invalid map[uuid.UUID]int
	release chan struct{} // when set, every call waits on it
}

func newScripted() *scriptedModel {
	return &scriptedModel{byTask: map[uuid.UUID]int{}, invalid: map[uuid.UUID]int{}}
}

func (m *scriptedModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	m.calls.Add(1)
	m.mu.Lock()
	m.byTask[req.TaskID]++
	m.mu.Unlock()
	if m.release != nil {
		select {
		case <-m.release:
		case <-ctx.Done():
			return model.Response{}, ctx.Err()
		}
	}
	line, _, _ := strings.Cut(req.Prompt, "\n")
	f := strings.Fields(line)
	usage := model.Usage{PromptTokens: 10, CandidatesTokens: 5, TotalTokens: 15}
	out := func(v any) (model.Response, error) {
		b, _ := json.Marshal(v)
		return model.Response{Output: b, Usage: usage, ModelVersion: "fake-1"}, nil
	}
	if len(f) >= 2 && f[0] == "FAKE" {
		switch f[1] {
		case "split":
			n, _ := strconv.Atoi(f[2])
			items := make([]int, n)
			for i := range items {
				items[i] = i
			}
			return out(map[string]any{"items": items})
		case "echo":
			return out(map[string]any{"value": strings.Join(f[2:], " ")})
		case "fail":
			if strings.Contains(line, "!") {
				return model.Response{}, &model.Error{Kind: model.KindBlocked, Retry: model.RetryNever, Message: "blocked by safety filters"}
			}
			return out(map[string]any{"value": strings.Join(f[2:], " ")})
		case "invalid":
			m.mu.Lock()
			m.invalid[req.TaskID]++
			n := m.invalid[req.TaskID]
			m.mu.Unlock()
			if n == 1 {
				return model.Response{}, &model.Error{Kind: model.KindInvalidOutput, Retry: model.RetryRegenerate, Message: "output is not valid JSON"}
			}
			return out(map[string]any{"value": "fixed", "prompt_had_feedback": strings.Contains(req.Prompt, "rejected")})
		}
	}
	return out(map[string]any{"result": line})
}

// claimsIdentity is the test IdentitySource: the direct transport only needs claims.
type claimsIdentity struct{}

func (claimsIdentity) Identity(_ context.Context, user uuid.UUID) (supabase.Identity, error) {
	b, _ := json.Marshal(dbtest.UserClaims(user))
	return supabase.Identity{Claims: b}, nil
}

type bundle struct {
	pool *pgxpool.Pool
	db   *supabase.Direct
	user uuid.UUID
	gen  *scriptedModel
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool := dbtest.Pool(t)
	return &bundle{
		pool: pool,
		db:   supabase.NewDirect(pool, nil),
		user: dbtest.CreateUser(t.Context(), t, pool),
		gen:  newScripted(),
	}
}

type stage struct {
	id, key, prompt string
	cfg             map[string]any
	next            []string
	approval        bool
}

func (b *bundle) templates(ctx context.Context, t *testing.T, owner uuid.UUID, stages ...stage) {
	t.Helper()
	for _, s := range stages {
		cfg, _ := json.Marshal(s.cfg)
		next, _ := json.Marshal(append([]string{}, s.next...))
		_, err := b.pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id, requires_approval)
			values ($1, $2, $3, $4, $5, $6, $7)`, s.id, s.prompt, s.key, cfg, next, owner, s.approval)
		require.NoError(t, err)
	}
}

func (b *bundle) launch(ctx context.Context, t *testing.T, user uuid.UUID, root string, rows ...map[string]any) uuid.UUID {
	t.Helper()
	id, _ := claimsIdentity{}.Identity(ctx, user)
	var out struct {
		BatchID uuid.UUID `json:"batch_id"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": root, "p_rows": rows}, &out))
	return out.BatchID
}

// engine runs n dispatchers (as n service instances would) until no task of
// the users is unfinished.
type engine struct {
	disps    []*pipeline.Dispatcher
	finished chan pipeline.Result
}

type chanObserver struct{ ch chan pipeline.Result }

func (o chanObserver) TaskFinished(res pipeline.Result, _ string, _ time.Duration) { o.ch <- res }
func (chanObserver) QueueDepth(int, int)                                           {}
func (chanObserver) ClaimFailed(error)                                             {}

func (b *bundle) start(ctx context.Context, t *testing.T, instances int, cfg pipeline.RunnerConfig) *engine { //nolint:unparam // the seam for tests that change the runner's config
	t.Helper()
	e := &engine{finished: make(chan pipeline.Result, 10000)}
	for i := range instances {
		c := cfg
		c.WorkerID = fmt.Sprintf("w%d-%s", i, uuid.NewString()[:6])
		r := pipeline.NewRunner(&c, b.db, b.gen)
		d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 8, ClaimBatch: 3, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
		d.Start(ctx)
		e.disps = append(e.disps, d)
	}
	t.Cleanup(func() {
		for _, d := range e.disps {
			_ = d.Stop(context.Background())
		}
	})
	return e
}

func (e *engine) notify(users ...uuid.UUID) {
	for _, d := range e.disps {
		for _, u := range users {
			d.Notify(u)
		}
	}
}

// quiesce waits (on task events, never on a timer) until the users have no
// runnable or running task left.
func (b *bundle) quiesce(ctx context.Context, t *testing.T, e *engine, users ...uuid.UUID) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		var open int
		require.NoError(t, b.pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = any($1) and status in ('plan', 'processing')`, users).Scan(&open))
		if open == 0 {
			return
		}
		e.notify(users...)
		select {
		case <-e.finished:
		case <-deadline:
			t.Fatalf("pipeline did not quiesce: %d tasks still open", open)
		}
	}
}

type row struct {
	ID, Parent    string
	Stage, Status string
	Input, Output json.RawMessage
	Step          int
	Hierarchy     []string
	ErrorMessage  string
	TotalTokens   *int
	Idem          string
}

func (b *bundle) tree(ctx context.Context, t *testing.T, user uuid.UUID) []row {
	t.Helper()
	rows, err := b.pool.Query(ctx, `select id::text, coalesce(parent_task_id::text, ''), coalesce(stage_key, ''), status::text,
		input_data, coalesce(output_data, 'null'), step_number, hierarchy_path, coalesce(error_message, ''), total_token_count, coalesce(idempotency_key, '')
		from public.ai_tasks where user_id = $1 order by step_number, sequence, created_at`, user)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		var h json.RawMessage
		err := r.Scan(&x.ID, &x.Parent, &x.Stage, &x.Status, &x.Input, &x.Output, &x.Step, &h, &x.ErrorMessage, &x.TotalTokens, &x.Idem)
		_ = json.Unmarshal(h, &x.Hierarchy)
		return x, err
	})
	require.NoError(t, err)
	return out
}

func countBy(rows []row, f func(row) string) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		m[f(r)]++
	}
	return m
}

// orc02 is ORC-02's shape: mapper (1:1) → designer (1:N over items) → validator (N:1).
func orc02(prefix string) []stage {
	return []stage{
		{id: prefix + "A", key: "mapper", prompt: "FAKE split %%n%%", cfg: map[string]any{"cardinality": "1:1"}, next: []string{prefix + "B"}},
		{id: prefix + "B", key: "designer", prompt: "FAKE echo {{item}}", cfg: map[string]any{"cardinality": "1:N", "split_path": "result.items"}, next: []string{prefix + "C"}},
		{id: prefix + "C", key: "validator", prompt: "FAKE echo merged", cfg: map[string]any{"cardinality": "N:1"}},
	}
}

func TestPipelineSplitMerge(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "sm-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, orc02(p)...)
	batch := b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 3}, map[string]any{"n": 2})
	e := b.start(ctx, t, 1, pipeline.RunnerConfig{})
	b.quiesce(ctx, t, e, b.user)

	tree := b.tree(ctx, t, b.user)
	require.Equal(t, map[string]int{"mapper": 2, "designer": 5, "validator": 1}, countBy(tree, func(r row) string { return r.Stage }))
	require.Equal(t, map[string]int{"completed": 8}, countBy(tree, func(r row) string { return r.Status }))
	for _, r := range tree {
		require.NotNil(t, r.TotalTokens, "tokens recorded on %s", r.Stage)
		require.Equal(t, 15, *r.TotalTokens)
		switch r.Stage {
		case "designer":
			var in map[string]any
			require.NoError(t, json.Unmarshal(r.Input, &in))
			require.Contains(t, in, "item")
			require.Contains(t, in, "_split_index")
			require.Contains(t, in, "_split_total")
			require.Len(t, r.Hierarchy, 1)
			require.Equal(t, r.Parent, r.Hierarchy[0])
		case "validator":
			var in struct {
				OutputData []map[string]any `json:"output_data"`
				Merged     int              `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key in a merged input
			}
			require.NoError(t, json.Unmarshal(r.Input, &in))
			require.Len(t, in.OutputData, 5)
			require.Equal(t, 5, in.Merged)
			require.Equal(t, "0", in.OutputData[0]["value"])
			require.Equal(t, 3, r.Step)
		}
	}
	// One model call per task, no more.
	require.EqualValues(t, 8, b.gen.calls.Load())

	// Counters equal a recount after a fold.
	dbtest.FoldCounters(ctx, t, b.pool)
	var total, completed, failed, pending, processing int
	var status string
	require.NoError(t, b.pool.QueryRow(ctx, `select total_tasks, completed_tasks, failed_tasks, pending_tasks, processing_tasks, status from public.task_batches where id = $1`, batch).
		Scan(&total, &completed, &failed, &pending, &processing, &status))
	require.Equal(t, []int{8, 8, 0, 0, 0}, []int{total, completed, failed, pending, processing})
	require.Equal(t, "completed", status)
}

func TestPipelineFailuresRegenerationAndApproval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "fa-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "gen", prompt: "FAKE split %%n%%", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "check", prompt: "FAKE fail {{item}}{{input.mark}}", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "C"}},
		stage{id: p + "C", key: "merge", prompt: "FAKE invalid", cfg: map[string]any{"cardinality": "N:1"}, next: []string{p + "D"}, approval: true},
		stage{id: p + "D", key: "final", prompt: "FAKE echo done", cfg: map[string]any{"cardinality": "1:1"}},
	)
	// The first row's check tasks fail (the "!" in the prompt), the second's pass.
	b.launch(ctx, t, b.user, p+"A", map[string]any{"n": 2, "mark": "!"}, map[string]any{"n": 1, "mark": ""})
	e := b.start(ctx, t, 1, pipeline.RunnerConfig{})
	b.quiesce(ctx, t, e, b.user)

	tree := b.tree(ctx, t, b.user)
	byStage := map[string][]row{}
	for _, r := range tree {
		byStage[r.Stage] = append(byStage[r.Stage], r)
	}
	require.Len(t, byStage["check"], 3)
	require.Equal(t, map[string]int{"failed": 2, "completed": 1}, countBy(byStage["check"], func(r row) string { return r.Status }))
	for _, r := range byStage["check"] {
		if r.Status == "failed" {
			require.Contains(t, r.ErrorMessage, "blocked by safety filters")
		}
	}
	// The merge waited for the failed parents, then ran once, regenerated
	// once after invalid output, and stopped at generated for approval.
	require.Len(t, byStage["merge"], 1)
	m := byStage["merge"][0]
	require.Equal(t, "generated", m.Status)
	require.JSONEq(t, `{"value": "fixed", "prompt_had_feedback": true}`, string(m.Output))
	var in map[string]any
	require.NoError(t, json.Unmarshal(m.Input, &in))
	require.EqualValues(t, 1, in["_merged_from_count"])
	require.EqualValues(t, 2, in["_failed_count"])
	require.Empty(t, byStage["final"])

	// Approve with an edited output: final is created from the edit.
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	require.NoError(t, b.db.RPC(ctx, id, "approve_task", map[string]any{"p_task_id": m.ID, "p_edited_output": map[string]any{"value": "edited"}, "p_edit_notes": "tightened"}, nil))
	// Approving twice is a no-op.
	var again map[string]any
	require.NoError(t, b.db.RPC(ctx, id, "approve_task", map[string]any{"p_task_id": m.ID, "p_edited_output": nil, "p_edit_notes": nil}, &again))
	require.Equal(t, true, again["duplicate"])
	b.quiesce(ctx, t, e, b.user)
	tree = b.tree(ctx, t, b.user)
	var final []row
	for _, r := range tree {
		if r.Stage == "final" {
			final = append(final, r)
		}
	}
	require.Len(t, final, 1)
	require.JSONEq(t, `{"value": "edited"}`, string(final[0].Input))
	require.Equal(t, "completed", final[0].Status)

	// Retrying a failed check task removes the merge (and its descendants),
	// runs the check again, and the merge is recreated exactly once.
	var failedID string
	for _, r := range byStage["check"] {
		if r.Status == "failed" {
			failedID = r.ID
			break
		}
	}
	_, err := b.pool.Exec(ctx, "update public.prompt_templates set template = 'FAKE echo ok' where id = $1", p+"B")
	require.NoError(t, err)
	require.NoError(t, b.db.RPC(ctx, id, "retry_failed_task", map[string]any{"p_task_id": failedID}, nil))
	// The engine still runs: the dispatcher claims again for the owner after
	// each finished task (its successors may be due), and that claim can
	// come after the retry, run the check again and make a new merge before
	// this read (CI saw it). So the old merge and its descendant are looked
	// for by id; a new merge (another id) may already exist, but not a
	// second one, and no final (the new merge waits for approval).
	tree = b.tree(ctx, t, b.user)
	for _, r := range tree {
		require.NotEqual(t, m.ID, r.ID, "the merge is removed")
		require.NotEqual(t, final[0].ID, r.ID, "the merge's descendant is removed")
	}
	require.LessOrEqual(t, countBy(tree, func(r row) string { return r.Stage })["merge"], 1)
	require.Equal(t, 0, countBy(tree, func(r row) string { return r.Stage })["final"])
	b.quiesce(ctx, t, e, b.user)
	tree = b.tree(ctx, t, b.user)
	counts := countBy(tree, func(r row) string { return r.Stage + ":" + r.Status })
	require.Equal(t, 1, counts["merge:generated"])
	require.Equal(t, 2, counts["check:completed"])
	require.Equal(t, 1, counts["check:failed"])
}

func TestPipelineJoin(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "jn-" + uuid.NewString()[:8] + "-"
	// ORC-10's shape: A → B; C depends on A and B; D on A, B and C.
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "p1", prompt: "FAKE echo a-%%topic%%", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B", p + "C", p + "D"}},
		stage{id: p + "B", key: "p2", prompt: "FAKE echo b", cfg: map[string]any{"cardinality": "1:1", "dependsOn": []string{"p1"}}, next: []string{p + "C", p + "D"}},
		stage{id: p + "C", key: "p3", prompt: "FAKE echo c {{p1.value}}", cfg: map[string]any{"cardinality": "1:1", "dependsOn": []string{"p1", "p2"}}, next: []string{p + "D"}},
		stage{id: p + "D", key: "p4", prompt: "FAKE echo d %%p1.value%% %%p2.value%% %%p3.value%% %%topic%%", cfg: map[string]any{"cardinality": "1:1", "dependsOn": []string{"p1", "p2", "p3"}}},
	)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"topic": "x"}, map[string]any{"topic": "y"})
	e := b.start(ctx, t, 2, pipeline.RunnerConfig{})
	b.quiesce(ctx, t, e, b.user)

	tree := b.tree(ctx, t, b.user)
	require.Equal(t, map[string]int{"p1": 2, "p2": 2, "p3": 2, "p4": 2}, countBy(tree, func(r row) string { return r.Stage }))
	for _, r := range tree {
		require.Equal(t, "completed", r.Status, r.Stage+" "+r.ErrorMessage)
		if r.Stage == "p3" {
			// A's completion makes B before it checks the joins: checked
			// first, p3's join would find no p2 task and nothing open in
			// the row, and go ahead without B's output.
			var in map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(r.Input, &in))
			require.Contains(t, in, "p1")
			require.Contains(t, in, "p2", "p3 was made before B finished")
			require.Equal(t, 3, r.Step)
		}
		if r.Stage == "p4" {
			var out map[string]string
			require.NoError(t, json.Unmarshal(r.Output, &out))
			// Each row's join sees only its own lineage.
			f := strings.Fields(out["value"])
			topic := f[len(f)-1]
			require.Equal(t, "d a-"+topic+" b c a-"+topic+" "+topic, out["value"])
		}
	}
}

// Several instances racing, a redelivered completion and a worker that dies
// mid-task give the same tree as one instance.
func TestPipelineConcurrencyAndCrash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cc-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, orc02(p)...)
	rows := make([]map[string]any, 12)
	for i := range rows {
		rows[i] = map[string]any{"n": i%4 + 1}
	}
	b.launch(ctx, t, b.user, p+"A", rows...)

	// A worker claims two roots and dies (never completes).
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	dead := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "dead", LeaseDuration: 5 * time.Second}, b.db, b.gen)
	claimed, err := dead.Claim(ctx, id, 2, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	// Lease columns are engine state: only an engine write may move them.
	_, err = b.pool.Exec(ctx, `with e as (select set_config('orchable.engine', 'on', true))
		update public.ai_tasks set locked_until = now() - interval '1 second' from e where locked_by = 'dead'`)
	require.NoError(t, err)
	var requeue map[string]int
	require.NoError(t, b.pool.QueryRow(ctx, "select public.requeue_expired_leases()::text").Scan(new(string)))
	_ = requeue

	e := b.start(ctx, t, 8, pipeline.RunnerConfig{})
	b.quiesce(ctx, t, e, b.user)

	// The dead worker's late completion is refused.
	err = b.db.RPC(ctx, id, "complete_task", map[string]any{"p_task_id": claimed[0].Task.ID, "p_worker": "dead", "p_output": map[string]any{"items": []int{1}}, "p_usage": map[string]any{}}, nil)
	require.Error(t, err)

	tree := b.tree(ctx, t, b.user)
	wantDesigners := 0
	for i := range rows {
		wantDesigners += i%4 + 1
	}
	require.Equal(t, map[string]int{"mapper": 12, "designer": wantDesigners, "validator": 1}, countBy(tree, func(r row) string { return r.Stage }))
	require.Equal(t, map[string]int{"completed": 12 + wantDesigners + 1}, countBy(tree, func(r row) string { return r.Status }))
	keys := map[string]bool{}
	for _, r := range tree {
		if r.Idem != "" {
			require.False(t, keys[r.Idem], "duplicate child %s", r.Idem)
			keys[r.Idem] = true
		}
	}
	// Each task ran the model once, except the two the dead worker held (claimed, never called).
	b.gen.mu.Lock()
	defer b.gen.mu.Unlock()
	for task, n := range b.gen.byTask {
		require.Equal(t, 1, n, "task %s called the model %d times", task, n)
	}

	// Redelivering a completion creates nothing new.
	var mapper row
	for _, r := range tree {
		if r.Stage == "mapper" {
			mapper = r
			break
		}
	}
	var dup map[string]any
	require.NoError(t, b.db.RPC(ctx, id, "complete_task", map[string]any{"p_task_id": mapper.ID, "p_worker": "whoever", "p_output": mapper.Output, "p_usage": map[string]any{}}, &dup))
	require.Equal(t, true, dup["duplicate"])
	require.Len(t, b.tree(ctx, t, b.user), len(tree))
}

// Two tenants at once: each user's work runs as that user and neither sees
// the other's rows.
func TestPipelineTwoTenants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	other := dbtest.CreateUser(ctx, t, b.pool)
	pa, pb := "ta-"+uuid.NewString()[:8]+"-", "tb-"+uuid.NewString()[:8]+"-"
	b.templates(ctx, t, b.user, orc02(pa)...)
	b.templates(ctx, t, other, orc02(pb)...)
	b.launch(ctx, t, b.user, pa+"A", map[string]any{"n": 2})
	b.launch(ctx, t, other, pb+"A", map[string]any{"n": 3})
	// A user cannot launch on another user's private template.
	id, _ := claimsIdentity{}.Identity(ctx, other)
	err := b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": pa + "A", "p_rows": []any{map[string]any{"n": 1}}}, nil)
	require.ErrorIs(t, err, supabase.ErrNotFound)

	e := b.start(ctx, t, 2, pipeline.RunnerConfig{})
	b.quiesce(ctx, t, e, b.user, other)
	require.Len(t, b.tree(ctx, t, b.user), 1+2+1)
	require.Len(t, b.tree(ctx, t, other), 1+3+1)

	var visible int
	var rows []map[string]any
	require.NoError(t, b.db.Select(ctx, id, "ai_tasks", supabase.Query{Columns: []string{"id", "user_id"}}, &rows))
	for _, r := range rows {
		require.Equal(t, other.String(), r["user_id"])
		visible++
	}
	require.Equal(t, 5, visible)
}

// Pause stops claims, resume restarts them, cancel marks unstarted tasks
// cancelled, and execution_delay_seconds spaces starts within a batch.
func TestBatchControl(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "bc-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "bc"}, b.db, b.gen)

	rows := []map[string]any{{"i": 1}, {"i": 2}, {"i": 3}}
	batch := b.launch(ctx, t, b.user, p+"A", rows...)
	rpc := func(fn string) map[string]any {
		var out map[string]any
		require.NoError(t, b.db.RPC(ctx, id, fn, map[string]any{"p_batch_id": batch}, &out))
		return out
	}
	require.Equal(t, "paused", rpc("pause_batch")["status"])
	claimed, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Empty(t, claimed, "paused batches are not claimed")
	require.Equal(t, "processing", rpc("resume_batch")["status"])
	claimed, err = r.Claim(ctx, id, 1, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	out := rpc("cancel_batch")
	require.Equal(t, "cancelled", out["status"])
	require.EqualValues(t, 2, out["cancelled_tasks"])
	// The running task completes but spawns nothing; cancelling again is a no-op.
	require.Equal(t, true, rpc("cancel_batch")["duplicate"])

	// Spacing: one start per delay interval.
	var delayed struct {
		BatchID uuid.UUID `json:"batch_id"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": p + "A", "p_rows": rows, "p_execution_delay_seconds": 3600}, &delayed))
	claimed, err = r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 1, "a delayed batch starts one task per interval")
	claimed, err = r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Empty(t, claimed)
	var next time.Time
	require.NoError(t, b.pool.QueryRow(ctx, "select next_start_at from public.task_batches where id = $1", delayed.BatchID).Scan(&next))
	require.Greater(t, time.Until(next), 59*time.Minute)
}

// A commit that makes a task runnable wakes the LISTENing sweeper, which
// hands the owner (named in the NOTIFY payload) to the dispatcher: the task
// runs although the sweep interval is an hour and no webhook is sent.
func TestListenNotifyWakeUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ln-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "only", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}})
	finished := make(chan pipeline.Result, 10)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ln"}, b.db, b.gen)
	// Other tests share this database and their commits notify too: this
	// dispatcher serves only this test's user.
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, Observer: chanObserver{finished}}, onlyUser{b.user}, r)
	d.Start(ctx)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	s := pipeline.NewSweeper(&pipeline.SweeperConfig{Interval: time.Hour, FoldInterval: time.Hour, Listen: b.pool},
		b.db, supabase.ServiceIdentity(""), d)
	s.Start(ctx)
	t.Cleanup(s.Stop)
	// The first sweep runs at start; wait until the listener is up by
	// launching only after a round trip through the database.
	var listening bool
	for range 200 {
		require.NoError(t, b.pool.QueryRow(ctx, "select exists (select 1 from pg_stat_activity where query = 'listen orchable_wakeup' and datname = current_database())").Scan(&listening))
		if listening {
			break
		}
		runtime.Gosched()
		<-time.After(5 * time.Millisecond) // polling a condition, bounded
	}
	require.True(t, listening)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"i": 1})
	select {
	case res := <-finished:
		require.Equal(t, pipeline.OutcomeCompleted, res.Outcome)
	case <-time.After(30 * time.Second):
		t.Fatal("the NOTIFY wake-up did not run the task")
	}
}

// complete_tasks: leaves take the set-based path, tasks with successors the
// per-item path, and a bad item fails alone.
func TestCompleteTasksMixed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ct-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "L", key: "leaf", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}},
		stage{id: p + "A", key: "head", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "tail", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}},
	)
	leafBatch := b.launch(ctx, t, b.user, p+"L", map[string]any{"i": 1}, map[string]any{"i": 2})
	b.launch(ctx, t, b.user, p+"A", map[string]any{"i": 3})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ct"}, b.db, b.gen)
	claimed, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	items := []map[string]any{}
	for _, c := range claimed {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"v": 1}, "usage": map[string]any{"total_token_count": 7}})
	}
	items = append(items,
		map[string]any{"task_id": claimed[0].Task.ID, "output": map[string]any{"v": 2}}, // a second, different completion: refused
		map[string]any{"task_id": "not-a-uuid", "output": map[string]any{}},
	)
	var res []map[string]any
	require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "ct", "p_items": items}, &res))
	require.Len(t, res, 5)
	for i, c := range claimed {
		require.Equal(t, "completed", res[i]["status"], "item %d (%s)", i, deref(c.Task.StageKey))
		// Completed by this call, not reported as a repeat.
		require.NotContains(t, res[i], "duplicate", "item %d (%s)", i, deref(c.Task.StageKey))
		if deref(c.Task.StageKey) == "head" {
			require.EqualValues(t, 1, res[i]["created"])
		}
	}
	require.Equal(t, "PT409", res[3]["code"])
	require.Equal(t, "22P02", res[4]["code"])

	tree := b.tree(ctx, t, b.user)
	require.Equal(t, map[string]int{"leaf": 2, "head": 1, "tail": 1}, countBy(tree, func(r row) string { return r.Stage }))
	for _, r := range tree {
		if r.Stage != "tail" {
			require.Equal(t, "completed", r.Status)
			require.Equal(t, 7, *r.TotalTokens)
			require.JSONEq(t, `{"v": 1}`, string(r.Output))
		}
	}
	dbtest.FoldCounters(ctx, t, b.pool)
	var completed int
	require.NoError(t, b.pool.QueryRow(ctx, "select completed_tasks from public.task_batches where id = $1", leafBatch).Scan(&completed))
	require.Equal(t, 2, completed)
}

// complete_tasks with leaves and a repeated item, and no failing one: the
// leaves are completed set-based and the repeat goes through complete_one,
// so each leaf's first item gets the leaf result and the repeat is a
// duplicate. (A failing item makes the call complete every item again one
// at a time; TestCompleteTasksMixed covers that.)
func TestCompleteTasksLeavesBesideARepeat(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cr-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "L", key: "leaf", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}})
	b.launch(ctx, t, b.user, p+"L", map[string]any{"i": 1}, map[string]any{"i": 2}, map[string]any{"i": 3}, map[string]any{"i": 4}, map[string]any{"i": 5})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cr"}, b.db, b.gen)
	claimed, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 5)
	items := []map[string]any{}
	for _, c := range claimed {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"v": 1}})
	}
	var res []json.RawMessage
	require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "cr", "p_items": append(items[:3:3], items[1])}, &res))
	require.Len(t, res, 4)
	for i := range 3 {
		require.JSONEq(t, `{"status": "completed", "created": 0, "waiting": 0}`, string(res[i]), "item %d", i)
	}
	require.JSONEq(t, `{"status": "completed", "created": 0, "duplicate": true}`, string(res[3]), "the repeat")

	// Only leaves: every result is the leaf result, one per item.
	res = nil
	require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "cr", "p_items": items[3:]}, &res))
	require.Len(t, res, 2)
	for i := range res {
		require.JSONEq(t, `{"status": "completed", "created": 0, "waiting": 0}`, string(res[i]), "leaf %d", i)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p != nil {
		return *p
	}
	return zero
}

// onlyUser is an IdentitySource that acts for one user and refuses others.
type onlyUser struct{ user uuid.UUID }

func (o onlyUser) Identity(ctx context.Context, user uuid.UUID) (supabase.Identity, error) {
	if user != o.user {
		return supabase.Identity{}, fmt.Errorf("user %s is not served by this test", user)
	}
	return claimsIdentity{}.Identity(ctx, user)
}

// claim_tasks' compact result (what Runner.Claim asks for) carries the same
// task, template and batch values as the full result, each template and
// batch once, and leaves out a template the owner may not use.
func TestClaimCompactMatchesFull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	other := dbtest.CreateUser(ctx, t, b.pool)
	p := "cc-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "a", prompt: "FAKE echo {{x}}", cfg: map[string]any{"cardinality": "1:1"}})
	b.templates(ctx, t, other, stage{id: p + "private", key: "p", prompt: "secret prompt of another user"})
	batch := b.launch(ctx, t, b.user, p+"A", map[string]any{"x": 1}, map[string]any{"x": 2}, map[string]any{"x": 3})
	// A task of b.user naming another user's private template (as when its
	// author makes a template private after the task was created).
	var foreign uuid.UUID
	require.NoError(t, b.pool.QueryRow(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, prompt_template_id)
		values ('generic', 'plan', '{}', $1, 'p', $2) returning id`, b.user, p+"private").Scan(&foreign))
	id, _ := claimsIdentity{}.Identity(ctx, b.user)

	var compact struct {
		Tasks     []map[string]json.RawMessage          `json:"tasks"`
		Templates map[string]map[string]json.RawMessage `json:"templates"`
		Batches   map[string]map[string]json.RawMessage `json:"batches"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "w", "p_limit": 10, "p_compact": true}, &compact))
	require.Len(t, compact.Tasks, 4)
	require.Len(t, compact.Templates, 1, "one entry per template, and none for the unusable one")
	require.Contains(t, compact.Templates, p+"A")
	require.Len(t, compact.Batches, 1)
	require.Contains(t, compact.Batches, batch.String())

	// Give them back (release_task undoes the attempt) and claim the same
	// tasks again in the full shape.
	for _, tk := range compact.Tasks {
		var tid uuid.UUID
		require.NoError(t, json.Unmarshal(tk["id"], &tid))
		// The lease is written once per claim, not read back per row: it is
		// the row's own.
		var lease, status string
		require.NoError(t, b.pool.QueryRow(ctx, "select to_json(locked_until)::text, to_json(status)::text from public.ai_tasks where id = $1", tid).Scan(&lease, &status))
		require.JSONEq(t, lease, string(tk["locked_until"]), "the lease of task %s", tid)
		require.JSONEq(t, status, string(tk["status"]), "the status of task %s", tid)
		require.NoError(t, b.db.RPC(ctx, id, "release_task", map[string]any{"p_task_id": tid, "p_worker": "w"}, nil))
	}
	var full []struct {
		Task     map[string]json.RawMessage `json:"task"`
		Template map[string]json.RawMessage `json:"template"`
		Batch    map[string]json.RawMessage `json:"batch"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "w", "p_limit": 10}, &full))
	require.Len(t, full, 4)
	byID := map[string]int{}
	for i, f := range full {
		byID[string(f.Task["id"])] = i
	}
	for _, tk := range compact.Tasks {
		f := full[byID[string(tk["id"])]]
		for k, v := range tk {
			if k == "locked_until" { // a new lease
				continue
			}
			require.JSONEq(t, string(f.Task[k]), string(v), "task column %s", k)
		}
		var tpl string
		require.NoError(t, json.Unmarshal(tk["prompt_template_id"], &tpl))
		if tpl == p+"private" {
			require.Nil(t, f.Template, "full: no template the owner may not use")
			continue
		}
		require.Len(t, compact.Templates[tpl], 10)
		for k, v := range compact.Templates[tpl] {
			require.JSONEq(t, string(f.Template[k]), string(v), "template column %s", k)
		}
		require.Len(t, compact.Batches[batch.String()], len(f.Batch))
		for k, v := range compact.Batches[batch.String()] {
			require.JSONEq(t, string(f.Batch[k]), string(v), "batch column %s", k)
		}
	}

	// In columns (p_columns, what the service asks for): one array per
	// column, the same values as the objects above, the same templates and
	// batches; the columns the claim sets alike for every task are left out.
	for _, f := range full {
		var tid uuid.UUID
		require.NoError(t, json.Unmarshal(f.Task["id"], &tid))
		require.NoError(t, b.db.RPC(ctx, id, "release_task", map[string]any{"p_task_id": tid, "p_worker": "w"}, nil))
	}
	var columns struct {
		Tasks     map[string][]json.RawMessage          `json:"tasks"`
		Templates map[string]map[string]json.RawMessage `json:"templates"`
		Batches   map[string]map[string]json.RawMessage `json:"batches"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "w", "p_limit": 10, "p_compact": true, "p_columns": true}, &columns))
	require.Len(t, columns.Tasks, len(compact.Tasks[0])-3, "a column per task column but status, locked_by and locked_until")
	for _, k := range []string{"status", "locked_by", "locked_until"} {
		require.NotContains(t, columns.Tasks, k)
	}
	require.Len(t, columns.Tasks["id"], 4)
	for i, cid := range columns.Tasks["id"] {
		var row map[string]json.RawMessage
		for _, tk := range compact.Tasks {
			if string(tk["id"]) == string(cid) {
				row = tk
			}
		}
		require.NotNil(t, row, "task %s claimed in both shapes", cid)
		for k, col := range columns.Tasks {
			require.Len(t, col, 4, "column %s", k)
			require.JSONEq(t, string(row[k]), string(col[i]), "task %s, column %s", cid, k)
		}
	}
	require.Equal(t, compact.Templates, columns.Templates)
	require.Equal(t, compact.Batches, columns.Batches)
	// p_columns shapes the compact result only.
	err := b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "w", "p_limit": 10, "p_columns": true}, nil)
	require.ErrorContains(t, err, "p_columns shapes the compact result: it needs p_compact")

	// Runner.Claim gives each task its own copy of its template and batch.
	require.NoError(t, b.db.RPC(ctx, id, "release_task", map[string]any{"p_task_id": foreign, "p_worker": "w"}, nil))
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "w2"}, b.db, b.gen)
	for _, cid := range columns.Tasks["id"] {
		var tid uuid.UUID
		require.NoError(t, json.Unmarshal(cid, &tid))
		if tid != foreign {
			require.NoError(t, b.db.RPC(ctx, id, "release_task", map[string]any{"p_task_id": tid, "p_worker": "w"}, nil))
		}
	}
	claimed, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 4)
	for _, c := range claimed {
		if c.Task.ID == foreign {
			require.Nil(t, c.Template)
			require.Nil(t, c.Batch)
			continue
		}
		require.NotNil(t, c.Template)
		require.Equal(t, p+"A", c.Template.ID)
		require.Equal(t, "FAKE echo {{x}}", c.Template.Template)
		require.Equal(t, b.user, *c.Template.UserID)
		require.NotNil(t, c.Batch)
		require.Equal(t, batch, c.Batch.ID)
		require.NotEmpty(t, c.Task.InputData)
		require.Equal(t, 1, c.Task.Attempts)
	}
	require.NotSame(t, claimed[0].Template, claimed[1].Template)
}

// complete_tasks with whole stages in one call: tasks with successors are
// completed one at a time, each with its successors. A whole split
// completed in one call closes its merge exactly once, a repeated item is a
// duplicate, and a split whose output has no array fails alone without
// undoing the others.
func TestCompleteTasksGrouped(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cg-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "mapper", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "designer", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "C"}},
		stage{id: p + "C", key: "validator", prompt: "x", cfg: map[string]any{"cardinality": "N:1"}},
	)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"r": 1}, map[string]any{"r": 2}, map[string]any{"r": 3})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cg"}, b.db, b.gen)
	complete := func(items []map[string]any) []map[string]any {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "cg", "p_items": items}, &res))
		require.Len(t, res, len(items))
		return res
	}
	claimAll := func(stage string, n int) []pipeline.Claimed {
		t.Helper()
		c, err := r.Claim(ctx, id, 100, nil)
		require.NoError(t, err)
		require.Len(t, c, n)
		for _, x := range c {
			require.Equal(t, stage, deref(x.Task.StageKey))
		}
		return c
	}

	// Three mappers in one call, the first repeated: two split into three
	// designers each; the third has no array at split_path and fails alone.
	mappers := claimAll("mapper", 3)
	items := []map[string]any{}
	for i, c := range mappers {
		out := map[string]any{"items": []string{"a", "b", "c"}}
		if i == 2 {
			out = map[string]any{"items": "not an array"}
		}
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": out})
	}
	items = append(items, items[0])
	res := complete(items)
	require.EqualValues(t, 3, res[0]["created"], "%v", res[0])
	require.EqualValues(t, 3, res[1]["created"], "%v", res[1])
	require.Equal(t, "failed", res[2]["status"], "%v", res[2])
	require.Contains(t, res[2]["error"], "did not resolve to an array")
	require.Equal(t, true, res[3]["duplicate"], "%v", res[3])

	// The six designers in one call (the failed mapper counts as
	// finished): one merge over the batch, holding all six outputs.
	designers := claimAll("designer", 6)
	items = items[:0]
	for i, c := range designers {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"output_data": []int{i}}})
	}
	res = complete(items)
	created := 0
	for i := range res {
		require.Equal(t, "completed", res[i]["status"], "%v", res[i])
		created += int(res[i]["created"].(float64))
	}
	require.Equal(t, 1, created, "the merge is created once")

	tree := b.tree(ctx, t, b.user)
	require.Equal(t, map[string]int{"mapper": 3, "designer": 6, "validator": 1}, countBy(tree, func(r row) string { return r.Stage }))
	var in struct {
		OutputData []int `json:"output_data"`
		Count      int   `json:"_merged_from_count"` //nolint:tagliatelle // the engine's key
	}
	for _, x := range tree {
		if x.Stage == "validator" {
			require.Equal(t, "plan", x.Status)
			require.NoError(t, json.Unmarshal(x.Input, &in))
		}
	}
	require.ElementsMatch(t, []int{0, 1, 2, 3, 4, 5}, in.OutputData)
	require.Equal(t, 6, in.Count)
}

// TestBarrierScopesOfOneCall: feeders of one merge over several scopes
// (batch_grouping isolated: a scope per root) in one complete_tasks call.
// Every scope whose feeders are all done closes in that call with its own
// child, made once, holding its own feeders' outputs; a scope with a
// feeder still processing stays open until that feeder completes. The
// call checks every scope first and inserts the children together
// (orchable.barrier_child), so this is the path where a call closes
// several barriers' scopes at once.
func TestBarrierScopesOfOneCall(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "bs-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "mapper", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "designer", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "C"}},
		stage{id: p + "C", key: "validator", prompt: "x", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "isolated"}},
	)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"r": 1}, map[string]any{"r": 2}, map[string]any{"r": 3})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "bs"}, b.db, b.gen)
	complete := func(items []map[string]any) []map[string]any {
		t.Helper()
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "bs", "p_items": items}, &res))
		require.Len(t, res, len(items))
		return res
	}

	// Each root's mapper splits into two designers.
	mappers, err := r.Claim(ctx, id, 100, nil)
	require.NoError(t, err)
	require.Len(t, mappers, 3)
	items := []map[string]any{}
	for _, c := range mappers {
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"items": []string{"a", "b"}}})
	}
	for _, res := range complete(items) {
		require.EqualValues(t, 2, res["created"], "%v", res)
	}

	// Five of the six designers in one call: two roots' scopes close, the
	// third waits for its last designer.
	designers, err := r.Claim(ctx, id, 100, nil)
	require.NoError(t, err)
	require.Len(t, designers, 6)
	rootOf := map[uuid.UUID]string{}
	var rootIDs []string
	for _, c := range designers {
		var root string
		require.NoError(t, b.pool.QueryRow(ctx, "select root_task_id::text from public.ai_tasks where id = $1", c.Task.ID).Scan(&root))
		if !slices.Contains(rootIDs, root) {
			rootIDs = append(rootIDs, root)
		}
		rootOf[c.Task.ID] = root
	}
	require.Len(t, rootIDs, 3)
	last := rootIDs[2]
	var held pipeline.Claimed
	items = items[:0]
	var roots []string
	for i, c := range designers {
		if rootOf[c.Task.ID] == last && held.Task.ID == uuid.Nil {
			held = c
			continue
		}
		items = append(items, map[string]any{"task_id": c.Task.ID, "output": map[string]any{"output_data": []int{i}}})
		roots = append(roots, rootOf[c.Task.ID])
	}
	res := complete(items)
	created := map[string]int{}
	for i, x := range res {
		require.Equal(t, "completed", x["status"], "%v", x)
		created[roots[i]] += int(x["created"].(float64))
	}
	require.Equal(t, map[string]int{rootIDs[0]: 1, rootIDs[1]: 1, last: 0}, created, "two scopes close, each once")

	merges := func() map[string]int {
		t.Helper()
		rows, err := b.pool.Query(ctx, `select root_task_id::text, (input_data ->> '_merged_from_count')::int, jsonb_array_length(input_data -> 'output_data')
			from public.ai_tasks where user_id = $1 and stage_key = 'validator'`, b.user)
		require.NoError(t, err)
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var root string
			var n, outputs int
			require.NoError(t, rows.Scan(&root, &n, &outputs))
			require.Equal(t, 2, n, "a scope merges its own two designers")
			require.Equal(t, 2, outputs)
			out[root]++
		}
		require.NoError(t, rows.Err())
		return out
	}
	require.Equal(t, map[string]int{rootIDs[0]: 1, rootIDs[1]: 1}, merges())

	// The held designer closes the last scope.
	res = complete([]map[string]any{{"task_id": held.Task.ID.String(), "output": map[string]any{"output_data": []int{9}}}})
	require.EqualValues(t, 1, res[0]["created"], "%v", res[0])
	require.Equal(t, map[string]int{rootIDs[0]: 1, rootIDs[1]: 1, last: 1}, merges())
}

// TestChildIDsFollowTheirLineage: every task the engine makes from a parent
// (1:1 successor, split item, merge) takes its parent's first 48 bits and a
// random version 4 UUID's other 80, through every path that makes children
// (complete_tasks grouped, complete_task alone, a barrier closed in a group
// or alone). So a split's siblings, made in one transaction, lie together in
// the claim's (run_after, id) order and are claimed together; with random
// ids, five of fifteen siblings of three parents came from one parent about
// once in a thousand claims.
func TestChildIDsFollowTheirLineage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ci-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user,
		stage{id: p + "A", key: "mapper", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}, next: []string{p + "B"}},
		stage{id: p + "B", key: "designer", prompt: "x", cfg: map[string]any{"cardinality": "1:N", "split_path": "items"}, next: []string{p + "C"}},
		stage{id: p + "C", key: "validator", prompt: "x", cfg: map[string]any{"cardinality": "N:1", "batch_grouping": "isolated"}, next: []string{p + "D"}},
		stage{id: p + "D", key: "publisher", prompt: "x", cfg: map[string]any{"cardinality": "1:1"}},
	)
	b.launch(ctx, t, b.user, p+"A", map[string]any{"r": 1}, map[string]any{"r": 2}, map[string]any{"r": 3}, map[string]any{"r": 4})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ci"}, b.db, b.gen)
	out := map[string]any{"items": []string{"a", "b", "c", "d", "e"}, "output_data": []string{"x"}}
	// grouped completes tasks in one complete_tasks call; alone, each by
	// complete_task.
	grouped := func(tasks []pipeline.Claimed) {
		t.Helper()
		items := []map[string]any{}
		for _, c := range tasks {
			items = append(items, map[string]any{"task_id": c.Task.ID, "output": out})
		}
		var res []map[string]any
		require.NoError(t, b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "ci", "p_items": items}, &res))
		for _, x := range res {
			require.Equal(t, "completed", x["status"], "%v", x)
		}
	}
	alone := func(tasks []pipeline.Claimed) {
		t.Helper()
		for _, c := range tasks {
			require.NoError(t, b.db.RPC(ctx, id, "complete_task", map[string]any{
				"p_task_id": c.Task.ID, "p_worker": "ci", "p_output": out, "p_usage": map[string]any{},
			}, nil))
		}
	}
	claim := func(limit, want int) []pipeline.Claimed {
		t.Helper()
		c, err := r.Claim(ctx, id, limit, nil)
		require.NoError(t, err)
		require.Len(t, c, want)
		return c
	}
	parentOf := func(c pipeline.Claimed) string {
		t.Helper()
		var parent string
		require.NoError(t, b.pool.QueryRow(ctx, "select parent_task_id::text from public.ai_tasks where id = $1", c.Task.ID).Scan(&parent))
		return parent
	}

	// Three mappers split in one call, the fourth alone: twenty designers.
	mappers := claim(100, 4)
	grouped(mappers[:3])
	alone(mappers[3:])

	// Each claim of five takes one mapper's five designers. Their merges
	// close in one call, alone, and in a call of two scopes.
	var designers [][]pipeline.Claimed
	seen := map[string]bool{}
	for range 4 {
		c := claim(5, 5)
		parent := parentOf(c[0])
		for _, s := range c[1:] {
			require.Equal(t, parent, parentOf(s), "a claim of five takes one parent's five siblings")
		}
		require.False(t, seen[parent], "each parent's siblings are claimed once")
		seen[parent] = true
		designers = append(designers, c)
	}
	grouped(designers[0])
	alone(designers[1])
	grouped(append(designers[2], designers[3]...))

	// The validators, three in a call and one alone, make the publishers.
	validators := claim(100, 4)
	grouped(validators[:3])
	alone(validators[3:])
	claim(100, 4)

	rows, err := b.pool.Query(ctx, `select c.id::text, p.id::text, c.stage_key from public.ai_tasks c
		join public.ai_tasks p on p.id = c.parent_task_id where c.user_id = $1`, b.user)
	require.NoError(t, err)
	defer rows.Close()
	stages := map[string]int{}
	for rows.Next() {
		var child, parent, stage string
		require.NoError(t, rows.Scan(&child, &parent, &stage))
		stages[stage]++
		u, err := uuid.Parse(child)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), u.Version(), "%s", child)
		require.Equal(t, uuid.RFC4122, u.Variant(), "%s", child)
		require.Equal(t, parent[:13], child[:13], "%s: the parent's (%s) first 48 bits", child, parent)
		require.NotEqual(t, parent[14:], child[14:], "%s", child)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]int{"designer": 20, "validator": 4, "publisher": 4}, stages)
}

// TestChildIDsAreRandomBeyondTheirPrefix: orchable.child_id keeps 74 random
// bits, so another tenant who knows the parent's id cannot take its
// children's ids first (ids are unique across tenants; attack 15). Of 2,000
// ids of one parent, all differ and every bit after the prefix but the
// version's and the variant's takes both values.
func TestChildIDsAreRandomBeyondTheirPrefix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	parent := uuid.New()
	rows, err := b.pool.Query(ctx, "select orchable.child_id($1) from generate_series(1, 2000)", parent)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	distinct := map[uuid.UUID]bool{}
	var ones, zeros [16]byte
	for _, u := range ids {
		distinct[u] = true
		require.Equal(t, parent[:6], u[:6], "%s: the parent's first 48 bits", u)
		require.Equal(t, uuid.Version(4), u.Version(), "%s", u)
		require.Equal(t, uuid.RFC4122, u.Variant(), "%s", u)
		for i := range u {
			ones[i] |= u[i]
			zeros[i] |= ^u[i]
		}
	}
	require.Len(t, distinct, 2000)
	// Bytes 6 and 8 hold the version (high nibble 0100) and the variant
	// (high bits 10); every other bit after the prefix varies.
	fixed := map[int]byte{6: 0xf0, 8: 0xc0}
	random := 0
	for i := 6; i < 16; i++ {
		require.Equal(t, byte(0xff)&^fixed[i], ones[i]&zeros[i]&^fixed[i], "byte %d: every random bit takes both values", i)
		for bit := range 8 {
			if ^fixed[i]&(1<<bit) != 0 {
				random++
			}
		}
	}
	require.Equal(t, 74, random)
}

// complete_tasks takes p_items as a JSON array of at most 1,000 items and
// makes each item jsonb on its own (docs/performance.md, twenty-seventh
// round): anything else is refused with 22023, and an item that is not a
// completion fails alone, with what complete_one says of it, beside one
// that is completed.
func TestCompleteTasksItemsArgument(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "ci-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "L", key: "leaf", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}})
	b.launch(ctx, t, b.user, p+"L", map[string]any{"i": 1}, map[string]any{"i": 2})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ci"}, b.db, b.gen)
	claimed, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, claimed, 2)

	call := func(items string) ([]map[string]any, error) {
		var res []map[string]any
		err := b.db.RPC(ctx, id, "complete_tasks", map[string]any{"p_worker": "ci", "p_items": json.RawMessage(items)}, &res)
		return res, err
	}
	for name, items := range map[string]string{
		"an object":  `{"task_id": "` + claimed[0].Task.ID.String() + `", "output": {}}`,
		"a string":   `"[]"`,
		"null":       `null`,
		"1001 items": "[" + strings.TrimSuffix(strings.Repeat(`{"task_id": "x", "output": {}},`, 1001), ",") + "]",
	} {
		_, err := call(items)
		var serr *supabase.Error
		require.ErrorAs(t, err, &serr, name)
		require.Equal(t, "22023", serr.Code, name)
		require.Contains(t, serr.Message, "p_items must be a JSON array of at most 1000", name)
	}
	res, err := call(`[]`)
	require.NoError(t, err)
	require.Empty(t, res)

	// One good item among odd ones; a key given twice counts once, the last
	// (as jsonb reads an object).
	res, err = call(`[7, "x", null, {}, {"task_id": "` + claimed[1].Task.ID.String() + `"},
		{"task_id": "` + claimed[0].Task.ID.String() + `", "output": {"v": 1}, "output": {"v": 2}, "usage": {"total_token_count": 3}}]`)
	require.NoError(t, err)
	require.Len(t, res, 6)
	for i, code := range []string{"PT404", "PT404", "PT404", "PT404", "22023"} {
		require.Equal(t, code, res[i]["code"], "item %d: %v", i, res[i])
	}
	require.Equal(t, "completed", res[5]["status"], res[5])
	var out string
	var tokens int
	require.NoError(t, b.pool.QueryRow(ctx, "select output_data::text, total_token_count from public.ai_tasks where id = $1", claimed[0].Task.ID).Scan(&out, &tokens))
	require.JSONEq(t, `{"v": 2}`, out)
	require.Equal(t, 3, tokens)
	// The item without an output left its task processing.
	var status string
	require.NoError(t, b.pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", claimed[1].Task.ID).Scan(&status))
	require.Equal(t, "processing", status)
}

// launch_batch takes p_rows as a JSON array of 1 to 100,000 rows and makes
// each row jsonb on its own (docs/performance.md, twenty-seventh round):
// anything else is refused with 22023; a row that is not an object is kept
// as {"input": row}, and a key given twice counts once, the last.
func TestLaunchBatchRowsArgument(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "lr-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "L", key: "leaf", prompt: "FAKE echo x", cfg: map[string]any{"cardinality": "1:1"}})
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	type launched struct {
		BatchID uuid.UUID   `json:"batch_id"`
		TaskIDs []uuid.UUID `json:"task_ids"`
	}
	call := func(rows string) (launched, error) {
		var out launched
		err := b.db.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": p + "L", "p_rows": json.RawMessage(rows)}, &out)
		return out, err
	}
	for name, rows := range map[string]string{
		"an object":    `{"a": 1}`,
		"an empty one": `[]`,
		"a string":     `"[{}]"`,
		"null":         `null`,
		"100001 rows":  "[" + strings.TrimSuffix(strings.Repeat(`{},`, 100001), ",") + "]",
	} {
		_, err := call(rows)
		var serr *supabase.Error
		require.ErrorAs(t, err, &serr, name)
		require.Equal(t, "22023", serr.Code, name)
		require.Contains(t, serr.Message, "p_rows", name)
	}
	out, err := call(`[{"n": 1, "n": 2, "code": "X1"}, 7, "s", null, [1, 2]]`)
	require.NoError(t, err)
	require.Len(t, out.TaskIDs, 5)
	var inputs []string
	var codes []*string
	var seq []int
	rows, err := b.pool.Query(ctx, `select input_data::text, lo_code, sequence from public.ai_tasks
		where batch_id = $1 and id = any($2) order by sequence`, out.BatchID, out.TaskIDs)
	require.NoError(t, err)
	for rows.Next() {
		var in string
		var code *string
		var s int
		require.NoError(t, rows.Scan(&in, &code, &s))
		inputs, codes, seq = append(inputs, in), append(codes, code), append(seq, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{0, 1, 2, 3, 4}, seq)
	for i, want := range []string{`{"n": 2, "code": "X1"}`, `{"input": 7}`, `{"input": "s"}`, `{"input": null}`, `{"input": [1, 2]}`} {
		require.JSONEq(t, want, inputs[i], "row %d", i)
	}
	require.NotNil(t, codes[0])
	require.Equal(t, "X1", *codes[0])
	require.Nil(t, codes[1])
}
