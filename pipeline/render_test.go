package pipeline_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/") //nolint:gochecknoglobals // test flag

func TestRender(t *testing.T) {
	t.Parallel()

	input := `{
		"lo_code": "LO-1",
		"count": 3,
		"ratio": 0.5,
		"ok": true,
		"none": null,
		"item": {"title": "Photosynthesis", "tags": ["bio", "plants"], "meta": {"level": 2}},
		"html": "<b>&</b>",
		"input": {"nested": "inner"},
		"_split_index": 1,
		"_orchestrator_config_id": "cfg"
	}`

	tests := []struct {
		name        string
		givenTmpl   string
		givenInput  string
		givenStages map[string]string
		givenDocs   map[string]string
		givenTask   map[string]string
		expectOut   string
		expectErr   string
	}{
		{name: "PercentKey", givenTmpl: "LO %%lo_code%%.", givenInput: input, expectOut: "LO LO-1."},
		{name: "BraceKey", givenTmpl: "LO {{lo_code}}.", givenInput: input, expectOut: "LO LO-1."},
		{name: "BraceKeyWithSpaces", givenTmpl: "LO {{ lo_code }} {{\tlo_code\t}}", givenInput: input, expectOut: "LO LO-1 LO-1"}, //nolint:dupword // the key rendered twice
		{name: "PercentKeyWithSpaces", givenTmpl: "%% lo_code %%", givenInput: input, expectOut: "LO-1"},
		{name: "Number", givenTmpl: "%%count%%/%%ratio%%", givenInput: input, expectOut: "3/0.5"},
		{name: "Bool", givenTmpl: "%%ok%%", givenInput: input, expectOut: "true"},
		{name: "NullIsEmpty", givenTmpl: "[%%none%%]", givenInput: input, expectOut: "[]"},
		{name: "StringAsIs", givenTmpl: "%%html%%", givenInput: input, expectOut: "<b>&</b>"},
		{name: "DottedPath", givenTmpl: "{{item.title}} L%%item.meta.level%%", givenInput: input, expectOut: "Photosynthesis L2"},
		{name: "ArrayIndex", givenTmpl: "%%item.tags.1%%", givenInput: input, expectOut: "plants"},
		{
			name:       "ObjectIndented",
			givenTmpl:  "%%item.meta%%",
			givenInput: input,
			expectOut:  "{\n  \"level\": 2\n}",
		},
		{
			name:       "ArrayIndented",
			givenTmpl:  "%%item.tags%%",
			givenInput: input,
			expectOut:  "[\n  \"bio\",\n  \"plants\"\n]",
		},
		{
			name:       "WholeInputWithoutBookkeeping",
			givenTmpl:  "%%input_data%%",
			givenInput: `{"b": 1, "a": {"x": [1, 2]}, "_split_index": 0, "_parent_id": "p"}`,
			expectOut:  "{\n  \"b\": 1,\n  \"a\": {\n    \"x\": [\n      1,\n      2\n    ]\n  }\n}",
		},
		{name: "BookkeepingByName", givenTmpl: "%%_split_index%%", givenInput: input, expectOut: "1"},
		{name: "InputMemberWinsOverWholeInput", givenTmpl: "%%input.nested%%", givenInput: input, expectOut: "inner"},
		{name: "InputAliasForWholeInput", givenTmpl: "%%input.lo_code%%", givenInput: `{"lo_code": "X"}`, expectOut: "X"},
		{name: "InputDataMemberWins", givenTmpl: "%%input_data%%", givenInput: `{"input_data": "rows"}`, expectOut: "rows"},
		{name: "EmptyInput", givenTmpl: "[%%input_data%%]", givenInput: "", expectOut: "[{}]"},
		{name: "NonObjectInput", givenTmpl: "%%input_data%%", givenInput: `"text"`, expectOut: "text"},
		{name: "MissingPercentKey", givenTmpl: "a %%nope%% b", givenInput: input, expectErr: "%%nope%%"},
		{name: "MissingPercentPath", givenTmpl: "%%item.nope%%", givenInput: input, expectErr: "%%item.nope%%"},
		{name: "MissingPathThroughNull", givenTmpl: "%%none.x%%", givenInput: input, expectErr: "%%none.x%%"},
		{name: "IndexOutOfRange", givenTmpl: "%%item.tags.2%%", givenInput: input, expectErr: "%%item.tags.2%%"},
		{name: "UnknownBraceStays", givenTmpl: "Fill {{blank}} and {{ item.nope }}.", givenInput: input, expectOut: "Fill {{blank}} and {{ item.nope }}."},
		{name: "NotPlaceholders", givenTmpl: "50% and 30%, {{}}, %%%%, {{ a b }}, {x}, %%-x%%, {{a..b}}", givenInput: input, expectOut: "50% and 30%, {{}}, %%%%, {{ a b }}, {x}, %%-x%%, {{a..b}}"},
		{name: "TripleBraces", givenTmpl: "{{{lo_code}}}", givenInput: input, expectOut: "{LO-1}"},
		{name: "AdjacentPlaceholders", givenTmpl: "%%lo_code%%%%count%%", givenInput: input, expectOut: "LO-13"},
		{name: "MixedDelimitersDoNotMatch", givenTmpl: "%%lo_code}} {{lo_code%%", givenInput: input, expectOut: "%%lo_code}} {{lo_code%%"},
		{
			name:       "NoReScan",
			givenTmpl:  "%%a%% {{b}}",
			givenInput: `{"a": "%%b%% {{a}}", "b": "%%nope%%"}`,
			expectOut:  "%%b%% {{a}} %%nope%%",
		},
		{
			name:        "StageOutput",
			givenTmpl:   "{{p1}} / %%p1.result%%",
			givenInput:  `{}`,
			givenStages: map[string]string{"p1": `{"result": "md"}`},
			// A text stage's {"result": "<text>"} renders as its text.
			expectOut: "md / md",
		},
		{
			name:        "InputWinsOverStage",
			givenTmpl:   "%%p1%%",
			givenInput:  `{"p1": "from input"}`,
			givenStages: map[string]string{"p1": `"from stage"`},
			expectOut:   "from input",
		},
		{
			name:       "GlobalContextSorted",
			givenTmpl:  "%%GLOBAL_CONTEXT%%",
			givenDocs:  map[string]string{"b.md": "B text", "a.md": "A text"},
			givenInput: `{}`,
			expectOut:  "--- DOCUMENT: a.md ---\nA text\n--- END OF DOCUMENT ---\n\n--- DOCUMENT: b.md ---\nB text\n--- END OF DOCUMENT ---",
		},
		{name: "GlobalContextEmpty", givenTmpl: "[%%GLOBAL_CONTEXT%%]", givenInput: `{}`, expectOut: "[]"},
		{
			name:       "GlobalContextDocument",
			givenTmpl:  "{{GLOBAL_CONTEXT.a.md}}",
			givenDocs:  map[string]string{"a.md": "A text"},
			givenInput: `{}`,
			expectOut:  "A text",
		},
		{
			name:       "GlobalContextWinsOverInput",
			givenTmpl:  "[%%GLOBAL_CONTEXT%%]",
			givenInput: `{"GLOBAL_CONTEXT": "spoofed"}`,
			expectOut:  "[]",
		},
		{
			name:       "TaskFieldsLowestPrecedence",
			givenTmpl:  "%%batch_id%% %%lo_code%%",
			givenInput: `{"lo_code": "input"}`,
			givenTask:  map[string]string{"batch_id": `"b-1"`, "lo_code": `"task"`},
			expectOut:  "b-1 input",
		},
		{name: "InvalidInput", givenTmpl: "x", givenInput: `{"a":`, expectErr: "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			vars := pipeline.Vars{
				Input:         json.RawMessage(tt.givenInput),
				Stages:        rawMap(tt.givenStages),
				GlobalContext: tt.givenDocs,
				Task:          rawMap(tt.givenTask),
			}
			out, err := pipeline.Render(tt.givenTmpl, vars)
			if tt.expectErr != "" {
				require.ErrorContains(t, err, tt.expectErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.expectOut, out)
		})
	}
}

