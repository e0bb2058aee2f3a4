// Package jsongen builds deterministic JSON values that conform to a JSON
// Schema of the kind Orchable stages write as their output_schema.
//
// It understands the dialect the Designer writes (type, properties, required,
// items, enum, description, OpenAPI-style nullable) plus the common JSON Schema
// keywords a hand-written schema uses: const, anyOf/oneOf (the first branch is
// used), allOf (object branches are merged), $ref into $defs/definitions,
// minItems/maxItems, minLength/maxLength, minimum/maximum (inclusive and
// exclusive), multipleOf for integers, additionalProperties and a few formats
// (date-time, date, time, email, uri, uuid). It does not invent strings for a
// pattern; a schema with a pattern gets a plain string, which may not match.
//
// The same seed and schema always produce the same value. The offline model
// provider and the fake Gemini server (model/geminitest) both use it.
package jsongen

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// maxDepth stops runaway recursion through self-referencing $ref.
const maxDepth = 24

// words is the vocabulary deterministic strings are built from.
var words = [...]string{ //nolint:gochecknoglobals // read-only vocabulary
	"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
	"quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "yankee",
}

// Generate returns a value (built from map[string]any, []any, string, float64,
// int64, bool and nil) that validates against schema. schema is the decoded
// JSON of the schema (map[string]any or bool). seed selects among valid
// values; the same seed gives the same value.
func Generate(schema any, seed uint64) (any, error) {
	g := &generator{
		root: schema,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), // determinism, not security
	}
	return g.value(schema, "", 0)
}

// GenerateJSON is Generate for a schema given as JSON text; it returns JSON.
func GenerateJSON(schema []byte, seed uint64) ([]byte, error) {
	var s any
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("error decoding schema: %w", err)
	}
	v, err := Generate(s, seed)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Text returns a short deterministic sentence for stages without a schema.
func Text(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) // determinism, not security
	parts := make([]string, 0, n)
	for range n {
		parts = append(parts, words[rng.IntN(len(words))])
	}
	return strings.Join(parts, " ") + "."
}

type generator struct {
	root any
	rng  *rand.Rand
}

func (g *generator) value(schema any, name string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("schema nests deeper than %d levels", maxDepth)
	}
	switch s := schema.(type) {
	case nil:
		return g.word(name), nil
	case bool:
		if !s {
			return nil, fmt.Errorf("schema at %q is false; no value can match", name)
		}
		return g.word(name), nil
	case map[string]any:
		return g.object(s, name, depth)
	default:
		return nil, fmt.Errorf("schema at %q is a %T, want an object", name, schema)
	}
}

func (g *generator) object(s map[string]any, name string, depth int) (any, error) {
	if ref, ok := s["$ref"].(string); ok {
		target, err := g.resolve(ref)
		if err != nil {
			return nil, err
		}
		return g.value(target, name, depth+1)
	}
	if c, ok := s["const"]; ok {
		return c, nil
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return enum[g.rng.IntN(len(enum))], nil
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if branches, ok := s[key].([]any); ok && len(branches) > 0 {
			return g.value(mergeSiblings(s, branches[0], key), name, depth+1)
		}
	}
	if all, ok := s["allOf"].([]any); ok && len(all) > 0 {
		merged, err := g.mergeAllOf(s, all)
		if err != nil {
			return nil, err
		}
		return g.value(merged, name, depth+1)
	}
	switch typeOf(s) {
	case "object":
		return g.objectValue(s, depth)
	case "array":
		return g.arrayValue(s, name, depth)
	case "integer":
		return g.integer(s), nil
	case "number":
		return g.number(s), nil
	case "boolean":
		return g.rng.IntN(2) == 1, nil
	case "null":
		return nil, nil //nolint:nilnil // JSON null is the value generated for type "null"
	default:
		return g.str(s, name), nil
	}
}

