package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
)

// TestCompletionUsageJSON pins p_usage as complete_one reads it: every key
// by its name, and the optional ones left out when empty (read as null),
// both as json.Marshal writes it (complete_task's arguments) and as the
// completer writes it for complete_tasks (usageJSON).
func TestCompletionUsageJSON(t *testing.T) {
	t.Parallel()

	t.Run("every field", func(t *testing.T) {
		t.Parallel()
		resp := model.Response{
			Usage:        model.Usage{PromptTokens: 10, CandidatesTokens: 4, ThoughtsTokens: 2, TotalTokens: 16},
			ModelVersion: "v-1", ResponseID: "resp-1", KeyID: "6f9619ff-8b86-d011-b42d-00cf4fc964ff",
			Model: "gemini-b", FallbackFrom: []string{"gemini-a"},
		}
		res := Result{
			Regenerations: 1, Priced: true, CostUSD: 0.0000123456789,
			Billed: model.Usage{PromptTokens: 20, CachedTokens: 5, CandidatesTokens: 8, ThoughtsTokens: 3, ToolUsePromptTokens: 1, TotalTokens: 32},
		}
		b, err := json.Marshal(usageArgs(resp, res, []string{"pre_process"}))
		require.NoError(t, err)
		require.JSONEq(t, string(b), usageJSON(t, usageArgs(resp, res, []string{"pre_process"})))
		require.JSONEq(t, `{
			"prompt_token_count": 10, "candidates_token_count": 4, "thoughts_token_count": 2, "total_token_count": 16,
			"model_id": "gemini-b", "model_version": "v-1", "response_id": "resp-1", "regenerations": 1,
			"api_key_id": "6f9619ff-8b86-d011-b42d-00cf4fc964ff", "fallback_from": ["gemini-a"], "hooks_ignored": ["pre_process"],
			"usage": {"prompt_token_count": 20, "cached_content_token_count": 5, "candidates_token_count": 8,
			          "thoughts_token_count": 3, "tool_use_prompt_token_count": 1, "total_token_count": 32,
			          "calls": 2, "estimated_cost_usd": 0.000012346}}`, string(b))
	})

	t.Run("optional fields empty", func(t *testing.T) {
		t.Parallel()
		// An operator key's id is not a uuid (api_key_id is a uuid column),
		// and an unpriced model has no cost.
		b, err := json.Marshal(usageArgs(model.Response{KeyID: "pool:0"}, Result{}, nil))
		require.NoError(t, err)
		require.JSONEq(t, string(b), usageJSON(t, usageArgs(model.Response{KeyID: "pool:0"}, Result{}, nil)))
		require.JSONEq(t, `{
			"prompt_token_count": 0, "candidates_token_count": 0, "thoughts_token_count": 0, "total_token_count": 0,
			"regenerations": 0,
			"usage": {"prompt_token_count": 0, "cached_content_token_count": 0, "candidates_token_count": 0,
			          "thoughts_token_count": 0, "tool_use_prompt_token_count": 0, "total_token_count": 0, "calls": 1}}`, string(b))
	})
}

// usageJSON is u as the completer writes it into complete_tasks' items.
func usageJSON(t *testing.T, u completionUsage) string {
	t.Helper()
	b, err := u.appendJSON(nil)
	require.NoError(t, err)
	return string(b)
}

// TestResolveSettingsOncePerClaim: a claim's tasks without settings of
// their own share the template's, resolved once, each with its own copy; a
// task with its own overlays the template's.
func TestResolveSettingsOncePerClaim(t *testing.T) {
	t.Parallel()
	r := &Runner{cfg: &RunnerConfig{DefaultModel: "default-model"}}
	tpl := &Template{
		DefaultAISettings: json.RawMessage(`{"model_id": "tpl-model", "generationConfig": {"temperature": 0.5, "topP": 0.9,
			"thinkingConfig": {"thinkingBudget": 128}}, "fallback_models": ["fb-1"]}`),
		settings: &templateSettings{},
	}

	a, err := r.resolveSettings(tpl, nil)
	require.NoError(t, err)
	b, err := r.resolveSettings(tpl, json.RawMessage(" null "))
	require.NoError(t, err)
	require.Equal(t, "tpl-model", a.Model)
	require.InDelta(t, 0.5, *a.Generation.Temperature, 1e-12)
	require.Equal(t, 128, *a.Generation.Thinking.Budget)
	require.Equal(t, a, b)

	// Nothing is shared: one task's copy changed leaves the next task's as
	// the template has it.
	*a.Generation.Temperature, *a.Generation.TopP = 2, 2
	*a.Generation.Thinking.Budget = 1
	a.Fallbacks[0] = "changed"
	c, err := r.resolveSettings(tpl, nil)
	require.NoError(t, err)
	require.Equal(t, b, c)
	require.InDelta(t, 0.5, *c.Generation.Temperature, 1e-12)
	require.Equal(t, []string{"fb-1"}, c.Fallbacks)

	// A task's own settings overlay the template's.
	own, err := r.resolveSettings(tpl, json.RawMessage(`{"model": "own-model", "temperature": 0.1}`))
	require.NoError(t, err)
	require.Equal(t, "own-model", own.Model)
	require.InDelta(t, 0.1, *own.Generation.Temperature, 1e-12)
	require.InDelta(t, 0.9, *own.Generation.TopP, 1e-12)

	// The template's error is every task's.
	bad := &Template{DefaultAISettings: json.RawMessage(`{"temperature": "hot"}`), settings: &templateSettings{}}
	for range 2 {
		_, err := r.resolveSettings(bad, nil)
		require.Error(t, err)
	}
}