func TestRenderMissingVariableError(t *testing.T) {
	t.Parallel()

	_, err := pipeline.Render("x %%input.lo_code%% y %%other%%", pipeline.Vars{Input: json.RawMessage(`{}`)})

	var missing *pipeline.MissingVariableError
	require.ErrorAs(t, err, &missing)
	require.Equal(t, "input.lo_code", missing.Key)
	require.Contains(t, err.Error(), "input.lo_code")
}

func TestFormatGlobalContext(t *testing.T) {
	t.Parallel()

	require.Empty(t, pipeline.FormatGlobalContext(nil))
	require.Equal(t, "--- DOCUMENT: only ---\ntext\n--- END OF DOCUMENT ---",
		pipeline.FormatGlobalContext(map[string]string{"only": "text"}))
}

// goldenInputs are plausible task inputs for each fixture prompt, shaped
// like what the engine gives that stage (root row, 1:1 result, split item,
// merged outputs, join payload).
var goldenInputs = map[string]struct { //nolint:gochecknoglobals // test table
	input string
	docs  map[string]string
}{
	"orc-01-quiz-gen/extractor": {input: `{"syllabus": "Unit 3: photosynthesis, respiration, the carbon cycle."}`},
	"orc-01-quiz-gen/writer": {input: `{"concepts": ["Photosynthesis", "Respiration"], "item": "Photosynthesis",
		"_split_index": 0, "_split_total": 2}`},
	"orc-01-quiz-gen/optimizer": {input: `{"questions": [{"q": "What do plants make?", "options": ["Sugar", "Salt"], "answer": 0}]}`},
	"orc-02-lesson-plan/stage_a_mapper": {input: `{"batch_number": 1, "lo_count": 2,
		"topics": [{"lo_code": "BIO-7.1", "title": "Photosynthesis"}, {"lo_code": "BIO-7.2", "title": "Respiration"}]}`},
	"orc-02-lesson-plan/stage_b_designer": {input: `{"output_data": [{"topic_id": "BIO-7.1"}, {"topic_id": "BIO-7.2"}],
		"item": {"topic_id": "BIO-7.1", "bloom_levels": ["REMEMBER", "APPLY"], "prior_knowledge": ["cells"],
		"key_misconceptions": [{"error": "plants eat soil", "correction": "plants make sugar"}],
		"pedagogical_brief": "Start from a leaf."}, "_split_index": 0, "_split_total": 2}`},
	"orc-02-lesson-plan/stage_c_validator": {input: `{"output_data": [{"topic_id": "BIO-7.1", "activities": [
		{"type": "HOOK", "title": "Leaf in a jar", "duration": "5", "instructions": "Observe.", "materials": ["jar"]}]}]}`},
	"orc-05-social-media/stage_a_distiller": {input: `{"source": "Our new bike lock unlocks with your phone."}`},
	"orc-05-social-media/stage_b_adapter": {input: `{"output_data": [], "item": {"core_message": "Unlock with your phone",
		"usps": ["keyless"], "cta": "Pre-order", "tone": "Hype", "suggested_hashtags": ["#bike"]},
		"_split_index": 0, "_split_total": 1}`},
	"orc-09-code-review/stage_a_analyzer": {input: `{"language": "go", "code": "func f(m map[string]int) { go func() { m[\"a\"]++ }() }"}`},
	"orc-09-code-review/stage_b_refactor": {input: `{"output_data": [{"issue_type": "BUG", "severity": "HIGH",
		"line_range": "1", "description": "data race", "evidence": "unsynchronised map write", "recommendation_hint": "mutex"}]}`},
	"orc-09-code-review/stage_c_validator": {input: `{"output_data": [{"refactored_code": "func f() {}",
		"major_changes": ["removed goroutine"], "patterns_applied": [], "improvement_notes": "simpler"}]}`},
	"orc-10-lesson-plan-advanced/p1_final_product": {
		input: `{"curriculum": "Học phần\tBài\tTiêu đề\nHỌC PHẦN 9: Python cơ bản\t1\tLÀM QUEN VỚI PYTHON"}`,
		docs:  map[string]string{"style.md": "Viết ngắn gọn."},
	},
	"orc-10-lesson-plan-advanced/p2_lesson_products": {input: `{"curriculum": "HỌC PHẦN 9\t1\tLÀM QUEN VỚI PYTHON",
		"p1_final_product": {"result": "## Tổng hợp Sản phẩm\n### 1. Tên dự án cuối\nTrạm Thời Tiết"}}`},
	"orc-10-lesson-plan-advanced/p3_module_summary": {input: `{"curriculum": "HỌC PHẦN 9\t1\tLÀM QUEN VỚI PYTHON",
		"p1_final_product": {"result": "Trạm Thời Tiết"}, "p2_lesson_products": {"result": "### Bài 1: LED"}}`},
	"orc-10-lesson-plan-advanced/p4_detailed_lesson": {input: `{"curriculum": "HỌC PHẦN 9\t1\tLÀM QUEN VỚI PYTHON",
		"p1_final_product": {"result": "Trạm Thời Tiết"}, "p2_lesson_products": {"result": "### Bài 1: LED"},
		"p3_module_summary": {"result": "### Buổi 9.1"}}`},
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()

	prompts, err := filepath.Glob(filepath.Join("testdata", "bundles", "orc-*", "prompts", "*.md"))
	require.NoError(t, err)
	require.Len(t, prompts, len(goldenInputs), "every fixture prompt has a golden input and vice versa")

	for _, path := range prompts {
		bundle := filepath.Base(filepath.Dir(filepath.Dir(path)))
		name := bundle + "/" + strings.TrimSuffix(filepath.Base(path), ".md")
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			t.Parallel()

			given, ok := goldenInputs[name]
			require.True(t, ok, "no golden input for %s", name)
			tmpl, err := os.ReadFile(path)
			require.NoError(t, err)

			out, err := pipeline.Render(string(tmpl), pipeline.Vars{Input: json.RawMessage(given.input), GlobalContext: given.docs})
			require.NoError(t, err)
			require.NotContains(t, out, "%%", "every %%key%% was substituted")

			golden := filepath.Join("testdata", "render", bundle+"__"+filepath.Base(path)+".golden")
			if *updateGolden {
				require.NoError(t, os.WriteFile(golden, []byte(out), 0o600))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./pipeline -run TestRenderGolden -update to create it")
			require.Equal(t, string(want), out)
		})
	}
}

