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
