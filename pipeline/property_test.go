package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase/dbtest"
)

// flakyModel fails a task permanently when hash(task id, seed) says so and
// otherwise answers like scriptedModel.
type flakyModel struct {
	inner *scriptedModel
	seed  uint64
	rate  float64
}

func (m *flakyModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	h := fnv.New64a()
	_, _ = h.Write(req.TaskID[:])
	r := rand.New(rand.NewPCG(h.Sum64(), m.seed)) // deterministic test randomness
	if r.Float64() < m.rate {
		m.inner.calls.Add(1)
		return model.Response{}, &model.Error{Kind: model.KindBlocked, Retry: model.RetryNever, Message: "random failure"}
	}
	return m.inner.Generate(ctx, req)
}

// randomPipeline builds 1–5 stages: a root, then stages of random
// cardinality (1:1, 1:N over 1–20 items, N:1), optionally ending in a join
// over two earlier stages, with random approvals.
func randomPipeline(r *rand.Rand, prefix string) []stage {
	n := 1 + r.IntN(5)
	if n < 3 && r.IntN(3) > 0 {
		n += 2 // favour longer pipelines
	}
	stages := make([]stage, 0, n+1)
	for i := range n {
		s := stage{id: fmt.Sprintf("%s%d", prefix, i), key: fmt.Sprintf("s%d", i), cfg: map[string]any{"cardinality": "1:1"}}
		if i > 0 {
			switch r.IntN(3) {
			case 1:
				s.cfg = map[string]any{"cardinality": "1:N", "split_path": "items"}
				if r.IntN(3) == 0 {
					s.cfg["split_mode"] = "per_batch"
					s.cfg["batch_size"] = 1 + r.IntN(4)
				}
			case 2:
				s.cfg = map[string]any{"cardinality": "N:1"}
			}
		}
		s.approval = i > 0 && r.IntN(5) == 0
		stages = append(stages, s)
	}
	// A join combines one input row's outputs, so its dependencies must be
	// per-row stages: none at or after an N:1 merge (which runs once per batch).
	perRow := n
	for i := 1; i < n; i++ {
		if stages[i].cfg["cardinality"] == "N:1" {
			perRow = i
			break
		}
	}
	if perRow >= 3 && r.IntN(2) == 0 {
		a, b := r.IntN(perRow-1), perRow-1
		stages = append(stages, stage{
			id: prefix + "j", key: "join",
			cfg: map[string]any{"cardinality": "1:1", "dependsOn": []string{stages[a].key, stages[b].key}},
		})
		stages[a].next = append(stages[a].next, stages[len(stages)-1].id)
		if a != b {
			stages[b].next = append(stages[b].next, stages[len(stages)-1].id)
		}
	}
	for i := 0; i+1 < n; i++ {
		stages[i].next = append([]string{stages[i+1].id}, stages[i].next...)
	}
	// A stage followed by a 1:N split outputs an array; others echo.
	for i := range stages {
		stages[i].prompt = "FAKE echo x"
		for _, nx := range stages[i].next {
			for _, s := range stages {
				if s.id == nx && s.cfg["cardinality"] == "1:N" {
					stages[i].prompt = fmt.Sprintf("FAKE split %d", 1+r.IntN(20))
				}
			}
		}
	}
	return stages
}

type ptask struct {
	ID, Parent, Stage, Status, Idem, Template string
	Output, Input                             json.RawMessage
	Step                                      int
	BatchID                                   string
}

