package pipeline_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/pipeline"
)

// A stage whose first model is overloaded completes on its fallback through
// the real SDK; the task records the model that answered, the chain it fell
// from, every usage field and the estimated cost. A safety block on the
// fallback fails the task without trying the next model.
func TestStageFallsBackToNextModel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	srv := geminitest.New(geminitest.Config{
		Keys:              map[string]string{"AIza-operator": "proj-op"},
		UnavailableModels: []string{"gemini-first"},
	})
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	mcfg := &model.Config{
		BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr},
		Pool: model.PoolConfig{OperatorKeys: []model.OperatorKey{{Name: "op", Project: "proj-op", APIKey: "AIza-operator"}}},
	}
	pool, err := model.NewKeyPool(mcfg, nil, nil)
	require.NoError(t, err)
	client, err := model.NewClient(mcfg, pool)
	require.NoError(t, err)

	// Template ids are global; a fresh one per run keeps -count=N green.
	tplID := "tpl-fb-" + uuid.NewString()
	_, err = b.pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, default_ai_settings, output_schema, user_id)
		values ($4, 'Summarise %%topic%% in one sentence.', 'summary', $1, $2, $3)`,
		`{"model_id":"gemini-first","fallback_models":["gemini-second","gemini-third"],"generationConfig":{"temperature":0.2}}`,
		`{"type":"object","properties":{"summary":{"type":"string"}},"required":["summary"]}`, b.user, tplID)
	require.NoError(t, err)
	batchID := b.launch(ctx, t, b.user, tplID, map[string]any{"topic": "tides"}, map[string]any{"topic": "volcanoes [[fakegemini:safety]]"})

	prices := model.DefaultPrices()
	prices["gemini-second"] = model.Price{Input: 1, CachedInput: 0.1, Output: 4, Thinking: 4}
	e := &engine{finished: make(chan pipeline.Result, 100)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "fb", Prices: prices}, b.db, client)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 2, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	t.Cleanup(func() { _ = d.Stop(ctx) })
	e.disps = append(e.disps, d)
	b.quiesce(ctx, t, e, b.user)

	type task struct {
		Topic, Status, ModelID, Error string
		Extra                         json.RawMessage
		Prompt, Total                 int
	}
	rows, err := b.pool.Query(ctx, `select input_data ->> 'topic', status::text, coalesce(model_id, ''), coalesce(error_message, ''), extra,
		coalesce(prompt_token_count, 0), coalesce(total_token_count, 0) from public.ai_tasks where user_id = $1`, b.user)
	require.NoError(t, err)
	byTopic := map[string]task{}
	for rows.Next() {
		var x task
		require.NoError(t, rows.Scan(&x.Topic, &x.Status, &x.ModelID, &x.Error, &x.Extra, &x.Prompt, &x.Total))
		byTopic[strings.Fields(x.Topic)[0]] = x
	}
	require.NoError(t, rows.Err())

	ok := byTopic["tides"]
	require.Equal(t, "completed", ok.Status, ok.Error)
	require.Equal(t, "gemini-second", ok.ModelID)
	var extra struct {
		FallbackFrom []string `json:"fallback_from"`
		Usage        struct {
			Prompt     int      `json:"prompt_token_count"`
			Cached     *int     `json:"cached_content_token_count"`
			Candidates int      `json:"candidates_token_count"`
			Thoughts   *int     `json:"thoughts_token_count"`
			Cost       *float64 `json:"estimated_cost_usd"`
		} `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(ok.Extra, &extra))
	require.Equal(t, []string{"gemini-first"}, extra.FallbackFrom)
	require.Equal(t, ok.Prompt, extra.Usage.Prompt)
	require.NotNil(t, extra.Usage.Cached)
	require.NotNil(t, extra.Usage.Thoughts)
	require.NotNil(t, extra.Usage.Cost)
	require.InDelta(t, (float64(extra.Usage.Prompt)*1+float64(extra.Usage.Candidates)*4)/1e6, *extra.Usage.Cost, 1e-9)

	// Batch progress shows the batch's tokens and estimated cost.
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	var progress struct {
		Tokens struct {
			Prompt, CachedContent, Candidates, Thoughts, Total int64
		} `json:"tokens"`
		Cost     float64 `json:"estimated_cost_usd"`
		Unpriced int     `json:"unpriced_tasks"`
	}
	require.NoError(t, b.db.RPC(ctx, id, "get_batch_progress", map[string]any{"p_batch_id": batchID}, &progress))
	require.Equal(t, int64(extra.Usage.Prompt), progress.Tokens.Prompt)
	require.Equal(t, int64(extra.Usage.Candidates), progress.Tokens.Candidates)
	require.InDelta(t, *extra.Usage.Cost, progress.Cost, 1e-6)
	require.Zero(t, progress.Unpriced)

	blocked := byTopic["volcanoes"]
	require.Equal(t, "failed", blocked.Status)
	require.Contains(t, blocked.Error, "SAFETY")
	var models []string
	for _, c := range srv.Calls() {
		if strings.Contains(c.Prompt, "volcanoes") {
			models = append(models, c.Model)
		}
	}
	require.Equal(t, []string{"gemini-first", "gemini-second"}, models, "the safety block on gemini-second does not move on to gemini-third")
}