func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		"", "plain text", "%%a%%", "{{a}}", "{{ a.b.0 }}", "%% a %%", "%%%a%%%", "{{{a}}}", "50%% of {{x",
		"%%a.b%%{{c}}%%", "{{GLOBAL_CONTEXT}}", "%%input_data%%", "%%-a%%", "{{a..b}}", "\x00%%\xff%%",
	} {
		f.Add(seed, `{"a": {"b": ["%%a%%", 2]}, "c": "{{c}}"}`)
	}
	f.Fuzz(func(t *testing.T, tmpl, input string) {
		// With no variables, every {{key}} stays as written, so the output
		// equals the input unless a %%key%% is missing.
		out, err := pipeline.Render(tmpl, pipeline.Vars{})
		var missing *pipeline.MissingVariableError
		switch {
		case err == nil:
			// (input, input_data and GLOBAL_CONTEXT are always defined.)
			if !strings.Contains(tmpl, "input") && !strings.Contains(tmpl, "GLOBAL_CONTEXT") {
				require.Equal(t, tmpl, out)
			}
		case !errors.As(err, &missing):
			t.Fatalf("unexpected error %v", err)
		}

		// Text without any delimiter is returned unchanged whatever the vars.
		if !strings.Contains(tmpl, "%%") && !strings.Contains(tmpl, "{{") {
			out, err := pipeline.Render(tmpl, pipeline.Vars{Input: json.RawMessage(`{"a": "x"}`)})
			require.NoError(t, err)
			require.Equal(t, tmpl, out)
		}

		// Arbitrary input and documents never panic, and values are not
		// re-scanned (a value holding placeholders renders verbatim).
		_, _ = pipeline.Render(tmpl, pipeline.Vars{
			Input:         json.RawMessage(input),
			GlobalContext: map[string]string{"doc": input},
		})
		if utf8.ValidString(tmpl) {
			out, err = pipeline.Render("%%v%%", pipeline.Vars{Task: map[string]json.RawMessage{"v": mustJSON(t, tmpl)}})
			require.NoError(t, err)
			require.Equal(t, tmpl, out)
		}
	})
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func rawMap(m map[string]string) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = json.RawMessage(v)
	}
	return out
}

func ExampleRender() {
	vars := pipeline.Vars{
		Input:         json.RawMessage(`{"item": {"title": "Photosynthesis", "tags": ["bio"]}, "_split_index": 0}`),
		GlobalContext: map[string]string{"style.md": "Be brief."},
	}
	out, err := pipeline.Render("Topic: {{ item.title }}\nTags: %%item.tags%%\nBlank: {{answer}}\n%%GLOBAL_CONTEXT%%", vars)
	if err != nil {
		panic(err)
	}
	fmt.Println(out)

	_, err = pipeline.Render("%%lo_code%%", vars)
	fmt.Println(err)
	// Output:
	// Topic: Photosynthesis
	// Tags: [
	//   "bio"
	// ]
	// Blank: {{answer}}
	// --- DOCUMENT: style.md ---
	// Be brief.
	// --- END OF DOCUMENT ---
	// prompt placeholder %%lo_code%% has no value (not in the task's input_data, the stage outputs or GLOBAL_CONTEXT)
}