// TestPipelineProperties runs random pipelines with random failures and
// approvals to quiescence and checks that the task tree is exactly what the
// rules define: every finished task has exactly the children its output and
// its successors' cardinality call for, every barrier child exists once per
// scope when (and only when) its stage is settled with at least one
// completed parent, nothing else exists, and counters equal a recount.
func TestPipelineProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(24) {
		t.Run(fmt.Sprintf("Seed%d", seed), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b := setup(t)
			r := rand.New(rand.NewPCG(seed, 42)) // deterministic test randomness
			prefix := fmt.Sprintf("p%d-%s-", seed, uuid.NewString()[:6])
			stages := randomPipeline(r, prefix)
			b.templates(ctx, t, b.user, stages...)
			rows := make([]map[string]any, 1+r.IntN(4))
			for i := range rows {
				rows[i] = map[string]any{"row": i}
			}
			batch := b.launch(ctx, t, b.user, stages[0].id, rows...)

			gen := &flakyModel{inner: b.gen, seed: seed, rate: 0.1}
			e := &engine{finished: make(chan pipeline.Result, 10000)}
			for i := range 2 {
				rr := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: fmt.Sprintf("p%d", i)}, b.db, gen)
				d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 6, ClaimBatch: 2, Observer: chanObserver{e.finished}}, claimsIdentity{}, rr)
				d.Start(ctx)
				t.Cleanup(func() { _ = d.Stop(context.Background()) })
				e.disps = append(e.disps, d)
			}
			id, _ := claimsIdentity{}.Identity(ctx, b.user)
			for round := 0; ; round++ {
				require.Less(t, round, 20)
				b.quiesce(ctx, t, e, b.user)
				rows, err := b.pool.Query(ctx, "select id from public.ai_tasks where user_id = $1 and status = 'generated'", b.user)
				require.NoError(t, err)
				pending, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
				require.NoError(t, err)
				if len(pending) == 0 {
					break
				}
				for i, tid := range pending {
					args := map[string]any{"p_task_id": tid, "p_edited_output": nil, "p_edit_notes": nil}
					if i%2 == 1 { // reject some approvals
						require.NoError(t, b.db.RPC(ctx, id, "reject_task", map[string]any{"p_task_id": tid, "p_reason": "no", "p_regenerate": false}, nil))
						continue
					}
					require.NoError(t, b.db.RPC(ctx, id, "approve_task", args, nil))
				}
			}
			checkTree(ctx, t, b, stages, batch)
		})
	}
}

