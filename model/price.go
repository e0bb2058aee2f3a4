package model

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Price is what one model costs, in US dollars per million tokens.
type Price struct {
	// Input is the price of prompt tokens not served from a cache.
	Input float64 `json:"input"`
	// CachedInput is the price of prompt tokens served from a cached content
	// (explicit or implicit caching: usageMetadata.cachedContentTokenCount).
	CachedInput float64 `json:"cached_input"`
	// Output is the price of candidate (answer) tokens.
	Output float64 `json:"output"`
	// Thinking is the price of thoughts tokens (Gemini bills them as output).
	Thinking float64 `json:"thinking"`
	// CacheStorageHour is the price of keeping a million tokens in an
	// explicit cached content for an hour.
	CacheStorageHour float64 `json:"cache_storage_hour"`
}

// PriceTable maps model ids to prices. A model id without an entry takes the
// entry of its longest prefix ("gemini-2.5-flash-preview-09-2025" is priced
// as "gemini-2.5-flash"); a model matching none has no estimate.
type PriceTable map[string]Price

// PricesDate and PricesSource say where DefaultPrices come from.
const (
	PricesDate   = "2026-12-04"
	PricesSource = "https://ai.google.dev/gemini-api/docs/pricing (standard paid tier, prompts up to 200k tokens; cached input at 10% of input)"
)

// DefaultPrices are the paid-tier list prices of the Gemini API as of
// PricesDate (see PricesSource), in USD per million tokens. Prices change:
// override them with MODEL_PRICES; the README lists these defaults.
func DefaultPrices() PriceTable {
	return PriceTable{
		"gemini-3.5-flash":      {Input: 1.50, CachedInput: 0.15, Output: 9.00, Thinking: 9.00, CacheStorageHour: 1.00},
		"gemini-3.1-pro":        {Input: 2.00, CachedInput: 0.20, Output: 12.00, Thinking: 12.00, CacheStorageHour: 4.50},
		"gemini-3.1-flash-lite": {Input: 0.25, CachedInput: 0.025, Output: 1.50, Thinking: 1.50, CacheStorageHour: 1.00},
		"gemini-3-flash":        {Input: 0.50, CachedInput: 0.05, Output: 3.00, Thinking: 3.00, CacheStorageHour: 1.00},
		"gemini-2.5-pro":        {Input: 1.25, CachedInput: 0.125, Output: 10.00, Thinking: 10.00, CacheStorageHour: 4.50},
		"gemini-2.5-flash":      {Input: 0.30, CachedInput: 0.03, Output: 2.50, Thinking: 2.50, CacheStorageHour: 1.00},
		"gemini-2.5-flash-lite": {Input: 0.10, CachedInput: 0.01, Output: 0.40, Thinking: 0.40, CacheStorageHour: 1.00},
	}
}

// ParsePrices reads a JSON object {"model": {"input": 1.5, "cached_input":
// 0.15, "output": 9, "thinking": 9}} and lays it over DefaultPrices (an entry
// replaces the default of that model; missing fields are zero, except that
// thinking defaults to output and cached_input to input).
func ParsePrices(s string) (PriceTable, error) {
	out := DefaultPrices()
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	var raw map[string]map[string]*float64
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("prices are not a JSON object of model → prices: %w", err)
	}
	for id, fields := range raw {
		var p Price
		for k, v := range fields {
			if v == nil || *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) {
				return nil, fmt.Errorf("price %s.%s must be a non-negative number", id, k)
			}
			switch k {
			case "input":
				p.Input = *v
			case "cached_input":
				p.CachedInput = *v
			case "output":
				p.Output = *v
			case "thinking":
				p.Thinking = *v
			case "cache_storage_hour":
				p.CacheStorageHour = *v
			default:
				return nil, fmt.Errorf("price %s has an unknown field %q (want input, cached_input, output, thinking, cache_storage_hour)", id, k)
			}
		}
		if _, ok := fields["thinking"]; !ok {
			p.Thinking = p.Output
		}
		if _, ok := fields["cached_input"]; !ok {
			p.CachedInput = p.Input
		}
		out[id] = p
	}
	return out, nil
}

// Lookup returns the price of model: its own entry or its longest prefix.
func (t PriceTable) Lookup(model string) (Price, bool) {
	model = strings.TrimPrefix(model, "models/")
	if p, ok := t[model]; ok {
		return p, true
	}
	best, found := "", false
	for id := range t {
		if strings.HasPrefix(model, id) && len(id) > len(best) {
			best, found = id, true
		}
	}
	if !found {
		return Price{}, false
	}
	return t[best], true
}

// Cost is the estimated cost of u on model in US dollars: prompt tokens not
// cached (plus tool-use prompt tokens) at Input, cached ones at CachedInput,
// candidates at Output and thoughts at Thinking. ok is false when the model
// has no price.
func (t PriceTable) Cost(model string, u Usage) (usd float64, ok bool) {
	p, ok := t.Lookup(model)
	if !ok {
		return 0, false
	}
	cached := min(u.CachedTokens, u.PromptTokens)
	full := u.PromptTokens - cached + u.ToolUsePromptTokens
	return (float64(full)*p.Input + float64(cached)*p.CachedInput +
		float64(u.CandidatesTokens)*p.Output + float64(u.ThoughtsTokens)*p.Thinking) / 1e6, true
}
