package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
)

// EstimateConfig configures cost estimates before launch.
type EstimateConfig struct {
	// Prices is the price table. Default model.DefaultPrices.
	Prices model.PriceTable
	// DefaultModel is the model of stages that name none. Default
	// model.DefaultModel.
	DefaultModel string
	// OutputTokens is the assumed answer size of a task when its stage sets
	// no maxOutputTokens. Default 500.
	OutputTokens int
	// CacheMinTokens is the explicit caching threshold
	// (model.CacheConfig.MinTokens); shared content at least this large is
	// assumed cached for every task after the first. Default
	// model.DefaultCacheMinTokens; negative assumes no explicit caching.
	CacheMinTokens int
}

// CostEstimate is what a launch would cost, estimated from the rows' size
// and the pipeline's shape (docs/cost.md lists the assumptions).
type CostEstimate struct {
	Tasks            int             `json:"tasks"`
	InputTokens      int64           `json:"input_tokens"`
	CachedTokens     int64           `json:"cached_tokens"`
	OutputTokens     int64           `json:"output_tokens"`
	EstimatedCostUSD float64         `json:"estimated_cost_usd"`
	UncachedCostUSD  float64         `json:"uncached_cost_usd"`
	Stages           []StageEstimate `json:"stages"`
	Assumptions      []string        `json:"assumptions"`
}

