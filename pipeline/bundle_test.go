package pipeline_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

var testOwner = uuid.MustParse("6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d") //nolint:gochecknoglobals // test constant

func loadFixture(t *testing.T, name string) *pipeline.Bundle {
	t.Helper()
	b, err := pipeline.LoadBundle(filepath.Join("testdata", "bundles", name))
	require.NoError(t, err)
	return b
}

func TestLoadBundleFixtures(t *testing.T) {
	t.Parallel()

	tests := []struct {
		givenDir   string
		expectRoot string
		expectKeys []string // in dependency order
	}{
		{givenDir: "orc-01-quiz-gen", expectRoot: "extractor", expectKeys: []string{"extractor", "writer", "optimizer"}},
		{givenDir: "orc-02-lesson-plan", expectRoot: "mapper", expectKeys: []string{"mapper", "designer", "validator"}},
		{givenDir: "orc-05-social-media", expectRoot: "distiller", expectKeys: []string{"distiller", "adapter"}},
		{givenDir: "orc-09-code-review", expectRoot: "auditor", expectKeys: []string{"auditor", "architect", "validator"}},
		{
			givenDir:   "orc-10-lesson-plan-advanced",
			expectRoot: "p1_final_product",
			expectKeys: []string{"p1_final_product", "p2_lesson_products", "p3_module_summary", "p4_detailed_lesson"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.givenDir, func(t *testing.T) {
			t.Parallel()

			b := loadFixture(t, tt.givenDir)
			plan, err := b.Plan(testOwner)
			require.NoError(t, err)

			require.Equal(t, tt.expectRoot, b.Root().StageKey)
			require.Equal(t, plan.Templates[0].ID, plan.RootTemplateID)
			var keys []string
			for _, tpl := range plan.Templates {
				keys = append(keys, tpl.StageKey)
				require.NotEmpty(t, strings.TrimSpace(tpl.Template), "stage %s has its prompt", tpl.StageKey)
				require.True(t, strings.HasPrefix(tpl.ID, plan.Config.ID.String()+"_"+tpl.StageKey+"_step_"), tpl.ID)
				require.Equal(t, plan.Config.ID.String(), tpl.OrganizationCode)
				require.True(t, tpl.IsActive)
				require.True(t, strings.HasPrefix(tpl.Name, "["+b.Name+"] "), tpl.Name)
				require.JSONEq(t, string(b.Steps[indexOfKey(b, tpl.StageKey)].AISettings), string(tpl.DefaultAISettings))
			}
			require.Equal(t, tt.expectKeys, keys)

			// The config row keeps the original steps and points each at its template.
			var steps []map[string]any
			require.NoError(t, json.Unmarshal(plan.Config.Steps, &steps))
			require.Len(t, steps, len(b.Steps))
			for i, s := range steps {
				var orig map[string]any
				require.NoError(t, json.Unmarshal(b.Steps[i].Raw, &orig))
				tplID, ok := s["prompt_template_id"].(string)
				require.True(t, ok)
				require.True(t, strings.HasPrefix(tplID, plan.Config.ID.String()+"_"+b.Steps[i].StageKey))
				delete(s, "prompt_template_id")
				require.Equal(t, orig, s)
			}
		})
	}
}

func indexOfKey(b *pipeline.Bundle, key string) int {
	for i, s := range b.Steps {
		if s.StageKey == key {
			return i
		}
	}
	return -1
}

func TestBundleORC02(t *testing.T) {
	t.Parallel()

	b := loadFixture(t, "orc-02-lesson-plan")
	plan, err := b.Plan(testOwner)
	require.NoError(t, err)
	require.Len(t, plan.Templates, 3)
	mapper, designer, validator := plan.Templates[0], plan.Templates[1], plan.Templates[2]

	require.Equal(t, "prompts/stage_a_mapper.md", b.Steps[0].PromptFile)
	require.Contains(t, mapper.Template, "%%batch_number%%")
	require.Equal(t, "[ORC-02: Smart Lesson Plan Builder] Pedagogical Mapper", mapper.Name)
	require.Equal(t, "Stage: mapper | Task: pedagogical_mapping", mapper.Description)

	require.Equal(t, pipeline.StageConfig{Cardinality: "1:1", DependsOn: []string{}, TaskType: "pedagogical_mapping"}, mapper.StageConfig)
	require.Equal(t, []string{designer.ID}, mapper.NextStageTemplateIDs)

	require.Equal(t, "1:N", designer.StageConfig.Cardinality)
	require.Equal(t, "output_data", designer.StageConfig.SplitPath)
	require.Equal(t, []string{"mapper"}, designer.StageConfig.DependsOn)
	require.Equal(t, []string{validator.ID}, designer.NextStageTemplateIDs)

	require.Equal(t, "N:1", validator.StageConfig.Cardinality)
	require.Equal(t, []string{"designer"}, validator.StageConfig.DependsOn)
	require.Empty(t, validator.NextStageTemplateIDs)
	require.NotNil(t, validator.NextStageTemplateIDs, "an empty list, not null")

	// contract.input → input_schema
	require.Equal(t, &pipeline.InputSchema{
		RequiredFields: []string{"input_data"},
		OptionalFields: []string{},
		Delimiters:     pipeline.Delimiters{Start: "%%", End: "%%"},
	}, mapper.InputSchema)
	require.Nil(t, designer.InputSchema)

	// The stage_config JSON the SQL API reads.
	raw, err := json.Marshal(designer.StageConfig)
	require.NoError(t, err)
	require.JSONEq(t, `{"cardinality":"1:N","split_path":"output_data","dependsOn":["mapper"],"task_type":"activity_design"}`, string(raw))
}

func TestBundleORC09PromptsByStepLetter(t *testing.T) {
	t.Parallel()

	b := loadFixture(t, "orc-09-code-review")
	var files []string
	for _, s := range b.Steps {
		files = append(files, s.PromptFile)
	}
	require.Equal(t, []string{"prompts/stage_a_analyzer.md", "prompts/stage_b_refactor.md", "prompts/stage_c_validator.md"}, files)
}

func TestBundleORC10Join(t *testing.T) {
	t.Parallel()

	b := loadFixture(t, "orc-10-lesson-plan-advanced")
	plan, err := b.Plan(testOwner)
	require.NoError(t, err)
	byKey := map[string]pipeline.TemplateRow{}
	for _, tpl := range plan.Templates {
		byKey[tpl.StageKey] = tpl
	}
	require.Equal(t, []string{"p1_final_product", "p2_lesson_products"}, byKey["p3_module_summary"].StageConfig.DependsOn)
	require.Equal(t, []string{"p1_final_product", "p2_lesson_products", "p3_module_summary"},
		byKey["p4_detailed_lesson"].StageConfig.DependsOn)
	require.Equal(t, []string{byKey["p2_lesson_products"].ID, byKey["p3_module_summary"].ID, byKey["p4_detailed_lesson"].ID},
		byKey["p1_final_product"].NextStageTemplateIDs)
	require.Equal(t, []string{byKey["p4_detailed_lesson"].ID}, byKey["p3_module_summary"].NextStageTemplateIDs)
}

func TestPlanStableIDs(t *testing.T) {
	t.Parallel()

	first, err := loadFixture(t, "orc-02-lesson-plan").Plan(testOwner)
	require.NoError(t, err)
	again, err := loadFixture(t, "orc-02-lesson-plan").Plan(testOwner)
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, pipeline.ConfigID(testOwner, "ORC-02: Smart Lesson Plan Builder"), first.Config.ID)
	require.Equal(t, uuid.Version(5), first.Config.ID.Version())

	other, err := loadFixture(t, "orc-02-lesson-plan").Plan(uuid.New())
	require.NoError(t, err)
	require.NotEqual(t, first.Config.ID, other.Config.ID)
}

