package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaCacheSize bounds the number of compiled schemas kept in memory.
const schemaCacheSize = 512

// schemaURL names the schema in validator messages.
const schemaURL = "output_schema.json"

// Validator compiles output schemas (cached by content) and validates values
// against them. Schemas are accepted as the original system writes them,
// including the OpenAPI-style "nullable": true flag, which is read as "null is
// also allowed". The zero value is not usable; use NewValidator.
type Validator struct {
	mu sync.Mutex
	// cache is keyed by the schema's text. Every model answer is validated,
	// and a SHA-256 of the schema, the key before, cost about 0.6 µs per
	// answer for the tests' 727-byte quiz schema, where a lookup by the
	// text costs 0.04 µs.
	cache map[string]*jsonschema.Schema
}

// NewValidator returns an empty Validator.
func NewValidator() *Validator {
	return &Validator{cache: make(map[string]*jsonschema.Schema)}
}

// Validate checks value (decoded JSON) against schema (JSON text). A schema
// that does not compile is reported as an error naming the problem; a value
// that does not match returns a *jsonschema.ValidationError.
func (v *Validator) Validate(schema []byte, value any) error {
	return v.validateNumbers(schema, toValidatorValue(value))
}

// validateNumbers is Validate for a value whose numbers are json.Number
// already (decoded with UseNumber), which it does not copy: copying the
// decoded value was about a tenth of validating a model's answer
// (BenchmarkFinish).
func (v *Validator) validateNumbers(schema []byte, value any) error {
	sch, err := v.compile(schema)
	if err != nil {
		return err
	}
	return sch.Validate(value)
}

func (v *Validator) compile(schema []byte) (*jsonschema.Schema, error) {
	v.mu.Lock()
	sch, ok := v.cache[string(schema)]
	v.mu.Unlock()
	if ok {
		return sch, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("error decoding output_schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, normalizeNullable(doc)); err != nil {
		return nil, fmt.Errorf("error adding output_schema: %w", err)
	}
	sch, err = c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("error compiling output_schema: %w", err)
	}
	v.mu.Lock()
	if len(v.cache) >= schemaCacheSize {
		clear(v.cache)
	}
	v.cache[string(schema)] = sch
	v.mu.Unlock()
	return sch, nil
}

// noLoader refuses every external $ref: schemas must be self-contained, and
// validation must never reach the network or the file system.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external schema reference %q is not allowed", url)
}

// normalizeNullable rewrites OpenAPI-style {"type": T, "nullable": true} into
// {"type": [T, "null"]} (adding null to an enum too), everywhere in doc.
func normalizeNullable(doc any) any {
	switch d := doc.(type) {
	case map[string]any:
		out := make(map[string]any, len(d))
		for k, v := range d {
			out[k] = normalizeNullable(v)
		}
		if n, _ := d["nullable"].(bool); n {
			switch t := out["type"].(type) {
			case string:
				if t != "null" {
					out["type"] = []any{t, "null"}
				}
			case []any:
				if !containsNull(t) {
					out["type"] = append(append([]any{}, t...), "null")
				}
			}
			if e, ok := out["enum"].([]any); ok && !containsNil(e) {
				out["enum"] = append(append([]any{}, e...), nil)
			}
		}
		return out
	case []any:
		out := make([]any, len(d))
		for i, v := range d {
			out[i] = normalizeNullable(v)
		}
		return out
	default:
		return doc
	}
}

func containsNull(t []any) bool {
	for _, e := range t {
		if e == "null" {
			return true
		}
	}
	return false
}

func containsNil(e []any) bool {
	for _, v := range e {
		if v == nil {
			return true
		}
	}
	return false
}

// toValidatorValue converts values decoded by encoding/json into the shapes
// the validator expects (json.Number for numbers).
func toValidatorValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toValidatorValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toValidatorValue(e)
		}
		return out
	case float64:
		return json.Number(fmt.Sprint(x))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	case int:
		return json.Number(strconv.Itoa(x))
	default:
		return v
	}
}

// describeValidation turns a validator error into a short, precise message
// for error_message and for feeding back into a regeneration prompt.
func describeValidation(err error) string {
	if ve, ok := errors.AsType[*jsonschema.ValidationError](err); ok {
		msg := ve.Error()
		// The first line names the schema URL; the rest lists the violations.
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		return "output does not match output_schema: " + strings.ReplaceAll(sortViolations(msg), "\n", "; ")
	}
	return err.Error()
}

// sortViolations puts the validator's list of violations (one per line,
// each cause indented two spaces under the violation it explains) in a
// fixed order: siblings sorted by their text, each with its causes. The
// validator walks an object's members in a map's order, so without it the
// same failure's message (stored in error_message and fed back to the
// model) listed its violations in a different order from run to run.
func sortViolations(msg string) string {
	type violation struct {
		line   string
		causes []*violation
	}
	root := &violation{}
	stack := []*violation{root} // stack[d] holds the violation at depth d-1
	for line := range strings.SplitSeq(msg, "\n") {
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		depth = min(depth, len(stack)-1) // a line indented deeper than a cause below its parent
		v := &violation{line: line}
		parent := stack[depth]
		parent.causes = append(parent.causes, v)
		stack = append(stack[:depth+1], v)
	}
	var b strings.Builder
	var write func(v *violation)
	write = func(v *violation) {
		slices.SortStableFunc(v.causes, func(x, y *violation) int { return strings.Compare(x.line, y.line) })
		for _, c := range v.causes {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(c.line)
			write(c)
		}
	}
	write(root)
	return b.String()
}