// typeOf picks the type to generate: the first non-null entry of a type list,
// or one inferred from the keywords present.
func typeOf(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, e := range t {
			if str, ok := e.(string); ok && str != "null" {
				return str
			}
		}
		if len(t) > 0 {
			return "null"
		}
	}
	switch {
	case s["properties"] != nil || s["required"] != nil:
		return "object"
	case s["items"] != nil:
		return "array"
	}
	return "string"
}

func (g *generator) objectValue(s map[string]any, depth int) (any, error) {
	props, _ := s["properties"].(map[string]any)
	out := make(map[string]any, len(props))
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := g.value(props[k], k, depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	// Required keys without a property schema get a string.
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			k, ok := r.(string)
			if !ok {
				continue
			}
			if _, done := out[k]; done {
				continue
			}
			v, err := g.value(s["additionalProperties"], k, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
	}
	return out, nil
}

func (g *generator) arrayValue(s map[string]any, name string, depth int) (any, error) {
	lo, hi := 1, 3
	if v, ok := num(s["minItems"]); ok {
		lo = int(v)
	}
	if v, ok := num(s["maxItems"]); ok {
		hi = int(v)
	}
	if lo > hi {
		hi = lo
	}
	if hi > lo+2 {
		hi = lo + 2
	}
	n := lo + g.rng.IntN(hi-lo+1)
	out := make([]any, 0, n)
	prefix, _ := s["prefixItems"].([]any)
	for i := range n {
		item := s["items"]
		if i < len(prefix) {
			item = prefix[i]
		}
		v, err := g.value(item, name, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if unique, _ := s["uniqueItems"].(bool); unique {
		out = dedupe(out)
		if len(out) < lo {
			return nil, fmt.Errorf("cannot produce %d unique items for %q", lo, name)
		}
	}
	return out, nil
}

func (g *generator) integer(s map[string]any) int64 {
	lo, hi := bounds(s, 1, 100)
	ilo, ihi := int64(math.Ceil(lo)), int64(math.Floor(hi))
	if ex, ok := s["exclusiveMinimum"].(bool); ok && ex && float64(ilo) == lo {
		ilo++
	}
	if ex, ok := s["exclusiveMaximum"].(bool); ok && ex && float64(ihi) == hi {
		ihi--
	}
	if ihi < ilo {
		ihi = ilo
	}
	v := ilo + g.rng.Int64N(ihi-ilo+1)
	if m, ok := num(s["multipleOf"]); ok && m >= 1 && m == math.Trunc(m) {
		step := int64(m)
		v = (v / step) * step
		if v < ilo {
			v += step
		}
	}
	return v
}

func (g *generator) number(s map[string]any) float64 {
	lo, hi := bounds(s, 0, 100)
	if m, ok := num(s["multipleOf"]); ok && m > 0 {
		k := math.Ceil(lo / m)
		return k * m
	}
	// Stay strictly inside the range so exclusive bounds hold; round to keep
	// the JSON short.
	v := lo + (hi-lo)*(0.25+0.5*g.rng.Float64())
	return math.Round(v*100) / 100
}

// bounds returns the numeric range allowed by minimum/maximum and their
// exclusive forms (both the draft-4 boolean and the numeric spelling).
func bounds(s map[string]any, defLo, defHi float64) (float64, float64) {
	lo, hasLo := num(s["minimum"])
	hi, hasHi := num(s["maximum"])
	if v, ok := num(s["exclusiveMinimum"]); ok {
		lo, hasLo = v+1e-9, true
	}
	if v, ok := num(s["exclusiveMaximum"]); ok {
		hi, hasHi = v-1e-9, true
	}
	switch {
	case !hasLo && !hasHi:
		lo, hi = defLo, defHi
	case !hasLo:
		lo = min(defLo, hi-(defHi-defLo))
	case !hasHi:
		hi = lo + (defHi - defLo)
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

func (g *generator) str(s map[string]any, name string) string {
	var v string
	switch s["format"] {
	case "date-time":
		v = fmt.Sprintf("2026-%02d-%02dT%02d:00:00Z", 1+g.rng.IntN(12), 1+g.rng.IntN(28), g.rng.IntN(24))
	case "date":
		v = fmt.Sprintf("2026-%02d-%02d", 1+g.rng.IntN(12), 1+g.rng.IntN(28))
	case "time":
		v = fmt.Sprintf("%02d:%02d:00Z", g.rng.IntN(24), g.rng.IntN(60))
	case "email":
		v = words[g.rng.IntN(len(words))] + "@example.com"
	case "uri", "url":
		v = "https://example.com/" + words[g.rng.IntN(len(words))]
	case "uuid":
		v = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<12), g.rng.IntN(1<<12), g.rng.Uint64()&(1<<48-1))
	default:
		v = g.word(name)
	}
	if n, ok := num(s["maxLength"]); ok && len([]rune(v)) > int(n) {
		v = string([]rune(v)[:int(n)])
	}
	if n, ok := num(s["minLength"]); ok {
		for len([]rune(v)) < int(n) {
			v += " " + words[g.rng.IntN(len(words))]
		}
		if m, ok := num(s["maxLength"]); ok && len([]rune(v)) > int(m) {
			v = string([]rune(v)[:int(m)])
		}
	}
	return v
}

func (g *generator) word(name string) string {
	w := words[g.rng.IntN(len(words))] + " " + strconv.Itoa(g.rng.IntN(1000))
	if name != "" {
		return name + " " + w
	}
	return w
}

// resolve follows a local JSON pointer reference (#/$defs/x, #/definitions/x).
func (g *generator) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, fmt.Errorf("unsupported $ref %q: only local references are followed", ref)
	}
	cur := g.root
	for tok := range strings.SplitSeq(strings.TrimPrefix(ref, "#"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("unresolvable $ref %q", ref)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("unresolvable $ref %q", ref)
		}
	}
	return cur, nil
}

// mergeSiblings returns branch combined with the keywords written next to the
// oneOf/anyOf (for example a shared description or nullable flag).
func mergeSiblings(parent map[string]any, branch any, skip string) any {
	b, ok := branch.(map[string]any)
	if !ok {
		return branch
	}
	out := make(map[string]any, len(b))
	maps.Copy(out, b)
	for k, v := range parent {
		if k == skip || k == "nullable" {
			continue
		}
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// mergeAllOf combines the branches of an allOf into one schema: properties
// and required lists are unioned, other keywords are taken from the first
// branch that sets them.
func (g *generator) mergeAllOf(parent map[string]any, all []any) (map[string]any, error) {
	out := map[string]any{}
	props := map[string]any{}
	var req []any
	for _, src := range append([]any{parent}, all...) {
		m, ok := src.(map[string]any)
		if !ok {
			continue
		}
		if ref, ok := m["$ref"].(string); ok {
			r, err := g.resolve(ref)
			if err != nil {
				return nil, err
			}
			if m, ok = r.(map[string]any); !ok {
				continue
			}
		}
		for k, v := range m {
			switch k {
			case "allOf", "$ref":
			case "properties":
				if p, ok := v.(map[string]any); ok {
					maps.Copy(props, p)
				}
			case "required":
				if r, ok := v.([]any); ok {
					req = append(req, r...)
				}
			default:
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
		}
	}
	if len(props) > 0 {
		out["properties"] = props
	}
	if len(req) > 0 {
		out["required"] = req
	}
	return out, nil
}

func num(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func dedupe(in []any) []any {
	seen := map[string]bool{}
	out := in[:0]
	for _, v := range in {
		b, _ := json.Marshal(v) //nolint:errchkjson // values decoded from JSON encode again
		if seen[string(b)] {
			continue
		}
		seen[string(b)] = true
		out = append(out, v)
	}
	return out
}