func TestParseBundleBroken(t *testing.T) {
	t.Parallel()

	prompts := map[string]string{"a.md": "A %%input_data%%", "b.md": "B", "c.md": "C"}
	tests := []struct {
		name          string
		givenJSON     string
		givenPrompts  map[string]string // nil: a.md, b.md, c.md
		expectProblem []string
	}{
		{
			name:          "NotJSON",
			givenJSON:     "{\n  \"steps\": [\n}",
			expectProblem: []string{"orchestration.json is not valid: line 3"},
		},
		{
			name:          "WrongType",
			givenJSON:     `{"orchestratorName": "X", "steps": {}}`,
			expectProblem: []string{"orchestration.json is not valid: steps must be"},
		},
		{
			name:          "NoNameNoSteps",
			givenJSON:     `{"steps": []}`,
			expectProblem: []string{"orchestratorName is required", "steps must list at least one step"},
		},
		{
			name: "DuplicateIDsAndKeys",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_A","stage_key":"b","cardinality":"1:1","dependsOn":["step_A"]}`,
				`{"id":"step_C","stage_key":"a","cardinality":"1:1","dependsOn":["step_A"]}`),
			expectProblem: []string{
				"steps[0] and steps[1] have the same id step_A",
				"steps step_A (a) and step_C (a) have the same stage_key a",
				"step step_A (b) depends on itself",
			},
		},
		{
			name: "UnknownDependency",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":["step_Z", "step_A", "step_A"]}`),
			expectProblem: []string{
				`step step_B (b) depends on "step_Z", which is not a step id`,
				"step step_B (b) lists dependency step_A twice",
			},
		},
		{
			name: "Cycle",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":["step_A","step_C"]}`,
				`{"id":"step_C","stage_key":"c","cardinality":"1:1","dependsOn":["step_B"]}`),
			expectProblem: []string{"dependency cycle: step_C → step_B → step_C"},
		},
		{
			name: "SelfDependency",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":["step_B"]}`),
			expectProblem: []string{"step step_B (b) depends on itself"},
		},
		{
			name: "NoRoot",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":["step_B"]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":["step_A"]}`),
			expectProblem: []string{"dependency cycle: ", "no root step"},
		},
		{
			name: "SeveralRoots",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":[]}`),
			expectProblem: []string{"several root steps (step_A (a), step_B (b))"},
		},
		{
			name: "SplitPathRequired",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"one_to_many","dependsOn":["step_A"]}`),
			expectProblem: []string{"step step_B: split_path is required for cardinality 1:N"},
		},
		{
			name: "BadFields",
			givenJSON: steps(`{"id":"step A","stage_key":"A-1","cardinality":"1:2","dependsOn":[],
				"split_mode":"custom","batch_size":0,"batch_grouping":"all",
				"ai_settings":{"model_id":"","generationConfig":{"temperature":3,"maxOutputTokens":0.5}}}`,
				`{"stage_key":"b","dependsOn":["step A"]}`),
			expectProblem: []string{
				`steps[0]: id "step A" must be`,
				`steps[0]: stage_key "A-1" must match ^[a-z][a-z0-9_]*$`,
				`steps[0]: cardinality "1:2" must be one of 1:1, 1:N, N:1, one_to_one, one_to_many, many_to_one`,
				`steps[0]: split_mode "custom" must be per_item or per_batch`,
				"steps[0]: batch_size must be at least 1",
				`steps[0]: batch_grouping "all" must be batch, global or isolated`,
				"steps[0]: ai_settings.model_id must not be empty",
				"steps[0]: ai_settings.generationConfig.temperature 3 must be between 0 and 2",
				"steps[0]: ai_settings.generationConfig.maxOutputTokens 0.5 must be a positive integer",
				"steps[1]: id is required",
				"steps[1]: cardinality is required",
			},
		},
		{
			name: "MissingPrompt",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_Q","stage_key":"q","cardinality":"1:1","dependsOn":["step_A"]}`),
			expectProblem: []string{"step step_Q: no prompt for stage q (looked for prompts/q.md or prompts/stage_?_q.md or prompts/stage_q_*.md)"},
		},
		{
			name: "EmptyPrompt",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"b","cardinality":"1:1","dependsOn":["step_A"]}`),
			givenPrompts:  map[string]string{"a.md": "A", "b.md": " \n"},
			expectProblem: []string{"step step_B: prompt prompts/b.md is empty"},
		},
		{
			name: "AmbiguousPrompt",
			givenJSON: steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[]}`,
				`{"id":"step_B","stage_key":"x","cardinality":"1:1","dependsOn":["step_A"]}`),
			givenPrompts:  map[string]string{"a.md": "A", "stage_b_one.md": "1", "stage_b_two.md": "2"},
			expectProblem: []string{"step step_B: several prompt files could be stage x's: prompts/stage_b_one.md, prompts/stage_b_two.md"},
		},
		{
			name:          "BadContract",
			givenJSON:     steps(`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[],"contract":{"input":{"fields":[3]},"output":{"schema":"x"}}}`),
			expectProblem: []string{"step step_A: contract.input.fields[0] must be a name", "step step_A: contract.output.schema must be a JSON Schema object"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			fsys := fstest.MapFS{"orchestration.json": {Data: []byte(tt.givenJSON)}}
			for name, text := range cmpMap(tt.givenPrompts, prompts) {
				fsys["prompts/"+name] = &fstest.MapFile{Data: []byte(text)}
			}

			_, err := pipeline.ParseBundle(fsys, "broken")

			var be *pipeline.BundleError
			require.ErrorAs(t, err, &be)
			require.Equal(t, "broken", be.Dir)
			require.Len(t, be.Problems, len(tt.expectProblem), "problems: %q", be.Problems)
			for i, want := range tt.expectProblem {
				require.Contains(t, be.Problems[i], want)
				require.Contains(t, err.Error(), be.Problems[i])
			}
		})
	}
}

