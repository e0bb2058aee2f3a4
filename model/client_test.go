package model

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

func TestClientStructuredRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})

	settings, err := ResolveSettings(
		json.RawMessage(`{"model_id":"gemini-test","generationConfig":{"temperature":0.2,"topP":0.9,"topK":40,"maxOutputTokens":2048,"thinkingConfig":{"thinkingBudget":512}},"systemInstruction":"You write quizzes."}`),
		json.RawMessage(`{"temperature":0.5}`), "fallback")
	require.NoError(t, err)
	req := b.request("Write a quiz about photosynthesis.", quizSchema)
	req.Settings = settings

	resp, err := b.client.Generate(ctx, req)
	require.NoError(t, err)
	require.NoError(t, NewValidator().Validate([]byte(quizSchema), decode(t, resp.Output)))
	require.Equal(t, b.keyIDs[0].String(), resp.KeyID)
	require.Equal(t, "gemini-test-fake-001", resp.ModelVersion)
	require.NotEmpty(t, resp.ResponseID)
	require.Positive(t, resp.Usage.PromptTokens)
	require.Positive(t, resp.Usage.CandidatesTokens)
	require.Equal(t, resp.Usage.PromptTokens+resp.Usage.CandidatesTokens, resp.Usage.TotalTokens)

	calls := b.server.Calls()
	require.Len(t, calls, 1)
	c := calls[0]
	require.Equal(t, "gemini-test", c.Model)
	require.Equal(t, "proj-a", c.Project)
	require.Equal(t, "You write quizzes.", c.SystemInstruction)
	require.Equal(t, "application/json", c.GenerationConfig["responseMimeType"])
	require.InDelta(t, 0.5, c.GenerationConfig["temperature"], 1e-6)
	require.InDelta(t, 0.9, c.GenerationConfig["topP"], 1e-6)
	require.InDelta(t, 2048, c.GenerationConfig["maxOutputTokens"], 0)
	require.Equal(t, map[string]any{"thinkingBudget": float64(512)}, c.GenerationConfig["thinkingConfig"])
	var sent, want any
	require.NoError(t, json.Unmarshal([]byte(quizSchema), &want))
	sent = c.GenerationConfig["responseJsonSchema"]
	require.Equal(t, want, sent)
	require.Equal(t, []string{OutcomeSuccess}, b.store.outcomeResults())
}

func TestClientTextStage(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})
	resp, err := b.client.Generate(context.Background(), b.request("Say something.", ""))
	require.NoError(t, err)
	var out map[string]string
	require.NoError(t, json.Unmarshal(resp.Output, &out))
	require.NotEmpty(t, out["result"])
	require.Equal(t, out["result"], resp.Text)
	require.NotContains(t, b.server.Calls()[0].GenerationConfig, "responseMimeType")
}

