package pipeline_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// The cost scenario of issue #19: a 1,000-task batch whose prompt shares a
// large document (GLOBAL_CONTEXT), run through the real SDK against the
// fake Gemini three ways: no caching, Gemini's implicit caching of the stable
// prefix, and an explicit cached content per key project. It prints input
// tokens billed at full price, cached tokens, the estimated cost of each, and
// the cached contents created and deleted; none is left after the batch.
//
//	go test -run TestSharedDocumentBatchCost -v ./pipeline/
func TestSharedDocumentBatchCost(t *testing.T) { //nolint:tparallel // the three runs are sequential: their wall times are compared on one machine
	t.Parallel()
	if testing.Short() || raceEnabled {
		t.Skip("1,000 tasks three times: run without -short and -race")
	}
	const tasks = 1000
	doc := strings.Repeat("Section: the tide rises and falls twice a day because of the moon's pull. ", 2700) // ≈ 200 kB, 50k tokens
	type result struct {
		name                              string
		full, cached, candidates          int64
		cost, storage                     float64
		created, deleted, live, remaining int
		wall                              time.Duration
	}
	run := func(t *testing.T, name string, implicit, explicit bool) result {
		t.Helper()
		ctx := t.Context()
		b := setup(t)
		srv := geminitest.New(geminitest.Config{
			Keys:            map[string]string{"AIza-a": "proj-a", "AIza-b": "proj-b"},
			ImplicitCaching: implicit,
		})
		t.Cleanup(srv.Close)
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		t.Cleanup(tr.CloseIdleConnections)
		mcfg := &model.Config{
			BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr}, DefaultModel: "gemini-2.5-flash",
			Pool: model.PoolConfig{OperatorKeys: []model.OperatorKey{
				{Name: "a", Project: "proj-a", APIKey: "AIza-a"}, {Name: "b", Project: "proj-b", APIKey: "AIza-b"},
			}},
		}
		if explicit {
			mcfg.Cache = model.CacheConfig{Store: pipeline.NewCacheStore(b.db, claimsIdentity{}), TTL: 15 * time.Minute}
		}
		pool, err := model.NewKeyPool(mcfg, nil, nil)
		require.NoError(t, err)
		client, err := model.NewClient(mcfg, pool)
		require.NoError(t, err)

		// A template id of its own per run: the package's database is
		// shared by repeated runs (-count).
		tpl := "tpl-doc-" + name + "-" + uuid.NewString()[:8]
		_, err = b.pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, system_instruction, output_schema, user_id)
			values ($4, $1, 'answer', 'You answer questions from the handbook only.', $2, $3)`,
			"Answer from the handbook below.\n\n%%GLOBAL_CONTEXT%%\n\nQuestion %%n%%: what does the handbook say about %%topic%%?",
			`{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}`, b.user, tpl)
		require.NoError(t, err)
		rows := make([]map[string]any, tasks)
		for i := range rows {
			rows[i] = map[string]any{"n": i, "topic": fmt.Sprintf("topic %d", i)}
		}
		id, _ := claimsIdentity{}.Identity(ctx, b.user)
		var launched struct {
			BatchID uuid.UUID `json:"batch_id"`
		}
		require.NoError(t, b.db.RPC(ctx, id, "launch_batch", map[string]any{
			"p_template_id": tpl, "p_rows": rows, "p_global_context": map[string]any{"handbook": doc},
		}, &launched))

		start := time.Now()
		e := &engine{finished: make(chan pipeline.Result, tasks*2)}
		r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "cost-" + name}, b.db, client)
		d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 8, ClaimBatch: 10, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
		d.Start(ctx)
		t.Cleanup(func() { _ = d.Stop(context.Background()) })
		e.disps = append(e.disps, d)
		b.quiesce(ctx, t, e, b.user)
		wall := time.Since(start)

		var progress struct {
			Completed int `json:"completed"`
			Tokens    struct {
				Prompt     int64 `json:"prompt"`
				Cached     int64 `json:"cached_content"`
				Candidates int64 `json:"candidates"`
			} `json:"tokens"`
			Cost float64 `json:"estimated_cost_usd"`
		}
		require.NoError(t, b.db.RPC(ctx, id, "get_batch_progress", map[string]any{"p_batch_id": launched.BatchID}, &progress))
		require.Equal(t, tasks, progress.Completed)
		var sample string
		require.NoError(t, b.pool.QueryRow(ctx, `select coalesce(model_id, '') || ' ' || (extra -> 'usage')::text from public.ai_tasks where batch_id = $1 limit 1`, launched.BatchID).Scan(&sample))
		t.Logf("%s: a task's usage: %s", name, sample)

		// The batch is finished: the janitor deletes its cached contents.
		j := pipeline.NewCacheJanitor(&pipeline.CacheJanitorConfig{}, b.db, supabase.ServiceIdentity(""), claimsIdentity{}, client)
		sweep, err := j.Sweep(ctx)
		require.NoError(t, err)
		var remaining int
		require.NoError(t, b.pool.QueryRow(ctx, `select count(*) from public.gemini_caches where user_id = $1`, b.user).Scan(&remaining))
		cs := srv.CacheStats()
		storage := 0.0
		if p, ok := model.DefaultPrices().Lookup("gemini-2.5-flash"); ok {
			// Upper bound: every cached content kept for its whole TTL.
			storage = float64(cs.Created) * float64(len(doc)/4) / 1e6 * p.CacheStorageHour * 0.25
		}
		require.Equal(t, cs.Created, sweep.Deleted)
		return result{
			name: name, full: progress.Tokens.Prompt - progress.Tokens.Cached, cached: progress.Tokens.Cached,
			candidates: progress.Tokens.Candidates, cost: progress.Cost, storage: storage,
			created: cs.Created, deleted: cs.Deleted, live: cs.Live, remaining: remaining, wall: wall,
		}
	}

	var results []result
	for _, v := range []struct {
		name               string
		implicit, explicit bool
	}{{"uncached", false, false}, {"implicit", true, false}, {"explicit", false, true}} {
		t.Run(v.name, func(t *testing.T) { results = append(results, run(t, v.name, v.implicit, v.explicit)) })
	}
	require.Len(t, results, 3)
	t.Logf("%d tasks sharing a %d-token document, gemini-2.5-flash list prices (%s):", tasks, len(doc)/4, model.PricesDate)
	t.Logf("%-9s %14s %14s %11s %12s %14s %8s %8s %5s %8s", "caching", "input@full", "cached", "output", "est. cost", "+cache storage", "created", "deleted", "left", "wall")
	for _, r := range results { //nolint:paralleltest // a print loop, not test cases
		t.Logf("%-9s %14d %14d %11d %11.4f$ %13.4f$ %8d %8d %5d %8s", r.name, r.full, r.cached, r.candidates, r.cost, r.storage,
			r.created, r.deleted, r.live+r.remaining, r.wall.Round(time.Millisecond))
	}
	unc, imp, exp := results[0], results[1], results[2]
	require.Zero(t, unc.cached)
	require.Positive(t, imp.cached)
	require.Greater(t, exp.cached, int64(tasks-10)*int64(len(doc)/4-100), "every task after each project's first reads the document from the cache")
	require.Less(t, exp.cost+exp.storage, unc.cost/3)
	require.Equal(t, 2, exp.created, "one cached content per key project")
	require.Equal(t, exp.created, exp.deleted)
	require.Zero(t, exp.live+exp.remaining, "no cached content is left after the batch")
}
