package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"
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

	mu      sync.Mutex
	schemas map[string]any // output schemas decoded, by their text (at most maxOfflineSchemas)
}

// maxOfflineSchemas bounds the decoded output schemas the offline provider
// keeps; past it a schema is decoded per call.
const maxOfflineSchemas = 256

// NewOffline builds the offline provider.
func NewOffline(cfg *Config) (*Offline, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return baseservice.Init(cfg.Archetype, &Offline{cfg: cfg, validator: NewValidator(), schemas: map[string]any{}}), nil
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
		b, err := o.generate(req.OutputSchema, seed)
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

// generate is jsongen.GenerateJSON with the schema decoded once: templates
// share a few schemas, and decoding one per call was about 3 µs of every
// offline task's CPU (docs/performance.md, eighteenth round). jsongen only
// reads the schema it is given.
func (o *Offline) generate(raw []byte, seed uint64) ([]byte, error) {
	o.mu.Lock()
	schema, ok := o.schemas[string(raw)]
	o.mu.Unlock()
	if !ok {
		if err := json.Unmarshal(raw, &schema); err != nil {
			return nil, fmt.Errorf("error decoding schema: %w", err)
		}
		o.mu.Lock()
		if len(o.schemas) < maxOfflineSchemas {
			o.schemas[string(raw)] = schema
		}
		o.mu.Unlock()
	}
	v, err := jsongen.Generate(schema, seed)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
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
