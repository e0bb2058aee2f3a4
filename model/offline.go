package model

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/model/jsongen"
)

// Offline is a provider that needs no key and no network: its output is
// deterministic (seeded by the task id) and conforms to the request's output
// schema, and stages without a schema get a short deterministic text. It is
// used only when asked for (`orchable dev`, tests, the benchmarks): it calls
// no model, so tasks complete with generated filler.
type Offline struct {
	baseservice.BaseService

	cfg       *Config
	validator *Validator
}

// NewOffline builds the offline provider.
func NewOffline(cfg *Config) (*Offline, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return baseservice.Init(cfg.Archetype, &Offline{cfg: cfg, validator: NewValidator()}), nil
}

// Generate returns a deterministic, schema-conforming output for req after
// the configured simulated latency (waited on the archetype's clock).
func (o *Offline) Generate(ctx context.Context, req Request) (Response, error) {
	seed := seedOf(req)
	if d := o.latency(seed); d > 0 {
		if err := o.Time.Sleep(ctx, d); err != nil {
			return Response{}, fmt.Errorf("offline model call cancelled: %w", err)
		}
	}
	model := req.Settings.Model
	if model == "" {
		model = o.cfg.DefaultModel
	}
	var text string
	if len(req.OutputSchema) == 0 || string(req.OutputSchema) == "null" {
		text = "Offline answer: " + jsongen.Text(seed, 12)
	} else {
		b, err := jsongen.GenerateJSON(req.OutputSchema, seed)
		if err != nil {
			return Response{}, newError(KindBadRequest, RetryNever, ScopeNone, 0, fmt.Sprintf("offline provider cannot satisfy output_schema: %v", err), err)
		}
		text = string(b)
	}
	out, err := o.validator.Finish(text, req.OutputSchema)
	if err != nil {
		return Response{}, err
	}
	prompt := estimateTokens(req.Prompt, req.Settings.SystemInstruction)
	cand := estimateTokens(text)
	return Response{
		Output:       out,
		Text:         text,
		Usage:        Usage{PromptTokens: prompt, CandidatesTokens: cand, TotalTokens: prompt + cand},
		ModelVersion: o.cfg.Offline.ModelVersion + "/" + model,
		ResponseID:   fmt.Sprintf("offline-%016x", seed),
		Model:        model,
	}, nil
}

func (o *Offline) latency(seed uint64) time.Duration {
	d := o.cfg.Offline.Latency
	if j := o.cfg.Offline.Jitter; j > 0 {
		d += time.Duration(seed % uint64(j)) //nolint:gosec // j > 0
	}
	return d
}

// seedOf derives the seed from the task id (and the prompt when there is no
// task id, so that equal requests give equal answers).
func seedOf(req Request) uint64 {
	if req.TaskID != [16]byte{} {
		return binary.BigEndian.Uint64(req.TaskID[:8]) ^ binary.BigEndian.Uint64(req.TaskID[8:])
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(req.Prompt))
	_, _ = h.Write(req.OutputSchema)
	return h.Sum64()
}

// compile-time checks that both providers have the Generate shape.
var (
	_ interface {
		Generate(ctx context.Context, req Request) (Response, error)
	} = (*Offline)(nil)
	_ interface {
		Generate(ctx context.Context, req Request) (Response, error)
	} = (*Client)(nil)
)
