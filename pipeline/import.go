package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/orchable/orchable/supabase"
)

// ImportPlan is what importing a bundle writes for one owner: one
// lab_orchestrator_configs row (so the front end shows the pipeline) and one
// prompt_templates row per step.
type ImportPlan struct {
	Config ConfigRow `json:"config"`
	// Templates are in dependency order, the root first.
	Templates      []TemplateRow `json:"templates"`
	RootTemplateID string        `json:"root_template_id"`
}

// ConfigRow is a lab_orchestrator_configs row.
type ConfigRow struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	// Steps are the bundle's steps as written, each with prompt_template_id
	// set to its imported template, so the Designer opens and saves the
	// imported prompts.
	Steps json.RawMessage `json:"steps"`
}

// TemplateRow is a prompt_templates row (one stage).
type TemplateRow struct {
	// ID is <config id>_<stage_key>_<step id>, the id the Designer gives
	// the same stage, so re-importing (or saving in the Designer) updates
	// the row in place.
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Template    string `json:"template"`
	StageKey    string `json:"stage_key"`
	// StageConfig is the stage's semantics (SPEC §8).
	StageConfig StageConfig `json:"stage_config"`
	// NextStageTemplateIDs are the templates of the steps that depend on
	// this one.
	NextStageTemplateIDs []string `json:"next_stage_template_ids"`
	// DefaultAISettings is the step's ai_settings ({} when the step has
	// none: the service's defaults apply).
	DefaultAISettings json.RawMessage `json:"default_ai_settings"`
	InputSchema       *InputSchema    `json:"input_schema"`
	OutputSchema      json.RawMessage `json:"output_schema"`
	RequiresApproval  bool            `json:"requires_approval"`
	// OrganizationCode is the config id, as the Designer writes it.
	OrganizationCode string `json:"organization_code"`
	IsActive         bool   `json:"is_active"`
}

// StageConfig is prompt_templates.stage_config. Empty settings are omitted
// so the engine's defaults apply.
type StageConfig struct {
	Cardinality     string          `json:"cardinality"`
	SplitPath       string          `json:"split_path,omitempty"`
	SplitMode       string          `json:"split_mode,omitempty"`
	BatchSize       *int            `json:"batch_size,omitempty"`
	BatchGrouping   string          `json:"batch_grouping,omitempty"`
	MergePath       string          `json:"merge_path,omitempty"`
	ReturnAlongWith []string        `json:"return_along_with,omitempty"`
	PreProcess      json.RawMessage `json:"pre_process,omitempty"`
	PostProcess     json.RawMessage `json:"post_process,omitempty"`
	OutputMapping   json.RawMessage `json:"output_mapping,omitempty"`
	Timeout         json.RawMessage `json:"timeout,omitempty"`
	RetryConfig     json.RawMessage `json:"retryConfig,omitempty"` //nolint:tagliatelle // the Designer's key
	ExportConfig    json.RawMessage `json:"export_config,omitempty"`
	// DependsOn are the stage keys this stage waits for (the bundle lists
	// step ids; the engine matches stage keys).
	DependsOn []string `json:"dependsOn"` //nolint:tagliatelle // the Designer's key, read by the SQL API
	TaskType  string   `json:"task_type,omitempty"`
}

// ImportResult is what import_pipeline returns.
type ImportResult struct {
	ConfigID       uuid.UUID `json:"config_id"`
	TemplateIDs    []string  `json:"template_ids"`
	RootTemplateID string    `json:"root_template_id"`
	// Deactivated counts templates of the same config that the bundle no
	// longer has (kept, with is_active false).
	Deactivated int `json:"deactivated"`
}

// ErrNoOwner is returned by Import when the identity has no user id (a
// "sub" claim holding a UUID).
var ErrNoOwner = errors.New("pipeline: importing a bundle needs a signed-in user")

// ConfigID is the id of the pipeline named name imported by owner: a UUIDv5
// in the owner's namespace, so re-importing the same bundle updates it in
// place and two users never collide.
func ConfigID(owner uuid.UUID, name string) uuid.UUID {
	return uuid.NewSHA1(owner, []byte(name))
}