func TestClientErrorClassification(t *testing.T) {
	t.Parallel()

	retryInfo := func(d string) map[string]any {
		return map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": d}
	}
	quotaFailure := func(id string) map[string]any {
		return map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{
			map[string]any{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": id},
		}}
	}
	// pacificStart is 09:00 PST on 2026-11-25; the next Pacific midnight is 08:00 UTC on the 26th.
	midnight := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

	tests := []struct {
		name             string
		givenReply       *geminitest.Reply
		givenKey         string
		givenModel       string
		givenSchema      string
		givenTimeout     time.Duration
		expectKind       Kind
		expectRetry      Retry
		expectScope      Scope
		expectRetryAfter time.Duration
		expectUntil      time.Time
		expectMessage    string
		expectOutcome    string
	}{
		{
			name:       "RateLimitedPerMinuteWithRetryInfo",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED", Message: "quota", Details: []map[string]any{quotaFailure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), retryInfo("37s")}},
			expectKind: KindRateLimited, expectRetry: RetryLater, expectScope: ScopeProject, expectRetryAfter: 37 * time.Second,
			expectMessage: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", expectOutcome: OutcomeRateLimited,
		},
		{
			name:       "RateLimitedFractionalRetryDelay",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED", Details: []map[string]any{retryInfo("3.957525076s")}},
			expectKind: KindRateLimited, expectRetry: RetryLater, expectScope: ScopeProject, expectRetryAfter: 3957525076 * time.Nanosecond,
			expectOutcome: OutcomeRateLimited,
		},
		{
			name:       "RateLimitedWithoutRetryInfo",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED"},
			expectKind: KindRateLimited, expectRetry: RetryLater, expectScope: ScopeProject, expectRetryAfter: time.Minute,
			expectOutcome: OutcomeRateLimited,
		},
		{
			name:       "DailyQuotaUntilMidnightPacific",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED", Details: []map[string]any{quotaFailure("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), retryInfo("13s")}},
			expectKind: KindQuotaExhausted, expectRetry: RetryLater, expectScope: ScopeProject, expectRetryAfter: midnight.Sub(pacificStart), expectUntil: midnight,
			expectMessage: "daily quota", expectOutcome: OutcomeRateLimited,
		},
		{
			name:       "InvalidKey",
			givenKey:   "AIza-not-a-key",
			expectKind: KindInvalidKey, expectRetry: RetryLater, expectScope: ScopeKey, expectMessage: "API key not valid", expectOutcome: OutcomeInvalid,
		},
		{
			name:       "FailedPrecondition",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 400, StatusText: "FAILED_PRECONDITION", Message: "User location is not supported for the API use."},
			expectKind: KindFailedPrecondition, expectRetry: RetryLater, expectScope: ScopeKey, expectMessage: "billing or region", expectOutcome: OutcomeKeyBlocked,
		},
		{
			name:       "PermissionDenied",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 403, StatusText: "PERMISSION_DENIED", Message: "Permission denied"},
			expectKind: KindPermissionDenied, expectRetry: RetryLater, expectScope: ScopeKey, expectOutcome: OutcomeInvalid,
		},
		{
			name:       "RetiredModel",
			givenModel: "gemini-1.5-flash-002",
			expectKind: KindModelNotFound, expectRetry: RetryNever, expectScope: ScopeNone, expectMessage: `model "gemini-1.5-flash-002" was not found`, expectOutcome: OutcomeSuccess,
		},
		{
			name:       "BadRequest",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 400, StatusText: "INVALID_ARGUMENT", Message: "Invalid JSON payload"},
			expectKind: KindBadRequest, expectRetry: RetryNever, expectScope: ScopeNone, expectOutcome: OutcomeSuccess,
		},
		{
			name:       "Internal500",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 500, StatusText: "INTERNAL", Message: "An internal error has occurred."},
			expectKind: KindServer, expectRetry: RetryLater, expectScope: ScopeNone, expectOutcome: OutcomeFailure,
		},
		{
			name:       "Unavailable503",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 503, StatusText: "UNAVAILABLE", Message: "The model is overloaded."},
			expectKind: KindServer, expectRetry: RetryLater, expectScope: ScopeNone, expectOutcome: OutcomeFailure,
		},
		{
			name:       "DeadlineExceeded504",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyError, Status: 504, StatusText: "DEADLINE_EXCEEDED"},
			expectKind: KindTimeout, expectRetry: RetryLater, expectScope: ScopeNone, expectOutcome: OutcomeFailure,
		},
		{
			name:         "ClientTimeout",
			givenReply:   &geminitest.Reply{Kind: geminitest.ReplySlow},
			givenTimeout: 50 * time.Millisecond,
			expectKind:   KindTimeout, expectRetry: RetryLater, expectScope: ScopeNone, expectMessage: "timed out", expectOutcome: OutcomeFailure,
		},
		{
			name:       "Safety",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplySafety},
			expectKind: KindBlocked, expectRetry: RetryNever, expectScope: ScopeNone, expectMessage: "finishReason SAFETY", expectOutcome: OutcomeSuccess,
		},
		{
			name:       "Recitation",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyRecitation},
			expectKind: KindBlocked, expectRetry: RetryNever, expectScope: ScopeNone, expectMessage: "finishReason RECITATION", expectOutcome: OutcomeSuccess,
		},
		{
			name:       "PromptBlocked",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyPromptBlocked},
			expectKind: KindBlocked, expectRetry: RetryNever, expectScope: ScopeNone, expectMessage: "blocked the prompt: SAFETY", expectOutcome: OutcomeSuccess,
		},
		{
			name:       "MaxTokens",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyMaxTokens},
			expectKind: KindMaxTokens, expectRetry: RetryNever, expectScope: ScopeNone, expectMessage: "MAX_TOKENS", expectOutcome: OutcomeSuccess,
		},
		{
			name:       "InvalidJSON",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyInvalidJSON},
			expectKind: KindInvalidOutput, expectRetry: RetryRegenerate, expectScope: ScopeNone, expectMessage: "not valid JSON", expectOutcome: OutcomeSuccess,
		},
		{
			name:       "SchemaViolation",
			givenReply: &geminitest.Reply{Kind: geminitest.ReplyText, Text: `{"title": "t", "difficulty": "impossible", "questions": []}`},
			expectKind: KindInvalidOutput, expectRetry: RetryRegenerate, expectScope: ScopeNone, expectMessage: "output does not match output_schema", expectOutcome: OutcomeSuccess,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := "AIza-key-one"
			opts := &bundleOpts{
				server: geminitest.Config{Keys: map[string]string{key: "proj-a"}, RetiredModels: []string{"gemini-1.5-flash-002"}},
				keys:   [][2]string{{key, "proj-a"}},
				config: Config{MaxKeyAttempts: 1, RequestTimeout: tt.givenTimeout},
			}
			if tt.givenKey != "" {
				opts.keys = [][2]string{{tt.givenKey, "proj-a"}}
			}
			b := setup(t, opts)
			if tt.givenReply != nil {
				b.server.Enqueue(*tt.givenReply)
			}
			req := b.request("Write a quiz.", quizSchema)
			if tt.givenModel != "" {
				req.Settings.Model = tt.givenModel
			}

			_, err := b.client.Generate(context.Background(), req)

			var me *Error
			require.ErrorAs(t, err, &me)
			require.Equal(t, tt.expectKind, me.Kind, me.Message)
			require.Equal(t, tt.expectRetry, me.Retry)
			require.Equal(t, tt.expectScope, me.Scope)
			require.Equal(t, tt.expectRetryAfter, me.RetryAfter)
			require.True(t, tt.expectUntil.Equal(me.Until), "until %s", me.Until)
			require.Contains(t, me.Message, tt.expectMessage)
			require.NotContains(t, me.Error(), key)
			require.NotContains(t, me.Error(), "AIza")
			require.Equal(t, []string{tt.expectOutcome}, b.store.outcomeResults())
		})
	}
}

