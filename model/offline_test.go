package model

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model/jsongen"
)

// fixtureSchemas reads the output formats of the sample pipelines' prompts
// (copied from the shared fixtures into testdata/orchable) and turns each
// example into the JSON Schema the Designer would write for it. Prompts with
// no JSON output format are text stages (nil schema).
func fixtureSchemas(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	files, err := filepath.Glob("testdata/orchable/*/prompts/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	fenced := regexp.MustCompile("(?s)```json\\s*\n(.*?)\n```")
	out := map[string]json.RawMessage{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		text := string(b)
		var example string
		if m := fenced.FindStringSubmatch(text); m != nil {
			example = m[1]
		} else if _, rest, ok := strings.Cut(text, "## OUTPUT FORMAT"); ok {
			rest = strings.TrimSpace(rest)
			if strings.HasPrefix(rest, "{") {
				dec := json.NewDecoder(strings.NewReader(rest))
				var raw json.RawMessage
				if dec.Decode(&raw) == nil {
					example = string(raw)
				}
			}
		}
		name := strings.TrimPrefix(f, "testdata/orchable/")
		if example == "" {
			out[name] = nil
			continue
		}
		var v any
		require.NoError(t, json.Unmarshal([]byte(example), &v), name)
		schema, err := json.Marshal(schemaFromExample(v))
		require.NoError(t, err)
		out[name] = schema
	}
	return out
}

var enumToken = regexp.MustCompile(`^[A-Z][A-Z_]+$`)

// schemaFromExample builds the schema of an example value: objects require
// all their keys, arrays have at least one item, "A | B | C" strings of
// upper-case tokens are enums, nulls are nullable strings.
func schemaFromExample(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		props := map[string]any{}
		req := []any{}
		for k, e := range x {
			props[k] = schemaFromExample(e)
			req = append(req, k)
		}
		return map[string]any{"type": "object", "properties": props, "required": req}
	case []any:
		if len(x) == 0 {
			return map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
		}
		return map[string]any{"type": "array", "items": schemaFromExample(x[0]), "minItems": 1}
	case string:
		parts := strings.Split(x, " | ")
		if len(parts) > 1 {
			enum := []any{}
			for _, p := range parts {
				if !enumToken.MatchString(p) {
					return map[string]any{"type": "string", "description": x}
				}
				enum = append(enum, p)
			}
			return map[string]any{"type": "string", "enum": enum}
		}
		return map[string]any{"type": "string", "description": x}
	case float64:
		if x == float64(int64(x)) {
			return map[string]any{"type": "integer"}
		}
		return map[string]any{"type": "number"}
	case bool:
		return map[string]any{"type": "boolean"}
	default:
		return map[string]any{"type": "string", "nullable": true}
	}
}

func TestOfflineFixtureSchemas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off, err := NewOffline(&Config{})
	require.NoError(t, err)
	v := NewValidator()
	schemas := fixtureSchemas(t)
	structured := 0
	for name, schema := range schemas {
		for i := range 5 {
			req := Request{TaskID: uuid.New(), Prompt: name, OutputSchema: schema, Settings: Settings{Model: "gemini-test"}}
			resp, err := off.Generate(ctx, req)
			require.NoError(t, err, name)
			if schema == nil {
				var out map[string]string
				require.NoError(t, json.Unmarshal(resp.Output, &out))
				require.NotEmpty(t, out["result"])
				continue
			}
			if i == 0 {
				structured++
			}
			require.NoError(t, v.Validate(schema, decode(t, resp.Output)), "%s: %s", name, resp.Output)
			require.Positive(t, resp.Usage.TotalTokens)
		}
	}
	require.Equal(t, 9, structured, "the nine prompts with a JSON output format")
}

func TestOfflineDeterministic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := baseservicetest.NewFakeClock(pacificStart)
	off, err := NewOffline(&Config{Archetype: clock.Archetype(nil), Offline: OfflineConfig{Latency: 2 * time.Second, Jitter: time.Second}})
	require.NoError(t, err)
	task := uuid.New()
	req := Request{TaskID: task, Prompt: "p", OutputSchema: []byte(quizSchema)}
	a, err := off.Generate(ctx, req)
	require.NoError(t, err)
	elapsed := clock.Now().Sub(pacificStart)
	require.GreaterOrEqual(t, elapsed, 2*time.Second)
	require.Less(t, elapsed, 3*time.Second)
	b, err := off.Generate(ctx, req)
	require.NoError(t, err)
	require.JSONEq(t, string(a.Output), string(b.Output))
	require.Equal(t, 2*elapsed, clock.Now().Sub(pacificStart), "same task, same latency")

	req.TaskID = uuid.New()
	c, err := off.Generate(ctx, req)
	require.NoError(t, err)
	require.NotEqual(t, string(a.Output), string(c.Output))
	require.Equal(t, a.Usage.PromptTokens, c.Usage.PromptTokens)
	require.Equal(t, "offline/"+DefaultModel, a.ModelVersion)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = off.Generate(cctx, req)
	require.ErrorIs(t, err, context.Canceled)
}

// TestOfflineGeneratedSchemas is a property test: for many random schemas
// built from the supported keywords, the offline output validates.
func TestOfflineGeneratedSchemas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off, err := NewOffline(&Config{})
	require.NoError(t, err)
	v := NewValidator()
	for i := range 400 {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		schema, err := json.Marshal(randomSchema(rng, 0, true))
		require.NoError(t, err)
		for range 3 {
			resp, err := off.Generate(ctx, Request{TaskID: uuid.New(), OutputSchema: schema})
			require.NoError(t, err, "schema %d: %s", i, schema)
			require.NoError(t, v.Validate(schema, decode(t, resp.Output)), "schema %d: %s\noutput: %s", i, schema, resp.Output)
		}
	}
}

