package pipeline_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

// claimShape is claim_tasks' compact result in the runner's types, as a
// reader outside the package decodes it.
type claimShape struct {
	Tasks     []pipeline.Task              `json:"tasks"`
	Templates map[string]pipeline.Template `json:"templates"`
	Batches   map[uuid.UUID]pipeline.Batch `json:"batches"`
	After     *struct {
		RunAfter time.Time `json:"run_after"`
		ID       uuid.UUID `json:"id"`
	} `json:"after"`
}

// TestClaimDecodesAsEncodingJSON: the runner decodes its claims with the v1
// API of the module that mirrors encoding/json/v2. A real claim, with the
// values a tenant's rows can hold (nulls, escapes, non-ASCII text, numbers
// beyond float64, nested documents, every optional column set), must come out
// of Runner.Claim exactly as encoding/json decodes the same result.
func TestClaimDecodesAsEncodingJSON(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	p := "cd-" + uuid.NewString()[:8] + "-"
	b.templates(ctx, t, b.user, stage{id: p + "A", key: "a", prompt: "FAKE echo {{x}} \"quoted\" \\ é 😀 \u2028", cfg: map[string]any{"cardinality": "1:1", "nested": map[string]any{"k": []any{1, "two", nil, true}}}})
	_, err := b.pool.Exec(ctx, `update public.prompt_templates set name = null, system_instruction = E'line\n\ttab \\u0000-free "q"',
		output_schema = '{"type":"object","properties":{"value":{"type":"string"}}}', default_ai_settings = '{"model":"gemini-2.5-flash","temperature":0.25}'
		where id = $1`, p+"A")
	require.NoError(t, err)
	batch := b.launch(ctx, t, b.user, p+"A",
		map[string]any{"x": 1},
		map[string]any{"x": "é 😀 \u2028 \"q\" \\ </script>", "deep": map[string]any{"a": []any{1.5, json.Number("-0.0"), 1e300, "", nil, map[string]any{}}}},
		map[string]any{"x": json.Number("123456789012345678901234567890.5e-3")})
	// A task with every optional column the claim returns set.
	_, err = b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, prompt_template_id, batch_id,
		lo_code, sequence, requires_approval, extra, retry_count, step_number)
		values ('générique', 'plan', '{"x": [{"y": null}], "big": 1e400}', $1, 'a', $2, $3, 'LO-ü-1', 42, true,
		'{"ai_settings": {"temperature": 1}, "reviewer_notes": "fix \"this\"", "parent_stage_key": null}', 2, 7)`, b.user, p+"A", batch)
	require.NoError(t, err)
	id, _ := claimsIdentity{}.Identity(ctx, b.user)

	// The claim's result as the database sends it, decoded by encoding/json.
	var raw json.RawMessage
	require.NoError(t, b.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": p, "p_limit": 10, "p_compact": true}, &raw))
	var want claimShape
	require.NoError(t, json.Unmarshal(raw, &want))
	require.Len(t, want.Tasks, 4)
	for _, tk := range want.Tasks {
		require.NoError(t, b.db.RPC(ctx, id, "release_task", map[string]any{"p_task_id": tk.ID, "p_worker": p}, nil))
	}

	// The same tasks claimed again by the runner, through the transport.
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: p}, b.db, b.gen)
	got, err := r.Claim(ctx, id, 10, nil)
	require.NoError(t, err)
	require.Len(t, got, len(want.Tasks))
	byID := map[uuid.UUID]pipeline.Claimed{}
	for _, c := range got {
		byID[c.Task.ID] = c
	}
	for _, w := range want.Tasks {
		c, ok := byID[w.ID]
		require.True(t, ok, "task %s claimed again", w.ID)
		require.Equal(t, w, c.Task)
		require.NotNil(t, c.Template)
		wt := want.Templates[*w.PromptTemplateID]
		require.Equal(t, templateView(&wt), templateView(c.Template))
		require.NotNil(t, c.Batch)
		wb := want.Batches[*w.BatchID]
		require.Equal(t, batchView(&wb), batchView(c.Batch))
	}
	// The odd values were in the result, so the comparison above covered them.
	require.Contains(t, string(raw), strings.Repeat("0", 400), "a number beyond float64")
	require.Contains(t, string(raw), "é 😀 \u2028 \\\"q\\\" \\\\ </script>", "text to escape")
	require.Contains(t, *want.Templates[p+"A"].SystemInstruction, "\n\ttab")
}

// batchView is a batch's exported fields (the runner also keeps its
// documents, decoded once per claim, on a claimed batch).
func batchView(b *pipeline.Batch) []any {
	return []any{b.ID, b.Name, b.Status, b.GlobalContext}
}

// templateView is a template's exported fields (the runner also keeps
// unexported state of its own on a claimed template).
func templateView(t *pipeline.Template) []any {
	return []any{
		t.ID, t.Name, t.Template, t.StageKey, string(t.OutputSchema), string(t.DefaultAISettings),
		string(t.StageConfig), t.SystemInstruction, t.RequiresApproval, t.UserID,
	}
}

// FuzzDecodeClaimMatchesEncodingJSON: the runner decodes claims with jsonv1
// (the v1 API of the module that mirrors encoding/json/v2). On any input it
// must agree with encoding/json: the same values when both accept it, and a
// refusal when encoding/json refuses.
func FuzzDecodeClaimMatchesEncodingJSON(f *testing.F) {
	f.Add(claimPayload(2))
	for _, seed := range []string{
		`{"tasks":{"id":["8134f82e-98d7-4a9f-a360-412d48c73866"],"batch_id":[null],"stage_key":["é 😀 \u2028 \"q\" \\"],"input_data":[{"a":[1,2.5e3,null,1e400]}],"extra":[null],"sequence":[null],"attempts":[-0],"requires_approval":[true]}}`,
		`{"tasks":{"id":[],"user_id":null,"input_data":[null,{}]}}`, `{"tasks":[]}`,
		`{"templates":{"p3":{"id":"p3","name":null,"output_schema":[],"requires_approval":false,"user_id":"8134f82e-98d7-4a9f-a360-412d48c73866"}},"batches":{"8134f82e-98d7-4a9f-a360-412d48c73866":{"name":"b","global_context":{}}}}`,
		`{"after":{"run_after":"2026-12-06T05:00:00.123456+00:00","id":"8134f82e-98d7-4a9f-a360-412d48c73866"}}`,
		`{"TASKS":{"ID":["8134f82e-98d7-4a9f-a360-412d48c73866"],"Attempts":[1],"attempts":[2]},"tasks":null}`,
		`{"tasks":{"attempts":[1.5]}}`, `{"tasks":{"sequence":["1"]}}`, `{"tasks":{"id":["not-a-uuid"]}}`,
		`{"batches":{"x":{}}}`, `{"after":{"run_after":"yesterday"}}`, `{"tasks":{"input_data":[nul]}}`,
		`{"tasks":{"stage_key":["\xff\xfe"]}}`, `{"tasks":{"stage_key":["\ud800"]}}`, `[1,2]`, `"s"`, `{}  `, `{} {}`, `{"tasks":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || string(data) == "null" {
			return // no result: the runner decodes nothing
		}
		var want, got pipeline.ClaimResult
		wantErr := json.Unmarshal(data, &want)
		gotErr := pipeline.DecodeClaim(data, &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json says %v, the runner %v", data, wantErr, gotErr)
		}
		// encoding/json goes on after a mismatched type and fills what it
		// can, so the values are compared when both accept the input.
		if wantErr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json gives %#v, the runner %#v", data, want, got)
		}
		// Whatever the columns hold, the runner makes a task of each index
		// or refuses them: no panic, no task made of another's values.
		if tasks, err := got.TasksForTest(); err == nil && len(tasks) != len(got.Tasks.ID) {
			t.Fatalf("%q: %d tasks of %d ids", data, len(tasks), len(got.Tasks.ID))
		}
	})
}

