package pipeline_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

// A pipeline whose successor graph has a cycle is refused at import with
// an error naming the cycle, and nothing is written; ParseBundle refuses
// the same from a file (bundle_test.go), and Plan checks a Bundle built in
// code as well.
func TestImportRefusesSuccessorCycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	step := func(id, key string, deps ...string) pipeline.Step {
		return pipeline.Step{ID: id, StageKey: key, DependsOn: deps, Cardinality: "1:1", Prompt: "Go on with %%input_data%%", Raw: json.RawMessage(`{}`)}
	}
	loop := &pipeline.Bundle{Name: "loop", Steps: []pipeline.Step{
		step("step_A", "outline"),
		step("step_B", "draft", "step_A", "step_C"),
		step("step_C", "review", "step_B"),
	}}
	_, err := loop.Plan(b.user)
	var be *pipeline.BundleError
	require.ErrorAs(t, err, &be, "%v", err)
	require.Equal(t, []string{"successor cycle: step_B (draft) → step_C (review) → step_B (draft)"}, be.Problems)
	t.Logf("import of A → B → C → B: %v", err)

	id, _ := claimsIdentity{}.Identity(ctx, b.user)
	_, err = pipeline.Import(ctx, b.db, id, loop)
	require.ErrorAs(t, err, &be)
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*) from public.prompt_templates where user_id = $1", b.user).Scan(&n))
	require.Zero(t, n, "nothing written")

	self := &pipeline.Bundle{Name: "self", Steps: []pipeline.Step{step("step_A", "a"), step("step_B", "b", "step_A", "step_B")}}
	_, err = self.Plan(b.user)
	require.ErrorContains(t, err, "successor cycle: step_B (b) → step_B (b)")

	ok := &pipeline.Bundle{Name: "diamond", Steps: []pipeline.Step{
		step("step_A", "a"), step("step_B", "b", "step_A"), step("step_C", "c", "step_A"), step("step_D", "d", "step_B", "step_C"),
	}}
	_, err = ok.Plan(b.user)
	require.NoError(t, err, "a diamond is not a cycle")
}
