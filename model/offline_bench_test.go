package model

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// BenchmarkOfflineGenerate is one offline answer to a quiz schema, its
// schema decoded once by the provider (go test -bench OfflineGenerate ./model).
func BenchmarkOfflineGenerate(b *testing.B) {
	off, err := NewOffline(&Config{})
	require.NoError(b, err)
	req := Request{TaskID: uuid.MustParse("0b7e6f1c-5d2a-4c3b-9e8f-1a2b3c4d5e6f"), Prompt: "p", OutputSchema: []byte(quizSchema)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := off.Generate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFinish is the validation of one model answer: the noop schema
// of the bench's throughput-noop, and the quiz schema.
func BenchmarkFinish(b *testing.B) {
	for name, c := range map[string]struct{ schema, text string }{
		"noop": {`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`, `{"ok": true}`},
		"quiz": {quizSchema, quizAnswer},
	} {
		b.Run(name, func(b *testing.B) {
			v := NewValidator()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Finish(c.text, []byte(c.schema)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// quizAnswer is an answer that matches quizSchema, as a model writes it.
const quizAnswer = "```json\n" + `{
  "title": "Photosynthesis",
  "difficulty": "medium",
  "questions": [
    {"stem": "What gas do plants take in?", "options": ["Oxygen", "Carbon dioxide", "Nitrogen", "Helium"], "answer_index": 1, "explanation": "They fix CO2."},
    {"stem": "Where does it happen?", "options": ["Roots", "Chloroplasts", "Stem", "Flowers"], "answer_index": 1, "explanation": null},
    {"stem": "What is made?", "options": ["Glucose", "Salt", "Iron", "Water"], "answer_index": 0}
  ]
}` + "\n```"

// TestFinishValidatesWithoutCopying: Finish validates the answer it decoded
// (numbers kept as json.Number) without Validate's copy, with the same
// verdict and message as Validate gives for the same value.
func TestFinishValidatesWithoutCopying(t *testing.T) {
	t.Parallel()
	v := NewValidator()
	for answer, valid := range map[string]bool{
		quizAnswer: true,
		`{"title": "t", "difficulty": "hard", "questions": [{"stem": "s", "options": ["a", "b", "c", "d"], "answer_index": 3.0}, {"stem": "s", "options": ["a", "b", "c", "d"], "answer_index": 0}]}`: true,
		`{"title": "t", "difficulty": "hard", "questions": [{"stem": "s", "options": ["a", "b", "c", "d"], "answer_index": 1e0}, {"stem": "s", "options": ["a", "b", "c", "d"], "answer_index": 4}]}`: false,
		`{"title": "t", "difficulty": "easy", "questions": [{"stem": "s", "options": ["a", "b", "c", "d"], "answer_index": 1.5}, {"stem": 1, "options": [], "answer_index": -0}]}`:                    false,
		`{"title": null, "difficulty": "impossible", "questions": []}`: false,
		`[1, 2.50, 1e400]`: false,
	} {
		dec := json.NewDecoder(strings.NewReader(StripFence(answer)))
		dec.UseNumber()
		var value any
		require.NoError(t, dec.Decode(&value))
		want := v.Validate([]byte(quizSchema), value)
		got := v.validateNumbers([]byte(quizSchema), value)
		require.Equal(t, valid, got == nil, answer)
		if want == nil {
			require.NoError(t, got, answer)
			_, err := v.Finish(answer, []byte(quizSchema))
			require.NoError(t, err, answer)
			continue
		}
		require.Error(t, got, answer)
		// The violations of one value come in the order the validator
		// walks an object's members (a map's), so they are compared as a set.
		require.ElementsMatch(t, violations(describeValidation(want)), violations(describeValidation(got)), answer)
		_, err := v.Finish(answer, []byte(quizSchema))
		require.Error(t, err, answer)
		require.ElementsMatch(t, violations(describeValidation(want)), violations(err.Error()), answer)
	}
}

// violations splits describeValidation's message into its violations.
func violations(msg string) []string {
	return strings.Split(strings.TrimPrefix(msg, "output does not match output_schema: "), "; ")
}

// TestValidationMessageIsStable: an answer with several violations, nested
// under anyOf and array items, gets the same message every time, its
// violations in order of their text with each one's causes under it (the
// validator walks an object's members in a map's order).
func TestValidationMessageIsStable(t *testing.T) {
	t.Parallel()
	schema := []byte(`{"type": "object", "properties": {
		"a": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}]},
		"b": {"type": "string"},
		"c": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string"}, "q": {"type": "string"}}}}}}`)
	answer := `{"c": [{"q": 2, "p": 1}], "b": 1, "a": {"y": "no", "x": "no"}}`
	want := "output does not match output_schema: - at '/a': 'anyOf' failed;   - at '/a': got object, want string;   " +
		"- at '/a': validation failed;     - at '/a/x': got string, want integer;     - at '/a/y': got string, want integer; " +
		"- at '/b': got number, want string; - at '/c/0': validation failed;   - at '/c/0/p': got number, want string;   " +
		"- at '/c/0/q': got number, want string"
	for range 30 {
		_, err := NewValidator().Finish(answer, schema)
		require.EqualError(t, err, want)
	}
}
