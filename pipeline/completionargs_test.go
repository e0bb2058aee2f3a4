package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"

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
// of 100 completions, as the completer builds them and the transport
// encodes them (json.Marshal of the map, supabase.argsObject).
func BenchmarkCompletionArgs(b *testing.B) {
	batch := completionBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		args := completionArgs("w-1", batch)
		if _, err := json.Marshal(args); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/item")
}
