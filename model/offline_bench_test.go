package model

import (
	"context"
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