func TestClientConnectionError(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})
	cfg := Config{BaseURL: deadURL, Archetype: b.clock.Archetype(nil), MaxKeyAttempts: 1}
	client, err := NewClient(&cfg, b.pool)
	require.NoError(t, err)

	_, err = client.Generate(context.Background(), b.request("hello", ""))
	var me *Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindConnection, me.Kind)
	require.Equal(t, RetryLater, me.Retry)
	require.False(t, me.KeyFault())
	require.Equal(t, []string{OutcomeFailure}, b.store.outcomeResults())
}

func TestClientFencedJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})
	b.server.Enqueue(geminitest.Reply{Kind: geminitest.ReplyFenced})
	resp, err := b.client.Generate(context.Background(), b.request("Write a quiz.", quizSchema))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp.Text, "```json"))
	require.NoError(t, NewValidator().Validate([]byte(quizSchema), decode(t, resp.Output)))
}

func TestClientHonoursRetryInfo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}, {"AIza-key-two", "proj-a"}}})
	b.server.Enqueue(geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED", Details: []map[string]any{
		{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
	}})

	// Both keys are in proj-a: the 429 blocks the project, so the second key
	// is not tried and the caller learns when to come back.
	_, err := b.client.Generate(ctx, b.request("hello", ""))
	var nk *NoKeyError
	require.ErrorAs(t, err, &nk)
	require.ErrorIs(t, err, ErrNoKeyAvailable)
	require.Equal(t, pacificStart.Add(37*time.Second), nk.Until)
	require.Contains(t, nk.Error(), "rate limit")
	require.Equal(t, 1, b.server.Stats().Requests)

	b.clock.Advance(36 * time.Second)
	_, err = b.client.Generate(ctx, b.request("hello", ""))
	require.ErrorAs(t, err, &nk)
	require.Equal(t, 1, b.server.Stats().Requests, "no request while the project is blocked")

	b.clock.Advance(time.Second)
	_, err = b.client.Generate(ctx, b.request("hello", ""))
	require.NoError(t, err)
}