// Plan maps the bundle to the rows importing it as owner writes.
func (b *Bundle) Plan(owner uuid.UUID) (*ImportPlan, error) {
	cid := ConfigID(owner, b.Name)
	ids := make(map[string]string, len(b.Steps))    // step id → template id
	keys := make(map[string]string, len(b.Steps))   // step id → stage key
	next := make(map[string][]string, len(b.Steps)) // step id → successor template ids
	for _, s := range b.Steps {
		ids[s.ID] = fmt.Sprintf("%s_%s_%s", cid, s.StageKey, s.ID)
		keys[s.ID] = s.StageKey
	}
	for _, s := range b.Steps {
		for _, dep := range s.DependsOn {
			next[dep] = append(next[dep], ids[s.ID])
		}
	}

	if cycle := successorCycle(b.Steps, next, ids); cycle != "" {
		// ParseBundle already refuses dependency cycles; a Bundle built in
		// code is checked here, so no cyclic successor graph is ever written.
		return nil, &BundleError{Dir: cmp.Or(b.Name, "bundle"), Problems: []string{"successor cycle: " + cycle}}
	}

	plan := &ImportPlan{Config: ConfigRow{ID: cid, Name: b.Name, Description: b.Description}}
	steps := make([]json.RawMessage, 0, len(b.Steps))
	for _, s := range b.Steps {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(s.Raw, &obj); err != nil {
			return nil, fmt.Errorf("error re-reading step %s: %w", s.ID, err)
		}
		obj["prompt_template_id"], _ = json.Marshal(ids[s.ID]) //nolint:errchkjson // an id string always encodes
		raw, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("error encoding step %s: %w", s.ID, err)
		}
		steps = append(steps, raw)
	}
	var err error
	if plan.Config.Steps, err = json.Marshal(steps); err != nil {
		return nil, fmt.Errorf("error encoding steps: %w", err)
	}

	for _, s := range b.Ordered() {
		deps := make([]string, 0, len(s.DependsOn))
		for _, d := range s.DependsOn {
			deps = append(deps, keys[d])
		}
		ai := s.AISettings
		if ai == nil {
			ai = json.RawMessage("{}")
		}
		plan.Templates = append(plan.Templates, TemplateRow{
			ID:          ids[s.ID],
			Name:        fmt.Sprintf("[%s] %s", b.Name, cmp.Or(s.Label, s.Name, s.StageKey)),
			Description: fmt.Sprintf("Stage: %s | Task: %s", s.StageKey, cmp.Or(s.TaskType, s.StageKey)),
			Template:    s.Prompt,
			StageKey:    s.StageKey,
			StageConfig: StageConfig{
				Cardinality: s.Cardinality, SplitPath: s.SplitPath, SplitMode: s.SplitMode, BatchSize: s.BatchSize,
				BatchGrouping: s.BatchGrouping, MergePath: s.MergePath, ReturnAlongWith: s.ReturnAlongWith,
				PreProcess: s.PreProcess, PostProcess: s.PostProcess, OutputMapping: s.OutputMapping,
				Timeout: s.Timeout, RetryConfig: s.RetryConfig, ExportConfig: s.ExportConfig,
				DependsOn: deps, TaskType: s.TaskType,
			},
			NextStageTemplateIDs: append([]string{}, next[s.ID]...),
			DefaultAISettings:    ai,
			InputSchema:          s.InputSchema,
			OutputSchema:         outputSchemaFor(s, b.Steps),
			RequiresApproval:     s.RequiresApproval,
			OrganizationCode:     cid.String(),
			IsActive:             true,
		})
	}
	if root := b.Root(); root != nil {
		plan.RootTemplateID = ids[root.ID]
	}
	return plan, nil
}