func TestLoadBundleFromDisk(t *testing.T) {
	t.Parallel()

	_, err := pipeline.LoadBundle(filepath.Join("testdata", "bundles", "broken-cycle"))
	var be *pipeline.BundleError
	require.ErrorAs(t, err, &be)
	require.Equal(t, []string{
		"step step_D: no prompt for stage publisher (looked for prompts/publisher.md or prompts/stage_?_publisher.md or prompts/stage_d_*.md)",
		"dependency cycle: step_C → step_B → step_C",
	}, be.Problems)
	require.Contains(t, err.Error(), "invalid bundle testdata/bundles/broken-cycle: 2 problems")

	_, err = pipeline.LoadBundle(filepath.Join("testdata", "bundles", "does-not-exist"))
	require.Error(t, err)
	require.NotErrorAs(t, err, &be)
}

func TestParseBundleReturnAlongWithAndContract(t *testing.T) {
	t.Parallel()

	fsys := fstest.MapFS{
		"orchestration.json": {Data: []byte(steps(
			`{"id":"step_A","stage_key":"a","cardinality":"1:1","dependsOn":[],"requires_approval":true,
			  "contract":{"input":{"fields":["topic",{"name":"level","required":false}]},
			              "output":{"schema":{"type":"object","properties":{"output_data":{"type":"array"}}}}}}`,
			`{"id":"step_B","stage_key":"b","cardinality":"N:1","dependsOn":["step_A"],"merge_path":"output_data",
			  "batch_grouping":"global","return-along-with":["lo_code"],"contract":{"output":{"schema":[{"name":"x"}]}}}`))},
		"prompts/a.md": {Data: []byte("A")},
		"prompts/b.md": {Data: []byte("B")},
	}
	b, err := pipeline.ParseBundle(fsys, "")
	require.NoError(t, err)
	plan, err := b.Plan(testOwner)
	require.NoError(t, err)
	a, bb := plan.Templates[0], plan.Templates[1]

	require.True(t, a.RequiresApproval)
	require.Equal(t, &pipeline.InputSchema{
		RequiredFields: []string{"topic"}, OptionalFields: []string{"level"},
		Delimiters: pipeline.Delimiters{Start: "{{", End: "}}"},
	}, a.InputSchema)
	require.JSONEq(t, `{"type":"object","properties":{"output_data":{"type":"array"}}}`, string(a.OutputSchema))
	require.JSONEq(t, `{}`, string(a.DefaultAISettings))

	require.Nil(t, bb.OutputSchema, "a legacy field list is not a JSON Schema")
	require.Equal(t, []string{"lo_code"}, bb.StageConfig.ReturnAlongWith)
	require.Equal(t, "global", bb.StageConfig.BatchGrouping)
	require.Equal(t, "output_data", bb.StageConfig.MergePath)
}

func steps(s ...string) string {
	return `{"_version":"1.0.0","orchestratorName":"Broken","steps":[` + strings.Join(s, ",") + `]}`
}

func cmpMap(a, b map[string]string) map[string]string {
	if a != nil {
		return a
	}
	return b
}

func ExampleLoadBundle() {
	b, err := pipeline.LoadBundle(filepath.Join("testdata", "bundles", "orc-02-lesson-plan"))
	if err != nil {
		panic(err)
	}
	plan, err := b.Plan(uuid.MustParse("00000000-0000-0000-0000-000000000001"))
	if err != nil {
		panic(err)
	}
	for _, tpl := range plan.Templates {
		fmt.Println(tpl.StageKey, tpl.StageConfig.Cardinality, tpl.StageConfig.DependsOn, len(tpl.NextStageTemplateIDs))
	}
	// Output:
	// mapper 1:1 [] 1
	// designer 1:N [mapper] 1
	// validator N:1 [designer] 0
}