// StageEstimate is one stage of a CostEstimate.
type StageEstimate struct {
	TemplateID       string  `json:"template_id"`
	StageKey         string  `json:"stage_key"`
	Model            string  `json:"model"`
	Tasks            int     `json:"tasks"`
	InputTokens      int64   `json:"input_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	EstimatedCostUSD float64 `json:"estimated_cost_usd"`
	Priced           bool    `json:"priced"`
	// FanOutUnknown is set for 1:N and N:1 stages, whose task count depends
	// on outputs; the estimate assumes one task per upstream task.
	FanOutUnknown bool `json:"fan_out_unknown,omitempty"`
}

type estimateTemplate struct {
	ID                   string          `json:"id"`
	Template             string          `json:"template"`
	StageKey             *string         `json:"stage_key"`
	DefaultAISettings    json.RawMessage `json:"default_ai_settings"`
	SystemInstruction    *string         `json:"system_instruction"`
	StageConfig          json.RawMessage `json:"stage_config"`
	NextStageTemplateIDs json.RawMessage `json:"next_stage_template_ids"`
	NextStageTemplateID  *string         `json:"next_stage_template_id"`
}

// maxEstimateStages bounds the walk of a pipeline's stages.
const maxEstimateStages = 100

// EstimateLaunch estimates the cost of launching rows on the pipeline that
// starts at templateID, reading its templates as the caller. Nothing is
// written.
func EstimateLaunch(ctx context.Context, db supabase.DB, id supabase.Identity, cfg *EstimateConfig,
	templateID string, rows []json.RawMessage, documents json.RawMessage,
) (CostEstimate, error) {
	prices := cfg.Prices
	if prices == nil {
		prices = model.DefaultPrices()
	}
	outTokens := cmp.Or(cfg.OutputTokens, 500)
	minCache := cmp.Or(cfg.CacheMinTokens, model.DefaultCacheMinTokens)
	defModel := cmp.Or(cfg.DefaultModel, model.DefaultModel)
	docs := globalContext(&Batch{GlobalContext: documents})
	docTokens := int64(len(FormatGlobalContext(docs))/4 + 1)
	if len(docs) == 0 {
		docTokens = 0
	}
	var rowBytes int64
	for _, r := range rows {
		rowBytes += int64(len(r))
	}
	est := CostEstimate{Assumptions: []string{
		fmt.Sprintf("one token per 4 bytes of prompt; %d output tokens per task unless the stage sets maxOutputTokens (then that)", outTokens),
		"each stage runs once per upstream task (1:1); 1:N and N:1 stages are marked fan_out_unknown",
		"later stages read each upstream stage's output",
		fmt.Sprintf("shared content (documents and system instruction) of at least %d tokens is read from a cached content by every task after the first; cache storage is not included", minCache),
		"no regenerations, retries or fallbacks",
	}}
	type node struct {
		id       string
		tasks    int
		upstream int64 // output tokens each task reads from earlier stages
	}
	queue := []node{{id: templateID, tasks: len(rows)}}
	seen := map[string]bool{}
	for len(queue) > 0 && len(est.Stages) < maxEstimateStages {
		n := queue[0]
		queue = queue[1:]
		if seen[n.id] {
			continue
		}
		seen[n.id] = true
		var t estimateTemplate
		err := db.Select(ctx, id, "prompt_templates", supabase.Query{
			Columns: []string{"id", "template", "stage_key", "default_ai_settings", "system_instruction", "stage_config", "next_stage_template_ids", "next_stage_template_id"},
			Filters: []supabase.Filter{{Column: "id", Op: supabase.OpEq, Value: n.id}}, Single: true,
		}, &t)
		if err != nil {
			return CostEstimate{}, fmt.Errorf("error reading template %s: %w", n.id, err)
		}
		settings, err := model.ResolveSettings(t.DefaultAISettings, nil, defModel)
		if err != nil {
			return CostEstimate{}, fmt.Errorf("template %s: %w", n.id, err)
		}
		system := deref(t.SystemInstruction)
		if settings.SystemInstruction != "" {
			system = settings.SystemInstruction
		}
		var sc struct {
			Cardinality string `json:"cardinality"`
		}
		_ = json.Unmarshal(t.StageConfig, &sc)
		perTaskOut := int64(outTokens)
		if settings.Generation.MaxOutputTokens > 0 {
			perTaskOut = int64(settings.Generation.MaxOutputTokens)
		}
		shared := int64(len(system)/4) + int64(len(t.Template)/4)
		if strings.Contains(t.Template, GlobalContextVar) {
			shared += docTokens
		}
		tasks := int64(n.tasks)
		variable := rowBytes/4 + tasks*n.upstream // the rows (every stage carries its input) and upstream outputs
		input := tasks*shared + variable
		var cached int64
		if minCache >= 0 && shared >= int64(minCache) && tasks > 1 {
			cached = (tasks - 1) * shared
		}
		s := StageEstimate{
			TemplateID: t.ID, StageKey: deref(t.StageKey), Model: settings.Model, Tasks: n.tasks,
			InputTokens: input, CachedTokens: cached, OutputTokens: tasks * perTaskOut,
			FanOutUnknown: sc.Cardinality == "1:N" || sc.Cardinality == "N:1" || sc.Cardinality == "one_to_many" || sc.Cardinality == "many_to_one",
		}
		usage := model.Usage{PromptTokens: clampInt(input), CachedTokens: clampInt(cached), CandidatesTokens: clampInt(s.OutputTokens)}
		cost, ok := prices.Cost(settings.Model, usage)
		usage.CachedTokens = 0
		uncached, _ := prices.Cost(settings.Model, usage)
		s.EstimatedCostUSD, s.Priced = round6(cost), ok
		est.Stages = append(est.Stages, s)
		est.Tasks += n.tasks
		est.InputTokens += input
		est.CachedTokens += cached
		est.OutputTokens += s.OutputTokens
		est.EstimatedCostUSD += cost
		est.UncachedCostUSD += uncached

		var next []string
		_ = json.Unmarshal(t.NextStageTemplateIDs, &next)
		if t.NextStageTemplateID != nil {
			next = append(next, *t.NextStageTemplateID)
		}
		for _, nid := range next {
			if nid != "" {
				queue = append(queue, node{id: nid, tasks: n.tasks, upstream: n.upstream + perTaskOut})
			}
		}
	}
	est.EstimatedCostUSD, est.UncachedCostUSD = round6(est.EstimatedCostUSD), round6(est.UncachedCostUSD)
	return est, nil
}

func clampInt(v int64) int { return int(min(v, math.MaxInt32)) }

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }
