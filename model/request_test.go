package model

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

func TestResolveSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		givenTemplate string
		givenOverride string
		expect        Settings
		expectError   string
	}{
		{
			name:   "NothingUsesDefaultModel",
			expect: Settings{Model: "default-model"},
		},
		{
			name:          "DesignerShape",
			givenTemplate: `{"model_id":"gemini-3.5-flash","generate_content_api":"generateContent","generationConfig":{"temperature":0.1,"topP":0.95,"topK":40,"maxOutputTokens":2048,"responseMimeType":"application/json"}}`,
			expect: Settings{Model: "gemini-3.5-flash", Generation: GenerationConfig{
				Temperature: new(0.1), TopP: new(0.95), TopK: new(40.0), MaxOutputTokens: 2048,
			}},
		},
		{
			name:          "LegacyFlatShape",
			givenTemplate: `{"model":"gemini-2.0-flash","temperature":0.7,"top_p":0.9,"max_output_tokens":"1024","system_instruction":"Be terse."}`,
			expect: Settings{Model: "gemini-2.0-flash", SystemInstruction: "Be terse.", Generation: GenerationConfig{
				Temperature: new(0.7), TopP: new(0.9), MaxOutputTokens: 1024,
			}},
		},
		{
			name:          "TaskOverrideWins",
			givenTemplate: `{"model_id":"gemini-a","generationConfig":{"temperature":0.1,"maxOutputTokens":100}}`,
			givenOverride: `{"model":"gemini-b","generationConfig":{"temperature":0.9}}`,
			expect:        Settings{Model: "gemini-b", Generation: GenerationConfig{Temperature: new(0.9), MaxOutputTokens: 100}},
		},
		{
			name:          "ThinkingConfigNestedAndFlat",
			givenTemplate: `{"model_id":"m","generationConfig":{"thinkingConfig":{"includeThoughts":false,"thinkingBudget":-1}}}`,
			givenOverride: `{"generationConfig":{"thinkingLevel":"LOW"}}`,
			expect: Settings{Model: "m", Generation: GenerationConfig{
				Thinking: &ThinkingConfig{Budget: new(-1), Level: "LOW"},
			}},
		},
		{
			name:          "NullOverrideIgnored",
			givenTemplate: `{"model_id":"m","systemInstruction":"sys"}`,
			givenOverride: `null`,
			expect:        Settings{Model: "m", SystemInstruction: "sys"},
		},
		{
			name:          "BadTemperature",
			givenTemplate: `{"model_id":"m","temperature":"hot"}`,
			expectError:   `temperature is "hot", want a number`,
		},
		{
			name:          "NotJSON",
			givenOverride: `{`,
			expectError:   "extra.ai_settings",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveSettings(json.RawMessage(tt.givenTemplate), json.RawMessage(tt.givenOverride), "default-model")
			if tt.expectError != "" {
				require.ErrorContains(t, err, tt.expectError)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.expect, got)
		})
	}
}

func TestFinish(t *testing.T) {
	t.Parallel()
	const schema = `{"type":"object","properties":{"note":{"type":"string","nullable":true},"level":{"type":"string","enum":["A","B"],"nullable":true}},"required":["note","level"]}`
	tests := []struct {
		name          string
		givenText     string
		givenSchema   string
		expectOutput  string
		expectMessage string
	}{
		{name: "TextStage", givenText: "hello", expectOutput: `{"result":"hello"}`},
		{name: "Plain", givenText: `{"note":"x","level":"A"}`, givenSchema: schema, expectOutput: `{"note":"x","level":"A"}`},
		{name: "NullableNulls", givenText: ` {"note": null, "level": null} `, givenSchema: schema, expectOutput: `{"note":null,"level":null}`},
		{name: "Fenced", givenText: "```json\n{\"note\":\"x\",\"level\":\"B\"}\n```\n", givenSchema: schema, expectOutput: `{"note":"x","level":"B"}`},
		{name: "FenceWithoutLanguage", givenText: "```\n{\"note\":\"x\",\"level\":\"B\"}\n```", givenSchema: schema, expectOutput: `{"note":"x","level":"B"}`},
		{name: "MissingRequired", givenText: `{"note":"x"}`, givenSchema: schema, expectMessage: "missing property 'level'"},
		{name: "WrongEnum", givenText: `{"note":"x","level":"C"}`, givenSchema: schema, expectMessage: "/level"},
		{name: "Prose", givenText: "Here you go: {}", givenSchema: schema, expectMessage: "not valid JSON"},
		{name: "TrailingText", givenText: `{"note":"x","level":"A"} and more`, givenSchema: schema, expectMessage: "text after the JSON"},
		{name: "Empty", givenText: "  ", givenSchema: schema, expectMessage: "no text"},
	}
	v := NewValidator()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := v.Finish(tt.givenText, []byte(tt.givenSchema))
			if tt.expectMessage != "" {
				var me *Error
				require.ErrorAs(t, err, &me)
				require.Equal(t, RetryRegenerate, me.Retry)
				require.Contains(t, me.Message, tt.expectMessage)
				return
			}
			require.NoError(t, err)
			require.JSONEq(t, tt.expectOutput, string(out))
		})
	}
}

