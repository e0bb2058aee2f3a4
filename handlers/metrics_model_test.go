package handlers_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/pipeline"
)

func TestMetricsAnswersPerModelAndFallbacks(t *testing.T) {
	t.Parallel()
	m := handlers.NewMetrics()
	m.TaskFinished(pipeline.Result{Outcome: pipeline.OutcomeCompleted, Model: "gemini-b", FallbackFrom: []string{"gemini-a"}}, "s", 0)
	m.TaskFinished(pipeline.Result{Outcome: pipeline.OutcomeCompleted, Model: "gemini-a"}, "s", 0)
	m.TaskFinished(pipeline.Result{Outcome: pipeline.OutcomeFailed}, "s", 0)
	// A tenant naming many models cannot grow the label set without bound.
	for i := range 100 {
		m.TaskFinished(pipeline.Result{Outcome: pipeline.OutcomeCompleted, Model: fmt.Sprintf("made-up-%d", i)}, "s", 0)
	}
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	counts := map[string]map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			if counts[f.GetName()] == nil {
				counts[f.GetName()] = map[string]float64{}
			}
			for _, l := range mt.GetLabel() {
				if l.GetName() == "model" {
					counts[f.GetName()][l.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	require.InDelta(t, 1, counts["orchable_model_answers_total"]["gemini-b"], 0)
	require.InDelta(t, 1, counts["orchable_model_answers_total"]["gemini-a"], 0)
	require.InDelta(t, 1, counts["orchable_model_fallbacks_total"]["gemini-a"], 0)
	require.Len(t, counts["orchable_model_answers_total"], 33) // 32 ids and "other"
	require.InDelta(t, 70, counts["orchable_model_answers_total"]["other"], 0)
}
