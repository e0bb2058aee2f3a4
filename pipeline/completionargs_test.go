package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
)

// completionBatch is n completions as Runner.write passes them to the
// completer: the offline model's kind of output and usage.
func completionBatch(n int) []*completion {
	batch := make([]*completion, n)
	for i := range batch {
		resp := model.Response{
			Usage:        model.Usage{PromptTokens: 120, CandidatesTokens: 48, TotalTokens: 168},
			ModelVersion: "gemini-3.5-flash-001",
			ResponseID:   uuid.NewString(),
			Model:        "gemini-3.5-flash",
		}
		res := Result{Regenerations: 0, Billed: resp.Usage, CostUSD: 0.000123, Priced: true}
		batch[i] = &completion{args: map[string]any{
			"p_task_id": uuid.New(),
			"p_worker":  "w-1",
			"p_output":  json.RawMessage(`{"title":"An answer","items":[1,2,3],"ok":true}`),
			"p_usage":   usageArgs(resp, res, nil),
		}}
	}
	return batch
}

// BenchmarkCompletionArgs encodes the arguments of one complete_tasks call
// of 100 completions, as the transport encodes them (completionCall's
// EncodeArgs). Before it, json.Marshal of a map of the items took about
// 3 µs per item.
func BenchmarkCompletionArgs(b *testing.B) {
	batch := completionBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := (completionCall{worker: "w-1", batch: batch}).EncodeArgs(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/item")
}

// marshalCompletionArgs is what the completer sent before completionCall:
// json.Marshal of the arguments as a map.
func marshalCompletionArgs(worker string, batch []*completion) ([]byte, error) {
	items := make([]map[string]any, len(batch))
	for i, r := range batch {
		items[i] = map[string]any{"task_id": r.args["p_task_id"], "output": r.args["p_output"], "usage": r.args["p_usage"]}
	}
	return json.Marshal(map[string]any{"p_worker": worker, "p_items": items})
}

// requireSameArgs checks that completionCall encodes batch as json.Marshal
// does: the same JSON value (or both refuse it), and the keys it names.
func requireSameArgs(t *testing.T, worker string, batch []*completion) {
	t.Helper()
	want, wantErr := marshalCompletionArgs(worker, batch)
	got, keys, err := completionCall{worker: worker, batch: batch}.EncodeArgs()
	if wantErr != nil {
		require.Error(t, err, "json.Marshal refuses it: %v", wantErr)
		return
	}
	require.NoError(t, err)
	require.True(t, json.Valid(got), "%s", got)
	require.Equal(t, decodeWithNumbers(t, want), decodeWithNumbers(t, got))
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(got, &m))
	require.Equal(t, slices.Sorted(maps.Keys(m)), keys)
}

// decodeWithNumbers decodes b with its numbers as written (1e400 too).
func decodeWithNumbers(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v), "%s", b)
	return v
}

// usageOf is a completion's usage with every field set from the strings and
// numbers given.
func usageOf(s string, n int, cost *float64) completionUsage {
	return completionUsage{
		PromptTokens: n, CandidatesTokens: -n, ThoughtsTokens: n / 3, TotalTokens: n * 2,
		ModelID: s, ModelVersion: s + "-v", ResponseID: s, Regenerations: n % 4, APIKeyID: s,
		FallbackFrom: []string{s, "gemini-2.5-pro"}, HooksIgnored: []string{s},
		Usage: usage{
			Usage: model.Usage{
				PromptTokens: n, CachedTokens: n + 1, CandidatesTokens: n + 2, ThoughtsTokens: n + 3,
				ToolUsePromptTokens: n + 4, TotalTokens: n + 5,
			},
			Calls: n%4 + 1, EstimatedCostUSD: cost,
		},
	}
}

