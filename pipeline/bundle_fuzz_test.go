package pipeline_test

import (
	"os"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"

	"github.com/orchable/orchable/pipeline"
)

// FuzzParseBundle: any orchestration.json either parses into a bundle that
// plans cleanly, or is rejected with an error; it never panics or loops.
func FuzzParseBundle(f *testing.F) {
	for _, dir := range []string{"orc-01-quiz-gen", "orc-02-lesson-plan", "orc-05-social-media", "orc-09-code-review", "orc-10-lesson-plan-advanced"} {
		b, err := os.ReadFile("testdata/bundles/" + dir + "/" + pipeline.BundleFile)
		if err != nil {
			f.Fatalf("seed bundle %s: %v", dir, err) // a missing seed would silently weaken the fuzzer
		}
		f.Add(b)
	}
	f.Add([]byte(`{"orchestratorName":"x","steps":[{"id":"step_A","stage_key":"a","cardinality":"1:N","dependsOn":["step_A"]}]}`))
	f.Add([]byte(`{"steps":null}`))
	f.Add([]byte(`[]`))
	owner := uuid.MustParse("11111111-1111-1111-1111-111111111111")
	f.Fuzz(func(t *testing.T, doc []byte) {
		fsys := fstest.MapFS{
			pipeline.BundleFile:    {Data: doc},
			"prompts/a.md":         {Data: []byte("prompt %%input_data%%")},
			"prompts/b.md":         {Data: []byte("prompt {{item}}")},
			"prompts/stage_a_x.md": {Data: []byte("prompt")},
		}
		b, err := pipeline.ParseBundle(fsys, "fuzz")
		if err != nil {
			return
		}
		if _, err := b.Plan(owner); err != nil {
			t.Fatalf("a bundle that parsed must plan: %v", err)
		}
		_ = b.Ordered()
		_ = b.Root()
	})
}