func TestValidatorRejectsExternalRefs(t *testing.T) {
	t.Parallel()
	err := NewValidator().Validate([]byte(`{"$ref":"https://example.com/schema.json"}`), map[string]any{})
	require.ErrorContains(t, err, "not allowed")
}

// TestServerQuota429 goes through the fake server's own quota accounting
// (not a scripted reply): the second request in a minute gets Gemini's 429
// with QuotaFailure and RetryInfo, which the client turns into a block.
func TestServerQuota429(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{
		server: geminitest.Config{Quotas: map[string]geminitest.Quota{"proj-a": {RPM: 1}}},
		keys:   [][2]string{{"AIza-key-one", "proj-a"}},
		config: Config{MaxKeyAttempts: 1},
	})
	ctx := context.Background()
	_, err := b.client.Generate(ctx, b.request("one", ""))
	require.NoError(t, err)
	b.clock.Advance(20 * time.Second)
	_, err = b.client.Generate(ctx, b.request("two", ""))
	var me *Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindRateLimited, me.Kind)
	require.Equal(t, 40*time.Second, me.RetryAfter)
	require.Contains(t, me.Message, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier")

	_, err = b.client.Generate(ctx, b.request("three", ""))
	var nk *NoKeyError
	require.ErrorAs(t, err, &nk)
	require.Equal(t, pacificStart.Add(time.Minute), nk.Until)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		given       Config
		expectError string
	}{
		{name: "Zero", given: Config{}},
		{name: "BadProvider", given: Config{Provider: "openai"}, expectError: "model.Config.Provider"},
		{name: "BadBaseURL", given: Config{BaseURL: "localhost:8080"}, expectError: "model.Config.BaseURL"},
		{name: "NegativeLimit", given: Config{Pool: PoolConfig{Limits: map[string]Limit{"m": {RPM: -1}}}}, expectError: "Limits[m]"},
		{name: "OperatorKeyWithoutSecret", given: Config{Pool: PoolConfig{OperatorKeys: []OperatorKey{{Name: "x"}}}}, expectError: "OperatorKeys[0]"},
		{name: "ShortKEK", given: Config{KEKs: []KEK{{ID: "k", Key: []byte("x")}}}, expectError: "model.Config.KEKs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.given.Validate()
			if tt.expectError == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.expectError)
		})
	}
}

func TestSettingsClone(t *testing.T) {
	t.Parallel()
	temp, topP, topK, budget := 0.5, 0.9, 40.0, 128
	s := Settings{
		Model: "m", SystemInstruction: "si", Fallbacks: []string{"f1"},
		Generation: GenerationConfig{
			Temperature: &temp, TopP: &topP, TopK: &topK, MaxOutputTokens: 10,
			Thinking: &ThinkingConfig{IncludeThoughts: true, Budget: &budget, Level: "low"},
		},
	}
	c := s.Clone()
	require.Equal(t, s, c)

	*c.Generation.Temperature, *c.Generation.TopP, *c.Generation.TopK = 1, 1, 1
	*c.Generation.Thinking.Budget = 1
	c.Generation.Thinking.Level = "high"
	c.Fallbacks[0] = "changed"
	require.InDelta(t, 0.5, *s.Generation.Temperature, 0)
	require.InDelta(t, 0.9, *s.Generation.TopP, 0)
	require.InDelta(t, 40.0, *s.Generation.TopK, 0)
	require.Equal(t, 128, *s.Generation.Thinking.Budget)
	require.Equal(t, "low", s.Generation.Thinking.Level)
	require.Equal(t, []string{"f1"}, s.Fallbacks)

	require.Equal(t, Settings{Model: "m"}, Settings{Model: "m"}.Clone(), "nil pointers and slice stay nil")
}
