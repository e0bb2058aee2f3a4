package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Request is one model call for one task.
type Request struct {
	// UserID owns the task; its keys are used (unless FreePool).
	UserID uuid.UUID
	// FreePool marks a free-tier task (ai_tasks.tier_source = 'free_pool'):
	// it runs on the operator's pool keys (PoolConfig.FreePool, then
	// PoolConfig.OperatorKeys), never on a user's personal key, and without
	// explicit cached contents (they would live in the pool's projects).
	FreePool bool
	// TaskID seeds the offline provider and is logged with the key usage.
	TaskID uuid.UUID
	// Settings is the resolved model id, generation config and system
	// instruction (see ResolveSettings).
	Settings Settings
	// Prompt is the rendered user prompt.
	Prompt string
	// BatchID is the task's batch (uuid.Nil when none); explicit cached
	// contents are shared per batch.
	BatchID uuid.UUID
	// Shared is the start of Prompt that every task of the batch's stage
	// shares (fixed instructions and the batch's documents), or "". With the
	// system instruction it forms a stable prefix for implicit caching and,
	// when large enough, is cached explicitly (see CacheConfig).
	Shared string
	// OutputSchema is the stage's output_schema (JSON). When empty the output
	// is {"result": "<text>"}; otherwise structured output is requested and the
	// answer is validated against it.
	OutputSchema json.RawMessage
}

// Settings are a stage's model settings after resolution.
//
//nolint:recvcheck // a value to read; overlay fills one in place while resolving
type Settings struct {
	// Model is the model id, for example "gemini-3.5-flash".
	Model string `json:"model"`
	// SystemInstruction is sent as the system instruction when not empty.
	SystemInstruction string `json:"system_instruction,omitempty"`
	// Generation holds the sampling parameters.
	Generation GenerationConfig `json:"generation"`
	// Fallbacks are the models tried, in order, when Model fails for a
	// reason of the model (overloaded, its quota exhausted, not found); see
	// Client.Generate. Read from fallback_models (or fallbackModels).
	Fallbacks []string `json:"fallback_models,omitempty"`
}

// Clone returns a copy of s that shares nothing with it (its pointers and
// slice are copied too).
func (s Settings) Clone() Settings {
	clone := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	g := &s.Generation
	g.Temperature, g.TopP, g.TopK = clone(g.Temperature), clone(g.TopP), clone(g.TopK)
	if g.Thinking != nil {
		th := *g.Thinking
		if th.Budget != nil {
			b := *th.Budget
			th.Budget = &b
		}
		g.Thinking = &th
	}
	s.Fallbacks = slices.Clone(s.Fallbacks)
	return s
}

// Chain is Model followed by the fallbacks, without repeats or empty ids.
func (s Settings) Chain() []string {
	out := make([]string, 0, 1+len(s.Fallbacks))
	for _, m := range append([]string{s.Model}, s.Fallbacks...) {
		if m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// GenerationConfig are the sampling parameters. Nil or zero fields are left
// to the model's defaults.
type GenerationConfig struct {
	Temperature     *float64        `json:"temperature,omitempty"`
	TopP            *float64        `json:"top_p,omitempty"`
	TopK            *float64        `json:"top_k,omitempty"`
	MaxOutputTokens int             `json:"max_output_tokens,omitempty"`
	Thinking        *ThinkingConfig `json:"thinking,omitempty"`
}

// ThinkingConfig is Gemini's thinkingConfig. Budget and Level are mutually
// exclusive on the API side; both are passed through as given.
type ThinkingConfig struct {
	IncludeThoughts bool   `json:"include_thoughts,omitempty"`
	Budget          *int   `json:"budget,omitempty"`
	Level           string `json:"level,omitempty"`
}

// Response is a successful model answer.
type Response struct {
	// Output is the validated JSON output, or {"result": "<text>"} when the
	// request had no output schema.
	Output json.RawMessage
	// Text is the model's raw text (code fence included), for debugging.
	Text string
	// Usage are the token counts the model reported.
	Usage Usage
	// ModelVersion and ResponseID are as reported by the model.
	ModelVersion string
	ResponseID   string
	// KeyID is the user_api_keys.id (or operator key id) that served the call;
	// empty for the offline provider. Never the key itself.
	KeyID string
	// Model is the model id that answered: Settings.Model, or a fallback.
	Model string
	// FallbackFrom lists the models of the chain that failed for a reason of
	// the model before Model answered, in order (empty when the first did).
	FallbackFrom []string
}

// Usage are token counts (Gemini usageMetadata). PromptTokens includes
// CachedTokens (the part of the prompt served from a cached content, billed
// at the cached rate) and ToolUsePromptTokens.
type Usage struct {
	PromptTokens        int `json:"prompt_token_count"`
	CachedTokens        int `json:"cached_content_token_count"`
	CandidatesTokens    int `json:"candidates_token_count"`
	ThoughtsTokens      int `json:"thoughts_token_count"`
	ToolUsePromptTokens int `json:"tool_use_prompt_token_count"`
	TotalTokens         int `json:"total_token_count"`
}

// Add returns the sum of u and v.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		PromptTokens:        u.PromptTokens + v.PromptTokens,
		CachedTokens:        u.CachedTokens + v.CachedTokens,
		CandidatesTokens:    u.CandidatesTokens + v.CandidatesTokens,
		ThoughtsTokens:      u.ThoughtsTokens + v.ThoughtsTokens,
		ToolUsePromptTokens: u.ToolUsePromptTokens + v.ToolUsePromptTokens,
		TotalTokens:         u.TotalTokens + v.TotalTokens,
	}
}

