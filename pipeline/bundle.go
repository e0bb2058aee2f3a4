package pipeline

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
)

// A bundle is the original project's export format for a pipeline: a
// directory holding orchestration.json ({_version, orchestratorName,
// orchestratorDescription, steps[]}) and one Markdown prompt per step under
// prompts/. See LoadBundle.

// BundleFile is the name of a bundle's orchestration file.
const BundleFile = "orchestration.json"

var (
	stageKeyPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)      // compiled once, read-only
	stepIDPattern   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`) // compiled once, read-only
)

// Bundle is a parsed and validated orchestration bundle.
type Bundle struct {
	// Version is the bundle's _version, as written.
	Version string
	// Name is orchestratorName; it names the pipeline and, with the owner,
	// determines the imported ids (see ConfigID).
	Name string
	// Description is orchestratorDescription.
	Description string
	// Steps are the steps in the order the file lists them.
	Steps []Step
}

// Step is one stage of a bundle.
type Step struct {
	ID               string
	Name             string
	Label            string
	StageKey         string
	TaskType         string
	PromptTemplateID string
	// Cardinality is normalised to "1:1", "1:N" or "N:1". It describes how
	// this stage consumes the output of the stage it depends on.
	Cardinality      string
	SplitPath        string
	SplitMode        string
	BatchSize        *int
	BatchGrouping    string
	MergePath        string
	ReturnAlongWith  []string
	RequiresApproval bool
	// DependsOn lists step ids, as in the file.
	DependsOn []string
	// AISettings is ai_settings as written (Designer shape: model_id,
	// generationConfig).
	AISettings json.RawMessage
	// InputSchema and OutputSchema come from the step's contract: nil when
	// the contract has no input fields or no output schema object.
	InputSchema  *InputSchema
	OutputSchema json.RawMessage
	// Pass-through stage settings, as written (nil when absent).
	PreProcess    json.RawMessage
	PostProcess   json.RawMessage
	OutputMapping json.RawMessage
	Timeout       json.RawMessage
	RetryConfig   json.RawMessage
	ExportConfig  json.RawMessage
	// Prompt is the text of the step's prompt file, PromptFile its path
	// inside the bundle (prompts/<name>.md).
	Prompt     string
	PromptFile string
	// Raw is the step object exactly as written.
	Raw json.RawMessage
}

// InputSchema is prompt_templates.input_schema: the prompt's declared input
// fields and delimiters (informational; rendering accepts both delimiters).
type InputSchema struct {
	RequiredFields []string   `json:"required_fields"`
	OptionalFields []string   `json:"optional_fields"`
	Delimiters     Delimiters `json:"delimiters"`
}

// Delimiters are a prompt's placeholder delimiters.
type Delimiters struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// BundleError lists every problem found in a bundle.
type BundleError struct {
	// Dir names the bundle (its directory, or "bundle" when parsed from an
	// fs.FS without a name).
	Dir string
	// Problems are human-readable, one per problem, each naming the step.
	Problems []string
}

// Error implements error.
func (e *BundleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid bundle %s: %d problem", e.Dir, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteByte('s')
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p)
	}
	return b.String()
}

// LoadBundle reads and validates the bundle in dir.
func LoadBundle(dir string) (*Bundle, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("error reading bundle: %w", err)
	}
	return ParseBundle(os.DirFS(dir), dir)
}

// ParseBundle reads and validates a bundle from fsys (orchestration.json at
// its root, prompts under prompts/). name labels errors. A problem with the
// bundle's content is a *BundleError listing every problem found.
//
// Each step's prompt is the first of these that exists in prompts/:
//  1. <prompt_template_id>.md, when the step sets prompt_template_id;
//  2. <stage_key>.md (the original validator's convention);
//  3. stage_<x>_<stage_key>.md, for any single letter or digit x (the
//     sample bundles' convention);
//  4. stage_<s>_*.md where the step id is step_<S> and s is S lower-cased
//     (the sample bundles name files by step letter: step_A → stage_a_*.md).
//
// Several files matching one rule, or none matching any, is a problem.
func ParseBundle(fsys fs.FS, name string) (*Bundle, error) {
	name = cmp.Or(name, "bundle")
	data, err := fs.ReadFile(fsys, BundleFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &BundleError{Dir: name, Problems: []string{BundleFile + " is missing"}}
		}
		return nil, fmt.Errorf("error reading %s of bundle %s: %w", BundleFile, name, err)
	}
	var doc bundleJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, &BundleError{Dir: name, Problems: []string{BundleFile + " is not valid: " + jsonProblem(data, err)}}
	}
	prompts, err := promptFiles(fsys)
	if err != nil {
		return nil, fmt.Errorf("error reading prompts of bundle %s: %w", name, err)
	}

	v := &validator{}
	b := &Bundle{Version: doc.Version, Name: strings.TrimSpace(doc.Name), Description: doc.Description}
	if b.Name == "" {
		v.addf("orchestratorName is required")
	}
	if len(doc.Steps) == 0 {
		v.addf("steps must list at least one step")
	}
	for i, raw := range doc.Steps {
		b.Steps = append(b.Steps, v.step(i, raw, fsys, prompts))
	}
	v.graph(b.Steps)
	if len(v.problems) > 0 {
		return nil, &BundleError{Dir: name, Problems: v.problems}
	}
	return b, nil
}

// Root returns the bundle's root step: the one without dependencies.
func (b *Bundle) Root() *Step {
	for i := range b.Steps {
		if len(b.Steps[i].DependsOn) == 0 {
			return &b.Steps[i]
		}
	}
	return nil
}

// Ordered returns the steps in dependency order (every step after the steps
// it depends on; ties keep file order), so the root comes first.
func (b *Bundle) Ordered() []*Step {
	done := make(map[string]bool, len(b.Steps))
	out := make([]*Step, 0, len(b.Steps))
	for len(out) < len(b.Steps) {
		progressed := false
		for i := range b.Steps {
			s := &b.Steps[i]
			if done[s.ID] || !allDone(s.DependsOn, done) {
				continue
			}
			done[s.ID] = true
			out = append(out, s)
			progressed = true
			break
		}
		if !progressed { // unreachable for a validated bundle
			break
		}
	}
	return out
}

func allDone(ids []string, done map[string]bool) bool {
	for _, id := range ids {
		if !done[id] {
			return false
		}
	}
	return true
}

//nolint:tagliatelle // the original bundle format
type bundleJSON struct {
	Version     string            `json:"_version"`
	Name        string            `json:"orchestratorName"`
	Description string            `json:"orchestratorDescription"`
	Steps       []json.RawMessage `json:"steps"`
}

//nolint:tagliatelle // the original bundle format
type stepJSON struct {
	ID                    string          `json:"id"`
	Name                  string          `json:"name"`
	Label                 string          `json:"label"`
	StageKey              string          `json:"stage_key"`
	TaskType              string          `json:"task_type"`
	PromptTemplateID      string          `json:"prompt_template_id"`
	Cardinality           string          `json:"cardinality"`
	SplitPath             string          `json:"split_path"`
	SplitMode             string          `json:"split_mode"`
	BatchSize             *int            `json:"batch_size"`
	BatchGrouping         string          `json:"batch_grouping"`
	MergePath             string          `json:"merge_path"`
	ReturnAlongWith       []string        `json:"return_along_with"`
	LegacyReturnAlongWith []string        `json:"return-along-with"`
	RequiresApproval      bool            `json:"requires_approval"`
	DependsOn             []string        `json:"dependsOn"`
	AISettings            json.RawMessage `json:"ai_settings"`
	Contract              *contractJSON   `json:"contract"`
	PreProcess            json.RawMessage `json:"pre_process"`
	PostProcess           json.RawMessage `json:"post_process"`
	OutputMapping         json.RawMessage `json:"output_mapping"`
	Timeout               json.RawMessage `json:"timeout"`
	RetryConfig           json.RawMessage `json:"retryConfig"`
	ExportConfig          json.RawMessage `json:"export_config"`
}

type contractJSON struct {
	Input *struct {
		Fields     []json.RawMessage `json:"fields"`
		Delimiters *Delimiters       `json:"delimiters"`
	} `json:"input"`
	Output *struct {
		Schema json.RawMessage `json:"schema"`
	} `json:"output"`
}

//nolint:tagliatelle // the original bundle format
type aiSettingsJSON struct {
	ModelID          *string `json:"model_id"`
	GenerationConfig *struct {
		Temperature     *float64 `json:"temperature"`
		MaxOutputTokens *float64 `json:"maxOutputTokens"`
	} `json:"generationConfig"`
}

type validator struct {
	problems []string
}

func (v *validator) addf(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

// step parses and checks one step on its own.
func (v *validator) step(i int, raw json.RawMessage, fsys fs.FS, prompts []string) Step {
	var j stepJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		v.addf("steps[%d] is not a valid step: %s", i, jsonProblem(raw, err))
		return Step{Raw: raw}
	}
	s := Step{
		ID: j.ID, Name: j.Name, Label: j.Label, StageKey: j.StageKey, TaskType: j.TaskType,
		PromptTemplateID: j.PromptTemplateID, SplitPath: strings.TrimSpace(j.SplitPath), SplitMode: j.SplitMode,
		BatchSize: j.BatchSize, BatchGrouping: j.BatchGrouping, MergePath: j.MergePath,
		ReturnAlongWith: firstNonNil(j.ReturnAlongWith, j.LegacyReturnAlongWith), RequiresApproval: j.RequiresApproval,
		DependsOn: j.DependsOn, AISettings: nonNull(j.AISettings),
		PreProcess: nonNull(j.PreProcess), PostProcess: nonNull(j.PostProcess), OutputMapping: nonNull(j.OutputMapping),
		Timeout: nonNull(j.Timeout), RetryConfig: nonNull(j.RetryConfig), ExportConfig: nonNull(j.ExportConfig),
		Raw: raw,
	}
	where := fmt.Sprintf("steps[%d]", i)
	switch {
	case s.ID == "":
		v.addf("%s: id is required", where)
	case !stepIDPattern.MatchString(s.ID):
		v.addf("%s: id %q must be 1-100 letters, digits, '_' or '-'", where, s.ID)
	default:
		where = "step " + s.ID
	}
	switch {
	case s.StageKey == "":
		v.addf("%s: stage_key is required", where)
	case !stageKeyPattern.MatchString(s.StageKey):
		v.addf("%s: stage_key %q must match ^[a-z][a-z0-9_]*$", where, s.StageKey)
	}
	card, ok := normaliseCardinality(j.Cardinality)
	switch {
	case j.Cardinality == "":
		v.addf("%s: cardinality is required (1:1, 1:N or N:1)", where)
	case !ok:
		v.addf("%s: cardinality %q must be one of 1:1, 1:N, N:1, one_to_one, one_to_many, many_to_one", where, j.Cardinality)
	}
	s.Cardinality = card
	if card == "1:N" && s.SplitPath == "" {
		v.addf("%s: split_path is required for cardinality 1:N", where)
	}
	if s.SplitMode != "" && s.SplitMode != "per_item" && s.SplitMode != "per_batch" {
		v.addf("%s: split_mode %q must be per_item or per_batch", where, s.SplitMode)
	}
	if s.BatchSize != nil && *s.BatchSize < 1 {
		v.addf("%s: batch_size must be at least 1", where)
	}
	if g := s.BatchGrouping; g != "" && g != "batch" && g != "global" && g != "isolated" {
		v.addf("%s: batch_grouping %q must be batch, global or isolated", where, g)
	}
	v.aiSettings(where, s.AISettings)
	v.contract(where, &s, j.Contract)
	s.PromptFile, s.Prompt = v.prompt(where, &s, fsys, prompts)
	return s
}

func (v *validator) aiSettings(where string, raw json.RawMessage) {
	if raw == nil {
		return
	}
	var ai aiSettingsJSON
	if err := json.Unmarshal(raw, &ai); err != nil {
		v.addf("%s: ai_settings is not valid: %s", where, jsonProblem(raw, err))
		return
	}
	if ai.ModelID != nil && strings.TrimSpace(*ai.ModelID) == "" {
		v.addf("%s: ai_settings.model_id must not be empty", where)
	}
	if gc := ai.GenerationConfig; gc != nil {
		if t := gc.Temperature; t != nil && (*t < 0 || *t > 2) {
			v.addf("%s: ai_settings.generationConfig.temperature %g must be between 0 and 2", where, *t)
		}
		if m := gc.MaxOutputTokens; m != nil && (*m < 1 || *m != float64(int64(*m))) {
			v.addf("%s: ai_settings.generationConfig.maxOutputTokens %g must be a positive integer", where, *m)
		}
	}
}

// contract maps the step's contract to the template's input and output
// schemas, as the original's mapContractToInputSchema/OutputSchema did.
func (v *validator) contract(where string, s *Step, c *contractJSON) {
	if c == nil {
		return
	}
	if in := c.Input; in != nil && (len(in.Fields) > 0 || in.Delimiters != nil) {
		is := &InputSchema{RequiredFields: []string{}, OptionalFields: []string{}, Delimiters: Delimiters{Start: "{{", End: "}}"}}
		if d := in.Delimiters; d != nil && d.Start != "" && d.End != "" {
			is.Delimiters = *d
		}
		for k, f := range in.Fields {
			var named struct {
				Name     string `json:"name"`
				Required *bool  `json:"required"`
			}
			var plain string
			switch {
			case json.Unmarshal(f, &plain) == nil && plain != "":
				is.RequiredFields = append(is.RequiredFields, plain)
			case json.Unmarshal(f, &named) == nil && named.Name != "":
				if named.Required == nil || *named.Required {
					is.RequiredFields = append(is.RequiredFields, named.Name)
				} else {
					is.OptionalFields = append(is.OptionalFields, named.Name)
				}
			default:
				v.addf("%s: contract.input.fields[%d] must be a name or an object with a name", where, k)
			}
		}
		s.InputSchema = is
	}
	if out := c.Output; out != nil {
		schema := bytes.TrimSpace(out.Schema)
		switch {
		case len(schema) == 0 || string(schema) == "null":
		case schema[0] == '{':
			s.OutputSchema = json.RawMessage(schema)
		case schema[0] == '[':
			// A legacy OutputSchemaField[] list: not a JSON Schema, and the
			// original requested no structured output for it either.
		default:
			v.addf("%s: contract.output.schema must be a JSON Schema object", where)
		}
	}
}

// prompt finds the step's prompt file (see ParseBundle) and reads it.
func (v *validator) prompt(where string, s *Step, fsys fs.FS, prompts []string) (string, string) {
	if !stageKeyPattern.MatchString(s.StageKey) {
		return "", "" // already reported
	}
	var rules [][]string
	if s.PromptTemplateID != "" {
		rules = append(rules, matching(prompts, func(f string) bool { return f == s.PromptTemplateID+".md" }))
	}
	rules = append(rules,
		matching(prompts, func(f string) bool { return f == s.StageKey+".md" }),
		matching(prompts, func(f string) bool {
			return len(f) > 8 && strings.HasPrefix(f, "stage_") && f[7] == '_' && isAlnum(f[6]) && f[8:] == s.StageKey+".md"
		}))
	if letter, ok := strings.CutPrefix(s.ID, "step_"); ok && letter != "" {
		prefix := "stage_" + strings.ToLower(letter) + "_"
		rules = append(rules, matching(prompts, func(f string) bool { return strings.HasPrefix(f, prefix) }))
	}
	for _, found := range rules {
		switch len(found) {
		case 0:
			continue
		case 1:
			file := "prompts/" + found[0]
			text, err := fs.ReadFile(fsys, file)
			if err != nil {
				v.addf("%s: reading %s: %v", where, file, err)
				return file, ""
			}
			if strings.TrimSpace(string(text)) == "" {
				v.addf("%s: prompt %s is empty", where, file)
			}
			return file, string(text)
		default:
			v.addf("%s: several prompt files could be stage %s's: prompts/%s", where, s.StageKey, strings.Join(found, ", prompts/"))
			return "", ""
		}
	}
	looked := "prompts/" + s.StageKey + ".md or prompts/stage_?_" + s.StageKey + ".md"
	if s.PromptTemplateID != "" {
		looked = "prompts/" + s.PromptTemplateID + ".md, " + looked
	}
	if letter, ok := strings.CutPrefix(s.ID, "step_"); ok && letter != "" {
		looked += " or prompts/stage_" + strings.ToLower(letter) + "_*.md"
	}
	v.addf("%s: no prompt for stage %s (looked for %s)", where, s.StageKey, looked)
	return "", ""
}

// graph checks what involves several steps: unique ids and stage keys,
// dependencies, cycles and the single root.
func (v *validator) graph(steps []Step) {
	byID := map[string]int{}
	byKey := map[string]int{}
	for i, s := range steps {
		if s.ID != "" {
			if j, dup := byID[s.ID]; dup {
				v.addf("steps[%d] and steps[%d] have the same id %s", j, i, s.ID)
			} else {
				byID[s.ID] = i
			}
		}
		if s.StageKey != "" {
			if j, dup := byKey[s.StageKey]; dup {
				v.addf("steps %s and %s have the same stage_key %s", label(steps, j), label(steps, i), s.StageKey)
			} else {
				byKey[s.StageKey] = i
			}
		}
	}
	for i, s := range steps {
		seen := map[string]bool{}
		for _, dep := range s.DependsOn {
			switch _, ok := byID[dep]; {
			case dep == s.ID:
				v.addf("step %s depends on itself", label(steps, i))
			case !ok:
				v.addf("step %s depends on %q, which is not a step id", label(steps, i), dep)
			case seen[dep]:
				v.addf("step %s lists dependency %s twice", label(steps, i), dep)
			}
			seen[dep] = true
		}
	}
	v.cycles(steps, byID)

	var roots []string
	for i, s := range steps {
		if len(s.DependsOn) == 0 {
			roots = append(roots, label(steps, i))
		}
	}
	switch {
	case len(steps) == 0:
	case len(roots) == 0:
		v.addf("no root step: every step has dependsOn; exactly one step must have none")
	case len(roots) > 1:
		v.addf("several root steps (%s): exactly one step may have no dependsOn", strings.Join(roots, ", "))
	}
}

// cycles reports each dependency cycle once, as a path of step ids.
func (v *validator) cycles(steps []Step, byID map[string]int) {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(steps))
	var stack []string
	reported := map[string]bool{}
	var visit func(i int)
	visit = func(i int) {
		color[i] = grey
		stack = append(stack, steps[i].ID)
		for _, dep := range steps[i].DependsOn {
			j, ok := byID[dep]
			if !ok || j == i {
				continue
			}
			switch color[j] {
			case white:
				visit(j)
			case grey:
				start := slices.Index(stack, dep)
				cycle := slices.Clone(stack[start:])
				key := slices.Sorted(slices.Values(cycle))
				if k := strings.Join(key, ","); !reported[k] {
					reported[k] = true
					slices.Reverse(cycle) // dependency order: dep → … → dependant
					v.addf("dependency cycle: %s → %s", strings.Join(cycle, " → "), cycle[0])
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
	}
	for i := range steps {
		if color[i] == white && steps[i].ID != "" {
			visit(i)
		}
	}
}

func label(steps []Step, i int) string {
	if steps[i].StageKey == "" {
		return cmp.Or(steps[i].ID, fmt.Sprintf("steps[%d]", i))
	}
	return fmt.Sprintf("%s (%s)", cmp.Or(steps[i].ID, fmt.Sprintf("steps[%d]", i)), steps[i].StageKey)
}

// normaliseCardinality maps both spellings to 1:1, 1:N or N:1.
func normaliseCardinality(c string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(c)) {
	case "1:1", "one_to_one":
		return "1:1", true
	case "1:n", "one_to_many":
		return "1:N", true
	case "n:1", "many_to_one":
		return "N:1", true
	default:
		return "", false
	}
}

// promptFiles lists the *.md files directly under prompts/.
func promptFiles(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, "prompts")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && path.Ext(e.Name()) == ".md" {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func matching(files []string, ok func(string) bool) []string {
	var out []string
	for _, f := range files {
		if ok(f) {
			out = append(out, f)
		}
	}
	return out
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// jsonProblem describes a JSON decoding error with its line when known.
func jsonProblem(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: %v", 1+bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n")), err)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s must be %s, not %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("expected %s, not %s", typ.Type, typ.Value)
	default:
		return err.Error()
	}
}

func nonNull(raw json.RawMessage) json.RawMessage {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return nil
	}
	return raw
}

func firstNonNil(a, b []string) []string {
	if a != nil {
		return a
	}
	return b
}