// TestClaimColumnsMakeTasks: the claim's columns become one task per index,
// leased (status processing); columns of different lengths are refused,
// whichever column is short.
func TestClaimColumnsMakeTasks(t *testing.T) {
	t.Parallel()
	var c pipeline.ClaimResult
	require.NoError(t, pipeline.DecodeClaim(claimPayload(3), &c))
	tasks, err := c.TasksForTest()
	require.NoError(t, err)
	require.Len(t, tasks, 3)
	for i, tk := range tasks {
		require.Equal(t, c.Tasks.ID[i], tk.ID)
		require.Equal(t, "processing", tk.Status)
		require.Equal(t, i, *tk.Sequence)
		require.JSONEq(t, fmt.Sprintf(`{"n":%d,"item":3,"nested":{"a":[1,2,3],"b":"some text here"}}`, i), string(tk.InputData))
	}
	columns := reflect.ValueOf(&c.Tasks).Elem()
	for i := range columns.NumField() {
		var short pipeline.ClaimResult
		require.NoError(t, pipeline.DecodeClaim(claimPayload(3), &short))
		f := reflect.ValueOf(&short.Tasks).Elem().Field(i)
		f.Set(f.Slice(0, 2))
		_, err := short.TasksForTest()
		require.ErrorContains(t, err, "the claim's columns have", "column %s short", columns.Type().Field(i).Name)
	}
}

// BenchmarkDecodeClaim decodes a compact claim of 100 tasks, as the engine
// does for every claim: with encoding/json, and as the runner does.
func BenchmarkDecodeClaim(b *testing.B) {
	payload := claimPayload(100)
	for _, d := range []struct {
		name string
		fn   func([]byte, *pipeline.ClaimResult) error
	}{
		{"encoding_json", func(p []byte, out *pipeline.ClaimResult) error { return json.Unmarshal(p, out) }},
		{"runner_jsonv1", pipeline.DecodeClaim},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var out pipeline.ClaimResult
				if err := d.fn(payload, &out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/task")
		})
	}
}

