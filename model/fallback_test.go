package model

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

func TestResolveSettingsFallbackModels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		givenTemplate  string
		givenTask      string
		expectChain    []string
		expectErrorHas string
	}{
		{name: "DesignerShape", givenTemplate: `{"model_id":"a","fallbackModels":["b","c"],"generationConfig":{"temperature":0.1}}`, expectChain: []string{"a", "b", "c"}},
		{name: "FlatLegacyShape", givenTemplate: `{"model":"a","fallback_models":["b"],"temperature":0.1}`, expectChain: []string{"a", "b"}},
		{name: "CommaSeparated", givenTemplate: `{"model":"a","fallback_models":" b, c ,,"}`, expectChain: []string{"a", "b", "c"}},
		{name: "RepeatsDropped", givenTemplate: `{"model":"a","fallback_models":["a","b","b"]}`, expectChain: []string{"a", "b"}},
		{name: "TaskOverrideReplaces", givenTemplate: `{"model":"a","fallback_models":["b"]}`, givenTask: `{"fallback_models":["c"]}`, expectChain: []string{"a", "c"}},
		{name: "TaskEmptyListClears", givenTemplate: `{"model":"a","fallback_models":["b"]}`, givenTask: `{"fallback_models":[]}`, expectChain: []string{"a"}},
		{name: "NoFallbacks", givenTemplate: `{"model":"a"}`, expectChain: []string{"a"}},
		{name: "NotAList", givenTemplate: `{"model":"a","fallback_models":3}`, expectErrorHas: "fallback_models"},
		{name: "NotStrings", givenTemplate: `{"model":"a","fallback_models":[1]}`, expectErrorHas: "fallback_models"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ResolveSettings(json.RawMessage(tt.givenTemplate), json.RawMessage(tt.givenTask), "default")
			if tt.expectErrorHas != "" {
				require.ErrorContains(t, err, tt.expectErrorHas)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.expectChain, s.Chain())
		})
	}
}

func TestClientFallbackChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	chain := func(b *testBundle, prompt string) Request {
		req := b.request(prompt, quizSchema)
		req.Settings.Model = "gemini-first"
		req.Settings.Fallbacks = []string{"gemini-second", "gemini-third"}
		return req
	}

	t.Run("OverloadedFallsBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{
			keys:   [][2]string{{"AIza-key-one", "proj-a"}},
			server: geminitest.Config{UnavailableModels: []string{"gemini-first"}},
		})
		resp, err := b.client.Generate(ctx, chain(b, "Write a quiz."))
		require.NoError(t, err)
		require.Equal(t, "gemini-second", resp.Model)
		require.Equal(t, []string{"gemini-first"}, resp.FallbackFrom)
		require.Equal(t, "gemini-second-fake-001", resp.ModelVersion)
		require.NoError(t, NewValidator().Validate([]byte(quizSchema), decode(t, resp.Output)))
		calls := b.server.Calls()
		require.Len(t, calls, 2)
		require.Equal(t, 503, calls[0].Status)
		// The output schema is unchanged on the fallback.
		require.Equal(t, calls[0].GenerationConfig["responseJsonSchema"], calls[1].GenerationConfig["responseJsonSchema"])
	})

	t.Run("QuotaExhaustedAndRetiredFallBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{
			keys:   [][2]string{{"AIza-key-one", "proj-a"}, {"AIza-key-two", "proj-b"}},
			server: geminitest.Config{ExhaustedModels: []string{"gemini-first"}, RetiredModels: []string{"gemini-second"}},
		})
		resp, err := b.client.Generate(ctx, chain(b, "Write a quiz."))
		require.NoError(t, err)
		require.Equal(t, "gemini-third", resp.Model)
		require.Equal(t, []string{"gemini-first", "gemini-second"}, resp.FallbackFrom)
		var models []string
		for _, c := range b.server.Calls() {
			models = append(models, c.Model)
		}
		// Both projects' daily quotas of the first model are tried, then the chain moves on.
		require.Equal(t, []string{"gemini-first", "gemini-first", "gemini-second", "gemini-third"}, models)
	})

	t.Run("SafetyDoesNotFallBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})
		b.server.Enqueue(geminitest.Reply{Kind: geminitest.ReplySafety})
		_, err := b.client.Generate(ctx, chain(b, "Write a quiz."))
		var me *Error
		require.ErrorAs(t, err, &me)
		require.Equal(t, KindBlocked, me.Kind)
		require.Len(t, b.server.Calls(), 1)
	})

	t.Run("InvalidKeyDoesNotFallBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}, server: geminitest.Config{Keys: map[string]string{"other": "p"}}})
		_, err := b.client.Generate(ctx, chain(b, "Write a quiz."))
		require.Error(t, err)
		require.False(t, ModelFault(err))
		for _, c := range b.server.Calls() {
			require.Equal(t, "gemini-first", c.Model)
		}
	})

	t.Run("LastModelsErrorIsReturned", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{
			keys:   [][2]string{{"AIza-key-one", "proj-a"}},
			server: geminitest.Config{UnavailableModels: []string{"gemini-first", "gemini-second", "gemini-third"}},
		})
		_, err := b.client.Generate(ctx, chain(b, "Write a quiz."))
		var me *Error
		require.ErrorAs(t, err, &me)
		require.Equal(t, KindServer, me.Kind)
		require.Equal(t, RetryLater, me.Retry)
		require.Contains(t, me.Message, "gemini-third")
		require.Len(t, b.server.Calls(), 3)
	})
}