func TestClientFailsOverToAnotherProject(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}, {"AIza-key-two", "proj-b"}}})
	b.server.Enqueue(geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED"})
	resp, err := b.client.Generate(context.Background(), b.request("hello", ""))
	require.NoError(t, err)
	calls := b.server.Calls()
	require.Len(t, calls, 2)
	require.NotEqual(t, calls[0].Project, calls[1].Project)
	require.Equal(t, []string{OutcomeRateLimited, OutcomeSuccess}, b.store.outcomeResults())
	require.NotEmpty(t, resp.KeyID)
}

func TestClientDeactivatesInvalidKeyAndUsesNext(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{
		server: geminitest.Config{Keys: map[string]string{"AIza-good": "proj-b"}},
		keys:   [][2]string{{"AIza-revoked", "proj-a"}, {"AIza-good", "proj-b"}},
	})
	b.store.keys[1].Priority = 2 // the revoked key is tried first
	_, err := b.client.Generate(context.Background(), b.request("hello", ""))
	require.NoError(t, err)
	require.Equal(t, []string{OutcomeInvalid, OutcomeSuccess}, b.store.outcomeResults())
	keys, err := b.store.UsableKeys(context.Background(), b.user, "gemini-test")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, b.keyIDs[1], keys[0].ID)
}

func TestClientNoKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{})
	_, err := b.client.Generate(context.Background(), b.request("hello", ""))
	var me *Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindNoKey, me.Kind)
	require.Equal(t, RetryNever, me.Retry)
	require.NotErrorIs(t, err, ErrNoKeyAvailable)
}

func TestClientCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.client.Generate(ctx, b.request("hello", ""))
	require.ErrorIs(t, err, context.Canceled)
	var me *Error
	require.NotErrorAs(t, err, &me)
}

func TestOperatorKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{server: geminitest.Config{Keys: map[string]string{"AIza-op": "op-proj"}}})
	cfg := Config{BaseURL: b.server.URL, Archetype: b.clock.Archetype(nil), Pool: PoolConfig{OperatorKeys: []OperatorKey{{Name: "shared", Project: "op-proj", APIKey: "AIza-op"}}}}
	pool, err := NewKeyPool(&cfg, b.store, nil)
	require.NoError(t, err)
	client, err := NewClient(&cfg, pool)
	require.NoError(t, err)
	resp, err := client.Generate(context.Background(), Request{UserID: uuid.New(), Prompt: "hi", Settings: Settings{Model: "gemini-test"}})
	require.NoError(t, err)
	require.Equal(t, "operator:shared", resp.KeyID)
	require.Equal(t, "operator:shared", cfg.Pool.OperatorKeys[0].String())
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

func TestClientResponseSizeLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-key-one", "proj-a"}}, config: Config{MaxResponseBytes: 64}})
	_, err := b.client.Generate(context.Background(), b.request("hello", quizSchema))
	var me *Error
	require.ErrorAs(t, err, &me)
	require.ErrorIs(t, err, errResponseTooLarge)
	require.Equal(t, RetryLater, me.Retry)
	require.False(t, me.KeyFault())
}