// ResolveSettings reads a stage's model settings: the template's
// default_ai_settings overlaid by the task's extra.ai_settings (either may be
// empty or JSON null). Both the Designer shape
//
//	{"model_id": "...", "generationConfig": {"temperature": 0.2, "topP": 0.9,
//	 "topK": 40, "maxOutputTokens": 2048, "thinkingConfig": {...}},
//	 "systemInstruction": "..."}
//
// and the flat legacy shape
//
//	{"model": "...", "temperature": 0.2, "top_p": 0.9, "top_k": 40,
//	 "max_output_tokens": 2048, "system_instruction": "..."}
//
// are read (camelCase and snake_case spellings of each field). Either shape
// may list fallback models, fallback_models (or fallbackModels): an array of
// model ids or one comma-separated string; a task-level list replaces the
// template's. Flat
// thinkingBudget/thinkingLevel written next to the sampling fields are moved
// into the thinking config. defaultModel is used when neither sets a model.
func ResolveSettings(templateSettings, taskOverride json.RawMessage, defaultModel string) (Settings, error) {
	s := Settings{Model: defaultModel}
	for i, raw := range []json.RawMessage{templateSettings, taskOverride} {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			which := "default_ai_settings"
			if i == 1 {
				which = "extra.ai_settings"
			}
			return Settings{}, fmt.Errorf("error decoding %s: %w", which, err)
		}
		if err := s.overlay(m); err != nil {
			return Settings{}, err
		}
	}
	if s.Model == "" {
		return Settings{}, errors.New("no model id: set model_id in the stage's ai settings or configure a default model")
	}
	return s, nil
}

// overlay applies one settings object (Designer or legacy shape) onto s.
func (s *Settings) overlay(m map[string]any) error {
	if v := firstString(m, "model_id", "model", "modelId"); v != "" {
		s.Model = v
	}
	if v := firstString(m, "systemInstruction", "system_instruction"); v != "" {
		s.SystemInstruction = v
	}
	for _, key := range []string{"fallback_models", "fallbackModels"} {
		v, ok := m[key]
		if !ok || v == nil {
			continue
		}
		list, err := modelList(key, v)
		if err != nil {
			return err
		}
		s.Fallbacks = list
		break
	}
	// Legacy flat fields live at the top level.
	if err := s.Generation.overlay(m); err != nil {
		return err
	}
	for _, key := range []string{"generationConfig", "generation_config"} {
		if gc, ok := m[key].(map[string]any); ok {
			if err := s.Generation.overlay(gc); err != nil {
				return fmt.Errorf("error reading %s: %w", key, err)
			}
		}
	}
	return nil
}

func (g *GenerationConfig) overlay(m map[string]any) error {
	for _, f := range []struct {
		dst  **float64
		keys []string
	}{
		{&g.Temperature, []string{"temperature"}},
		{&g.TopP, []string{"topP", "top_p"}},
		{&g.TopK, []string{"topK", "top_k"}},
	} {
		v, ok, err := firstNumber(m, f.keys...)
		if err != nil {
			return err
		}
		if ok {
			*f.dst = &v
		}
	}
	if v, ok, err := firstNumber(m, "maxOutputTokens", "max_output_tokens", "maxTokens", "max_tokens"); err != nil {
		return err
	} else if ok {
		g.MaxOutputTokens = int(v)
	}
	thinking := g.Thinking
	if tc, ok := firstMap(m, "thinkingConfig", "thinking_config"); ok {
		if thinking == nil {
			thinking = &ThinkingConfig{}
		}
		if err := thinking.overlay(tc); err != nil {
			return err
		}
	}
	// The Designer places thinkingBudget/thinkingLevel flat in generationConfig.
	if _, hasBudget := m["thinkingBudget"]; hasBudget || m["thinkingLevel"] != nil {
		if thinking == nil {
			thinking = &ThinkingConfig{}
		}
		if err := thinking.overlay(m); err != nil {
			return err
		}
	}
	g.Thinking = thinking
	return nil
}

func (t *ThinkingConfig) overlay(m map[string]any) error {
	if v, ok := m["includeThoughts"].(bool); ok {
		t.IncludeThoughts = v
	} else if v, ok := m["include_thoughts"].(bool); ok {
		t.IncludeThoughts = v
	}
	if v, ok, err := firstNumber(m, "thinkingBudget", "thinking_budget"); err != nil {
		return err
	} else if ok {
		b := int(v)
		t.Budget = &b
	}
	if v := firstString(m, "thinkingLevel", "thinking_level"); v != "" {
		t.Level = v
	}
	return nil
}

// modelList reads a list of model ids: a JSON array of strings or one
// comma-separated string.
func modelList(key string, v any) ([]string, error) {
	var raw []string
	switch v := v.(type) {
	case string:
		raw = strings.Split(v, ",")
	case []any:
		for _, e := range v {
			id, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s holds a %T, want model ids (strings)", key, e)
			}
			raw = append(raw, id)
		}
	default:
		return nil, fmt.Errorf("%s is a %T, want an array of model ids", key, v)
	}
	out := make([]string, 0, len(raw))
	for _, id := range raw {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out, nil
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if v, ok := m[k].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func firstMap(m map[string]any, keys ...string) (map[string]any, bool) {
	for _, k := range keys {
		if v, ok := m[k].(map[string]any); ok {
			return v, true
		}
	}
	return nil, false
}

// firstNumber reads a number, accepting numeric strings as the legacy forms
// sometimes stored them.
func firstNumber(m map[string]any, keys ...string) (float64, bool, error) {
	for _, k := range keys {
		switch v := m[k].(type) {
		case nil:
			continue
		case float64:
			return v, true, nil
		case string:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false, fmt.Errorf("%s is %q, want a number", k, v)
			}
			return f, true, nil
		default:
			return 0, false, fmt.Errorf("%s is a %T, want a number", k, v)
		}
	}
	return 0, false, nil
}