func checkTree(ctx context.Context, t *testing.T, b *bundle, stages []stage, batch uuid.UUID) {
	t.Helper()
	rows, err := b.pool.Query(ctx, `select id::text, coalesce(parent_task_id::text, ''), coalesce(stage_key, ''), status::text,
		coalesce(idempotency_key, ''), coalesce(prompt_template_id, ''), coalesce(edited_output_data, output_data, 'null'), input_data, step_number, batch_id::text
		from public.ai_tasks where user_id = $1`, b.user)
	require.NoError(t, err)
	tasks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ptask])
	require.NoError(t, err)
	byTemplate := map[string]stage{}
	for _, s := range stages {
		byTemplate[s.id] = s
	}
	byKey := map[string]stage{}
	for _, s := range stages {
		byKey[s.key] = s
	}
	expect := map[string]string{} // idempotency key → why
	for _, tk := range tasks {
		require.NotEqual(t, "plan", tk.Status)
		require.NotEqual(t, "processing", tk.Status)
		if tk.Status != "completed" {
			continue
		}
		for _, next := range byTemplate[tk.Template].next {
			s := byTemplate[next]
			if deps, ok := s.cfg["dependsOn"].([]string); ok && len(deps) > 1 {
				continue // joins below
			}
			switch s.cfg["cardinality"] {
			case "1:1":
				expect[tk.ID+"/"+s.id] = "1:1"
			case "1:N":
				var out struct {
					Items []int `json:"items"`
				}
				require.NoError(t, json.Unmarshal(tk.Output, &out))
				if mode, _ := s.cfg["split_mode"].(string); mode == "per_batch" {
					size := s.cfg["batch_size"].(int)
					for i := 0; i*size < len(out.Items); i++ {
						expect[fmt.Sprintf("%s/%s/b%d", tk.ID, s.id, i)] = "per_batch"
					}
				} else {
					for i := range out.Items {
						expect[fmt.Sprintf("%s/%s/%d", tk.ID, s.id, i)] = "per_item"
					}
				}
			}
		}
	}
	// Barriers: N:1 per batch over the feeding stage; joins per root row.
	for _, s := range stages {
		if s.cfg["cardinality"] == "N:1" {
			var feeder string
			for _, p := range stages {
				for _, n := range p.next {
					if n == s.id {
						feeder = p.key
					}
				}
			}
			completed, open := 0, 0
			for _, tk := range tasks {
				if tk.Stage == feeder {
					switch tk.Status {
					case "completed":
						completed++
					case "failed", "cancelled":
					default:
						open++
					}
				}
			}
			if completed > 0 && open == 0 {
				expect["barrier/"+s.id+"/batch:"+batch.String()] = "merge"
			}
		}
		if deps, ok := s.cfg["dependsOn"].([]string); ok && len(deps) > 1 {
			// One join per root whose lineage completed at least one dependency task.
			roots := map[string]bool{}
			for _, tk := range tasks {
				if (tk.Stage == deps[0] || tk.Stage == deps[1]) && tk.Status == "completed" {
					roots[rootOf(ctx, t, b, tk.ID)] = true
				}
			}
			for root := range roots {
				expect["barrier/"+s.id+"/root:"+root] = "join"
			}
		}
	}
	got := map[string]bool{}
	var roots int
	for _, tk := range tasks {
		if tk.Idem == "" {
			roots++
			continue
		}
		require.False(t, got[tk.Idem], "duplicate child %s", tk.Idem)
		got[tk.Idem] = true
		_, ok := expect[tk.Idem]
		require.True(t, ok, "unexpected task %s (%s, %s)", tk.Idem, tk.Stage, tk.Status)
	}
	for k, why := range expect {
		if !got[k] {
			for _, tk := range tasks {
				t.Logf("%s stage=%s status=%s step=%d parent=%s idem=%s", tk.ID, tk.Stage, tk.Status, tk.Step, tk.Parent, tk.Idem)
			}
			t.Logf("pipeline %s, next: %v", strings.Join(stageDesc(stages), " → "), stagesNext(stages))
		}
		require.True(t, got[k], "missing %s child %s", why, k)
	}
	require.Len(t, tasks, len(expect)+roots)

	dbtest.FoldCounters(ctx, t, b.pool)
	var total, completed, failed int
	require.NoError(t, b.pool.QueryRow(ctx, "select total_tasks, completed_tasks, failed_tasks from public.task_batches where id = $1", batch).Scan(&total, &completed, &failed))
	nc, nf := 0, 0
	for _, tk := range tasks {
		switch tk.Status {
		case "completed":
			nc++
		case "failed", "cancelled":
			nf++
		}
	}
	require.Equal(t, len(tasks), total)
	require.Equal(t, nc, completed)
	require.Equal(t, nf, failed)
	t.Logf("pipeline %s: %d tasks (%d completed, %d failed), %d model calls",
		strings.Join(stageDesc(stages), " → "), len(tasks), nc, nf, b.gen.calls.Load())
}

func rootOf(ctx context.Context, t *testing.T, b *bundle, id string) string {
	t.Helper()
	var root string
	require.NoError(t, b.pool.QueryRow(ctx, "select coalesce(root_task_id, id)::text from public.ai_tasks where id = $1", id).Scan(&root))
	return root
}

func stageDesc(stages []stage) []string {
	var out []string
	for _, s := range stages {
		d := s.key + "(" + fmt.Sprint(s.cfg["cardinality"])
		if s.approval {
			d += ",approval"
		}
		out = append(out, d+")")
	}
	return out
}

func stagesNext(stages []stage) map[string][]string {
	m := map[string][]string{}
	for _, s := range stages {
		m[s.key] = s.next
	}
	return m
}
