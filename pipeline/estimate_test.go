package pipeline_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
)

func TestEstimateLaunch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	tpl := "est-" + uuid.NewString()[:8] + "-" // fresh ids, so -count=N stays green
	_, err := b.pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, default_ai_settings, stage_config, next_stage_template_ids, user_id)
		values ($2::text || '1', 'Read:\n%%GLOBAL_CONTEXT%%\nTopic: %%topic%%', 'outline', '{"model_id":"gemini-2.5-flash"}', '{}', jsonb_build_array($2::text || '2'), $1),
		       ($2::text || '2', 'Expand %%outline%%', 'expand', '{"model":"gemini-2.5-pro","maxOutputTokens":1000}', '{"cardinality":"1:N"}', '[]', $1)`, b.user, tpl)
	require.NoError(t, err)
	rows := make([]json.RawMessage, 100)
	for i := range rows {
		rows[i] = json.RawMessage(`{"topic":"tides"}`)
	}
	doc, _ := json.Marshal(map[string]string{"handbook": strings.Repeat("x", 80_000)}) // 20k tokens
	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	est, err := pipeline.EstimateLaunch(ctx, b.db, id, &pipeline.EstimateConfig{}, tpl+"1", rows, doc)
	require.NoError(t, err)
	require.Equal(t, 200, est.Tasks)
	require.Len(t, est.Stages, 2)
	s1, s2 := est.Stages[0], est.Stages[1]
	require.Equal(t, "gemini-2.5-flash", s1.Model)
	require.Greater(t, s1.InputTokens, int64(100*20_000))
	require.GreaterOrEqual(t, s1.CachedTokens, int64(99*20_000), "every task after the first reads the document from the cache")
	require.Less(t, s1.CachedTokens, s1.InputTokens-int64(20_000))
	require.Equal(t, int64(100*500), s1.OutputTokens)
	require.Equal(t, "gemini-2.5-pro", s2.Model)
	require.True(t, s2.FanOutUnknown)
	require.Equal(t, int64(100*1000), s2.OutputTokens)
	require.Zero(t, s2.CachedTokens, "the second stage shares no large content")
	require.Less(t, est.EstimatedCostUSD, est.UncachedCostUSD)
	p, _ := model.DefaultPrices().Lookup("gemini-2.5-pro")
	require.InDelta(t, (float64(s2.InputTokens)*p.Input+float64(s2.OutputTokens)*p.Output)/1e6, s2.EstimatedCostUSD, 1e-5)
	require.NotEmpty(t, est.Assumptions)

	_, err = pipeline.EstimateLaunch(ctx, b.db, id, &pipeline.EstimateConfig{}, "not-mine", rows, nil)
	require.Error(t, err)
}