// Import writes the bundle as the identity's user through the RPC
// public.import_pipeline (one transaction, under RLS): the config row and one
// template per step are inserted or updated in place, and templates of the
// same config that the bundle no longer has are deactivated. Re-importing
// gives the same ids. Updating rows owned by someone else fails with an
// error matching supabase.ErrForbidden.
func Import(ctx context.Context, db supabase.DB, id supabase.Identity, bundle *Bundle) (ImportResult, error) {
	var claims struct {
		Sub string `json:"sub"`
	}
	if len(id.Claims) > 0 {
		if err := json.Unmarshal(id.Claims, &claims); err != nil {
			return ImportResult{}, fmt.Errorf("error reading identity claims: %w", err)
		}
	}
	owner, err := uuid.Parse(claims.Sub)
	if err != nil {
		return ImportResult{}, ErrNoOwner
	}
	plan, err := bundle.Plan(owner)
	if err != nil {
		return ImportResult{}, err
	}
	args := struct {
		Config    ConfigRow     `json:"p_config"`
		Templates []TemplateRow `json:"p_templates"`
	}{plan.Config, plan.Templates}
	var res ImportResult
	if err := db.RPC(ctx, id, "import_pipeline", args, &res); err != nil {
		return ImportResult{}, fmt.Errorf("error importing pipeline %q: %w", bundle.Name, err)
	}
	return res, nil
}

// outputSchemaFor is the step's output schema. A step without one whose
// output a 1:N successor splits (ORC-02's mapper feeds the designer's
// split_path "output_data") gets a derived schema that requires an array at
// that path, so structured output (Gemini's, or the offline model's) yields
// what the split needs instead of failing it with {"result": text}.
func outputSchemaFor(s *Step, all []Step) json.RawMessage {
	if len(s.OutputSchema) > 0 {
		return s.OutputSchema
	}
	var paths []string
	for _, succ := range all {
		if succ.Cardinality != "1:N" || !slices.Contains(succ.DependsOn, s.ID) {
			continue
		}
		p := strings.TrimPrefix(strings.TrimSpace(succ.SplitPath), "result.")
		if p == "" || p == "." || p == "result" {
			return json.RawMessage(`{"type":"array","minItems":1,"items":{"type":"object"}}`)
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return nil
	}
	root := map[string]any{"type": "object", "properties": map[string]any{}, "required": []string{}}
	for _, p := range paths {
		node := root
		segs := strings.Split(p, ".")
		for i, seg := range segs {
			props := node["properties"].(map[string]any) //nolint:forcetypeassert // every node is built here with these types
			req := node["required"].([]string)           //nolint:forcetypeassert // every node is built here with these types
			if !slices.Contains(req, seg) {
				node["required"] = append(req, seg)
			}
			if i == len(segs)-1 {
				props[seg] = map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "object"}}
				break
			}
			child, ok := props[seg].(map[string]any)
			if !ok {
				child = map[string]any{"type": "object", "properties": map[string]any{}, "required": []string{}}
				props[seg] = child
			}
			node = child
		}
	}
	b, _ := json.Marshal(root) //nolint:errchkjson // maps, strings and numbers always encode
	return b
}

// successorCycle returns the first cycle of the successor graph (step →
// the steps that depend on it) as "a (key_a) → b (key_b) → a (key_a)", or
// "" when there is none. next maps a step id to its successors' template
// ids; ids maps step ids to template ids.
func successorCycle(steps []Step, next map[string][]string, ids map[string]string) string {
	byTemplate := make(map[string]int, len(steps))
	for i, s := range steps {
		byTemplate[ids[s.ID]] = i
	}
	name := func(i int) string { return fmt.Sprintf("%s (%s)", steps[i].ID, steps[i].StageKey) }
	state := make([]int8, len(steps)) // 0 new, 1 on the path, 2 done
	var path []int
	var found string
	var visit func(i int)
	visit = func(i int) {
		state[i] = 1
		path = append(path, i)
		for _, tid := range next[steps[i].ID] {
			j, ok := byTemplate[tid]
			switch {
			case !ok || found != "":
			case state[j] == 1:
				start := slices.Index(path, j)
				parts := make([]string, 0, len(path)-start+1)
				for _, k := range path[start:] {
					parts = append(parts, name(k))
				}
				found = strings.Join(append(parts, name(j)), " → ")
			case state[j] == 0:
				visit(j)
			}
		}
		path = path[:len(path)-1]
		state[i] = 2
	}
	for i := range steps {
		if state[i] == 0 && found == "" {
			visit(i)
		}
	}
	return found
}
