package jsongen

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	schema := []byte(`{"type":"object","properties":{"n":{"type":"integer","minimum":3,"maximum":3},"s":{"enum":["x","y","z"]},"l":{"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":2}},"required":["n"]}`)
	a, err := GenerateJSON(schema, 42)
	require.NoError(t, err)
	b, err := GenerateJSON(schema, 42)
	require.NoError(t, err)
	require.JSONEq(t, string(a), string(b))
	var v map[string]any
	require.NoError(t, json.Unmarshal(a, &v))
	require.InDelta(t, 3, v["n"], 0)
	require.Len(t, v["l"], 2)
	require.Equal(t, Text(7, 5), Text(7, 5)) //nolint:testifylint // two calls: the output is deterministic
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		givenSchema string
		expectError string
	}{
		{name: "FalseSchema", givenSchema: `false`, expectError: "no value can match"},
		{name: "ExternalRef", givenSchema: `{"$ref":"other.json"}`, expectError: "only local references"},
		{name: "MissingRef", givenSchema: `{"$ref":"#/$defs/none"}`, expectError: "unresolvable"},
		{name: "SelfRef", givenSchema: `{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, expectError: "deeper than"},
		{name: "NotJSON", givenSchema: `{`, expectError: "decoding schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := GenerateJSON([]byte(tt.givenSchema), 1)
			require.ErrorContains(t, err, tt.expectError)
		})
	}
}
