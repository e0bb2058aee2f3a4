package pipeline_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
)

// Every acceptance bundle imports and runs to completion with the offline
// model, producing the stage shapes the SPEC describes.
func TestFixturesRunOffline(t *testing.T) {
	t.Parallel()
	bundles, err := filepath.Glob("testdata/bundles/orc-*")
	require.NoError(t, err)
	require.Len(t, bundles, 5)
	for _, dir := range bundles {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b := setup(t)
			offline, err := model.NewOffline(&model.Config{Provider: model.ProviderOffline})
			require.NoError(t, err)

			bundle, err := pipeline.LoadBundle(dir)
			require.NoError(t, err)
			id, _ := claimsIdentity{}.Identity(ctx, b.user)
			imp, err := pipeline.Import(ctx, b.db, id, bundle)
			require.NoError(t, err)
			b.launch(ctx, t, b.user, imp.RootTemplateID,
				map[string]any{"batch_number": 1, "lo_count": 2, "topic": "Photosynthesis", "lo_code": "LO-1"},
				map[string]any{"batch_number": 2, "lo_count": 1, "topic": "Fractions", "lo_code": "LO-2"})

			e := &engine{finished: make(chan pipeline.Result, 1000)}
			r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "fx"}, b.db, offline)
			d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 4, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
			d.Start(ctx)
			t.Cleanup(func() { _ = d.Stop(ctx) })
			e.disps = append(e.disps, d)
			b.quiesce(ctx, t, e, b.user)

			tree := b.tree(ctx, t, b.user)
			for _, r := range tree {
				require.Equal(t, "completed", r.Status, "%s: %s", r.Stage, r.ErrorMessage)
			}
			stages := countBy(tree, func(r row) string { return r.Stage })
			switch filepath.Base(dir) {
			case "orc-02-lesson-plan":
				// 1 mapper per row → one designer per topic of its output → one merged validator.
				require.Equal(t, 2, stages["mapper"])
				want := 0
				for _, r := range tree {
					if r.Stage == "mapper" {
						var out struct {
							OutputData []json.RawMessage `json:"output_data"`
						}
						require.NoError(t, json.Unmarshal(r.Output, &out))
						want += len(out.OutputData)
					}
				}
				require.Positive(t, want)
				require.Equal(t, want, stages["designer"])
				require.Equal(t, 1, stages["validator"])
			case "orc-10-lesson-plan-advanced":
				// Joins per input row: each stage once per row; p4 sees the
				// curriculum input plus every dependency's output.
				require.Equal(t, map[string]int{"p1_final_product": 2, "p2_lesson_products": 2, "p3_module_summary": 2, "p4_detailed_lesson": 2}, stages)
				for _, r := range tree {
					if r.Stage != "p4_detailed_lesson" {
						continue
					}
					var in map[string]json.RawMessage
					require.NoError(t, json.Unmarshal(r.Input, &in))
					for _, k := range []string{"topic", "lo_code", "p1_final_product", "p2_lesson_products", "p3_module_summary"} {
						require.Contains(t, in, k)
					}
				}
			default:
				require.Len(t, stages, len(bundle.Steps))
			}
		})
	}
}