// randomSchema builds a schema from the keywords the offline provider
// supports.
func randomSchema(rng *rand.Rand, depth int, root bool) map[string]any {
	kinds := []string{"string", "integer", "number", "boolean", "enum", "object", "array", "anyOf", "oneOf", "allOf"}
	if depth >= 3 {
		kinds = kinds[:5]
	}
	kind := kinds[rng.IntN(len(kinds))]
	if root {
		// $defs live at the root, where "#/$defs/..." points.
		kind = []string{"object", "object", "ref"}[rng.IntN(3)]
	}
	var s map[string]any
	switch kind {
	case "string":
		s = map[string]any{"type": "string"}
		switch rng.IntN(4) {
		case 0:
			s["minLength"], s["maxLength"] = 3, 40
		case 1:
			s["format"] = []string{"date-time", "date", "email", "uri", "uuid"}[rng.IntN(5)]
		case 2:
			s["maxLength"] = 5
		}
	case "integer":
		s = map[string]any{"type": "integer"}
		switch rng.IntN(4) {
		case 0:
			lo := rng.IntN(50) - 25
			s["minimum"], s["maximum"] = lo, lo+rng.IntN(10)
		case 1:
			s["exclusiveMinimum"] = -3
		case 2:
			s["maximum"], s["multipleOf"] = 1000, 5
		}
	case "number":
		s = map[string]any{"type": "number"}
		if rng.IntN(2) == 0 {
			s["minimum"], s["exclusiveMaximum"] = 0.5, 1.5
		}
	case "boolean":
		s = map[string]any{"type": "boolean"}
	case "enum":
		s = map[string]any{"type": "string", "enum": []any{"LOW", "MEDIUM", "HIGH"}}
	case "object":
		props := map[string]any{}
		var req []any
		for j := range 1 + rng.IntN(4) {
			name := fmt.Sprintf("field_%d", j)
			props[name] = randomSchema(rng, depth+1, false)
			if rng.IntN(2) == 0 {
				req = append(req, name)
			}
		}
		s = map[string]any{"type": "object", "properties": props}
		if req != nil {
			s["required"] = req
		}
		if rng.IntN(2) == 0 {
			s["additionalProperties"] = false
		}
	case "array":
		s = map[string]any{"type": "array", "items": randomSchema(rng, depth+1, false)}
		if rng.IntN(2) == 0 {
			lo := rng.IntN(3)
			s["minItems"], s["maxItems"] = lo, lo+rng.IntN(3)
		}
	case "anyOf", "oneOf":
		// Branches of different types so that exactly one matches.
		s = map[string]any{kind: []any{
			map[string]any{"type": "object", "properties": map[string]any{"k": map[string]any{"type": "string"}}, "required": []any{"k"}},
			map[string]any{"type": "integer"},
			map[string]any{"type": "boolean"},
		}}
	case "ref":
		s = map[string]any{
			"$defs": map[string]any{"item": randomSchema(rng, depth+1, false)},
			"type":  "object", "required": []any{"list"},
			"properties": map[string]any{"list": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/item"}}},
		}
	case "allOf":
		s = map[string]any{"allOf": []any{
			map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}}, "required": []any{"a"}},
			map[string]any{"properties": map[string]any{"b": map[string]any{"type": "integer"}}, "required": []any{"b"}},
		}}
	}
	if rng.IntN(5) == 0 && !root {
		s["nullable"] = true
	}
	if rng.IntN(3) == 0 {
		s["description"] = "generated"
	}
	return s
}

// The offline provider keeps the schemas it decoded: its answers stay those
// of a schema decoded for the call (jsongen.GenerateJSON), for every seed,
// from many goroutines at once, and past the cache's bound.
func TestOfflineSchemaCacheGivesTheSameAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off, err := NewOffline(&Config{})
	require.NoError(t, err)
	schemas := [][]byte{[]byte(quizSchema), []byte(`{"type": "object", "properties": {"c": {"const": {"k": [1, 2]}}, "e": {"enum": ["x", "y", "z"]}}, "required": ["c", "e"]}`)}
	for i := range maxOfflineSchemas + 10 {
		schemas = append(schemas, fmt.Appendf(nil, `{"type": "object", "properties": {"n%d": {"type": "integer"}}, "required": ["n%d"]}`, i, i))
	}
	// Each goroutine reports what differs; require runs on the test's own.
	var wg sync.WaitGroup
	problems := make(chan string, 4*2*len(schemas))
	for g := range 4 {
		wg.Go(func() {
			for i, schema := range schemas {
				for round := range 2 {
					task := uuid.New()
					if round == 1 {
						task[0] = byte(g) //nolint:gosec // g < 4: another seed from the cached schema
					}
					resp, err := off.Generate(ctx, Request{TaskID: task, Prompt: "p", OutputSchema: schema})
					want, werr := jsongen.GenerateJSON(schema, seedOf(Request{TaskID: task}))
					if err != nil || werr != nil || !jsonEqual(want, []byte(resp.Text)) {
						problems <- fmt.Sprintf("schema %d: %v %v: %s against %s", i, err, werr, resp.Text, want)
					}
				}
			}
		})
	}
	wg.Wait()
	close(problems)
	var all []string
	for p := range problems {
		all = append(all, p)
	}
	require.Empty(t, all)
	off.mu.Lock()
	defer off.mu.Unlock()
	require.Len(t, off.schemas, maxOfflineSchemas, "the cache stops at its bound")
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