// claimPayload is a compact claim of n tasks of one template and batch, in
// columns (p_columns), with the columns and sizes of the bench's pipeline
// tasks.
func claimPayload(n int) []byte {
	var sb strings.Builder
	user, batch := uuid.New(), uuid.New()
	column := func(name string, value func(i int) string) {
		fmt.Fprintf(&sb, `%q:[`, name)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(value(i))
		}
		sb.WriteString("]")
	}
	quoted := func(v any) func(int) string { return func(int) string { return fmt.Sprintf(`"%s"`, v) } }
	constant := func(v string) func(int) string { return func(int) string { return v } }
	newID := func(int) string { return `"` + uuid.NewString() + `"` }
	sb.WriteString(`{"tasks":{`)
	for i, c := range []struct {
		name  string
		value func(int) string
	}{
		{"id", newID},
		{"user_id", quoted(user)},
		{"batch_id", quoted(batch)},
		{"launch_id", newID},
		{"stage_key", quoted("p3")},
		{"task_type", quoted("p3")},
		{"input_data", func(i int) string {
			return fmt.Sprintf(`{"n":%d,"item":3,"nested":{"a":[1,2,3],"b":"some text here"}}`, i)
		}},
		{"extra", func(int) string { return `{"parent_stage_key":"p2","parent_task_id":"` + uuid.NewString() + `"}` }},
		{"attempts", constant("1")},
		{"retry_count", constant("0")},
		{"step_number", constant("3")},
		{"lo_code", constant("null")},
		{"sequence", strconv.Itoa},
		{"prompt_template_id", quoted("p3")},
		{"requires_approval", constant("false")},
		{"tier_source", constant("null")},
	} {
		if i > 0 {
			sb.WriteByte(',')
		}
		column(c.name, c.value)
	}
	fmt.Fprintf(&sb, `},"templates":{"p3":{"id":"p3","name":"Stage","template":"Item %%%%input.item%%%%.","stage_key":"p3",`+
		`"output_schema":{"type":"object","properties":{"ok":{"type":"boolean"}}},"default_ai_settings":null,"stage_config":{"cardinality":"1:N"},`+
		`"system_instruction":null,"requires_approval":null,"user_id":"%s"}},"batches":{"%s":{"id":"%s","name":"b","status":"processing","global_context":{}}},`+
		`"after":{"run_after":"2026-12-06T05:00:00.123456+00:00","id":"%s"}}`, user, batch, batch, uuid.New())
	return []byte(sb.String())
}

// FuzzDecodeOutcomesMatchesEncodingJSON: the completer decodes
// complete_tasks' results with jsonv1. On any input it must agree with
// encoding/json: the same outcomes when both accept it, and a refusal when
// encoding/json refuses (the completer then writes each completion alone).
func FuzzDecodeOutcomesMatchesEncodingJSON(f *testing.F) {
	f.Add(outcomesPayload(3))
	for _, seed := range []string{
		`[{"status":"completed","created":2,"waiting":0},{"status":"duplicate"},{"error":"deadlock detected","code":"40P01"}]`,
		`[{"status":null,"code":""},{"STATUS":"failed","Error":"é 😀 \u2028 \"q\" \\"}]`, `[{"status":1}]`, `[{"status":"a"},[]]`,
		`[]`, `null`, `{}`, `[{}] [{}]`, `[{"status":"\ud800"}]`, `[{"status":"\xff"}]`, `[{"status":"a","status":"b"}]`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want, got []pipeline.ItemOutcome
		wantErr := json.Unmarshal(data, &want)
		gotErr := pipeline.DecodeOutcomes(data, &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json says %v, the completer %v", data, wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json gives %#v, the completer %#v", data, want, got)
		}
	})
}

// BenchmarkDecodeOutcomes decodes complete_tasks' result for 100 leaves, as
// the completer does for every group: before (raw items, then each with
// encoding/json) and now.
func BenchmarkDecodeOutcomes(b *testing.B) {
	payload := outcomesPayload(100)
	b.Run("raw_items_encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var raw []json.RawMessage
			if err := json.Unmarshal(payload, &raw); err != nil {
				b.Fatal(err)
			}
			for _, r := range raw {
				var o pipeline.ItemOutcome
				if err := json.Unmarshal(r, &o); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/item")
	})
	b.Run("completer_jsonv1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out []pipeline.ItemOutcome
			if err := pipeline.DecodeOutcomes(payload, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1000, "µs/item")
	})
}

// outcomesPayload is complete_tasks' result for n leaves, as the database
// prints it.
func outcomesPayload(n int) []byte {
	return []byte("[" + strings.TrimSuffix(strings.Repeat(`{"status": "completed", "created": 0, "waiting": 0}, `, n), ", ") + "]")
}