// TestCompletionArgsMatchEncodingJSON: complete_tasks' arguments as
// completionCall writes them are the JSON value json.Marshal made of them,
// for every kind of text a usage can carry (quotes, control characters,
// HTML, line separators, non-ASCII and invalid UTF-8), every cost
// (exponents, none), outputs with whitespace, arguments of other types, and
// it refuses what json.Marshal refuses (an output that is not JSON, a cost
// that is not finite).
func TestCompletionArgsMatchEncodingJSON(t *testing.T) {
	t.Parallel()
	cost := func(f float64) *float64 { return &f }
	id := uuid.MustParse("8134f82e-98d7-4a9f-a360-412d48c73866")
	completionWith := func(args map[string]any) *completion { return &completion{args: args} }
	cases := map[string][]*completion{
		"the bench's": completionBatch(3),
		"none":        {},
	}
	for i, s := range []string{
		"", "plain", `a "quoted" \ path`, "tab\tnew\nline\x00\x1f", "<b>&amp;</b>", "é 😀 \u2028 \u2029",
		"\xff\xfe", "\xed\xa0\x80", "gemini-3.5-flash", "ends with \\",
	} {
		for j, c := range []*float64{nil, cost(0), cost(0.000123), cost(1e-7), cost(-2.5e-9), cost(12345.678), cost(1e21), cost(3e300), cost(math.SmallestNonzeroFloat64)} {
			cases[fmt.Sprintf("usage %d, cost %d", i, j)] = []*completion{completionWith(map[string]any{
				"p_task_id": id, "p_output": json.RawMessage(`{"ok":true}`), "p_usage": usageOf(s, i*1000-3, c),
			})}
		}
	}
	cases["outputs"] = []*completion{
		completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(" {\n  \"a\" : [1, 2.50, 1e400, \"x y\"] ,\"b\":null}\t"), "p_usage": completionUsage{}}),
		completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(`"<&>"`), "p_usage": completionUsage{FallbackFrom: []string{}}}),
		completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(nil), "p_usage": completionUsage{}}),
		completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(`[]`), "p_usage": completionUsage{}}),
	}
	cases["other types"] = []*completion{
		completionWith(map[string]any{"p_task_id": id.String(), "p_output": map[string]any{"a": 1}, "p_usage": map[string]any{"model_id": "m"}}),
		completionWith(map[string]any{"p_task_id": nil}),
		completionWith(map[string]any{"p_task_id": &id, "p_output": []byte("x"), "p_usage": &completionUsage{TotalTokens: 1}}),
	}
	cases["an output that is not JSON"] = []*completion{completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(`{"a":`), "p_usage": completionUsage{}})}
	cases["a cost that is NaN"] = []*completion{completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(`{}`), "p_usage": usageOf("m", 1, cost(math.NaN()))})}
	cases["a cost that is infinite"] = []*completion{completionWith(map[string]any{"p_task_id": id, "p_output": json.RawMessage(`{}`), "p_usage": usageOf("m", 1, cost(math.Inf(-1)))})}
	for name, batch := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireSameArgs(t, "worker <1> \"é\"", batch)
			requireSameArgs(t, "w-1", batch)
		})
	}
	for _, name := range []string{"an output that is not JSON", "a cost that is NaN", "a cost that is infinite"} {
		_, _, err := completionCall{worker: "w", batch: cases[name]}.EncodeArgs()
		require.Error(t, err, name)
	}
}

// FuzzCompletionArgsMatchEncodingJSON: whatever text, numbers and output a
// completion carries, completionCall writes the JSON value json.Marshal
// writes, or refuses it as json.Marshal does.
func FuzzCompletionArgsMatchEncodingJSON(f *testing.F) {
	f.Add("gemini-3.5-flash", "w-1", 168, 0.000123, []byte(`{"ok":true}`))
	f.Add("é 😀 \u2028 <&> \"q\" \\ \x00", "\xff", -1, 1e-7, []byte(" [1, 2.50, 1e400] "))
	f.Add("", "", 0, 1e21, []byte(`{"a":`))
	f.Add("\xed\xa0\x80", "x", math.MaxInt, math.Inf(1), []byte(nil))
	f.Fuzz(func(t *testing.T, s, worker string, n int, c float64, out []byte) {
		batch := []*completion{
			{args: map[string]any{"p_task_id": uuid.New(), "p_output": json.RawMessage(out), "p_usage": usageOf(s, n, &c)}},
			{args: map[string]any{"p_task_id": uuid.New(), "p_output": json.RawMessage(`{"ok":true}`), "p_usage": usageOf(worker, n/7, nil)}},
		}
		requireSameArgs(t, worker, batch)
	})
}
