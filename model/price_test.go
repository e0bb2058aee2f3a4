package model

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPriceTableCost(t *testing.T) {
	t.Parallel()
	prices := DefaultPrices()
	u := Usage{PromptTokens: 1_000_000, CachedTokens: 800_000, CandidatesTokens: 100_000, ThoughtsTokens: 50_000}
	got, ok := prices.Cost("gemini-2.5-flash", u)
	require.True(t, ok)
	// 200k full input at 0.30, 800k cached at 0.03, 150k output+thinking at 2.50.
	require.InDelta(t, 0.2*0.30+0.8*0.03+0.1*2.5+0.05*2.5, got, 1e-9)

	got, ok = prices.Cost("gemini-2.5-flash-preview-09-2025", Usage{PromptTokens: 1_000_000})
	require.True(t, ok, "priced by its longest prefix")
	require.InDelta(t, 0.30, got, 1e-9)
	got, ok = prices.Cost("gemini-2.5-flash-lite", Usage{PromptTokens: 1_000_000})
	require.True(t, ok)
	require.InDelta(t, 0.10, got, 1e-9, "the longer prefix wins")

	_, ok = prices.Cost("someone-elses-model", u)
	require.False(t, ok)
}

func TestParsePrices(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		given          string
		expectModel    string
		expectPrice    Price
		expectErrorHas string
	}{
		{name: "EmptyKeepsDefaults", given: "", expectModel: "gemini-3.5-flash", expectPrice: DefaultPrices()["gemini-3.5-flash"]},
		{
			name: "OverrideFillsThinkingAndCached", given: `{"my-model":{"input":2,"output":8}}`, expectModel: "my-model",
			expectPrice: Price{Input: 2, CachedInput: 2, Output: 8, Thinking: 8},
		},
		{
			name: "AllFields", given: `{"gemini-2.5-flash":{"input":1,"cached_input":0.1,"output":3,"thinking":4,"cache_storage_hour":1}}`,
			expectModel: "gemini-2.5-flash", expectPrice: Price{Input: 1, CachedInput: 0.1, Output: 3, Thinking: 4, CacheStorageHour: 1},
		},
		{name: "Negative", given: `{"m":{"input":-1}}`, expectErrorHas: "non-negative"},
		{name: "UnknownField", given: `{"m":{"inputs":1}}`, expectErrorHas: "unknown field"},
		{name: "NotJSON", given: `m=1`, expectErrorHas: "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			table, err := ParsePrices(tt.given)
			if tt.expectErrorHas != "" {
				require.ErrorContains(t, err, tt.expectErrorHas)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.expectPrice, table[tt.expectModel])
		})
	}
}
