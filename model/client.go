package model

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/genai"

	"github.com/orchable/orchable/baseservice"
)

// Client generates with Gemini through google.golang.org/genai, using keys
// from a KeyPool. One genai client is built per key and reused.
type Client struct {
	baseservice.BaseService

	cfg        *Config
	pool       *KeyPool
	validator  *Validator
	classifier *classifier
	httpClient *http.Client
	caches     *cacheManager // nil without Config.Cache.Store

	mu      sync.Mutex
	clients map[[32]byte]*genai.Client
}

// NewClient builds a Gemini client that draws keys from pool.
func NewClient(cfg *Config, pool *KeyPool) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("model.NewClient: pool is required")
	}
	cl, err := newClassifier()
	if err != nil {
		return nil, err
	}
	hc := *cfg.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &limitTransport{base: base, limit: cfg.MaxResponseBytes}
	c := baseservice.Init(cfg.Archetype, &Client{
		cfg:        cfg,
		pool:       pool,
		validator:  NewValidator(),
		classifier: cl,
		httpClient: &hc,
		clients:    map[[32]byte]*genai.Client{},
	})
	if cfg.Cache.Store != nil {
		c.caches = &cacheManager{cfg: cfg.Cache, log: c.Logger, clock: c.Time, local: map[localCacheKey]*localCache{}}
	}
	return c, nil
}

// Generate calls the model for req with a key from the pool. When the key or
// its project is at fault (429, invalid key) it tries another key, up to
// Config.MaxKeyAttempts. When the model itself fails (503 overloaded, its
// quota exhausted on every key, not found or retired) it tries the next
// model of req.Settings' fallback chain with the same request and output
// schema; Response.Model says which model answered. A failure that is the
// prompt's or the key's (safety, invalid key, bad request) never falls back.
// See the package documentation for the errors.
func (c *Client) Generate(ctx context.Context, req Request) (Response, error) {
	settings := req.Settings
	if settings.Model == "" {
		settings.Model = c.cfg.DefaultModel
	}
	chain := settings.Chain()
	gcfg, err := c.generateConfig(req)
	if err != nil {
		return Response{}, err
	}
	var failed []string
	for i, model := range chain {
		resp, err := c.generateOn(ctx, req, model, gcfg)
		if err == nil {
			resp.Model = model
			resp.FallbackFrom = failed
			return resp, nil
		}
		if i == len(chain)-1 || ctx.Err() != nil || !ModelFault(err) {
			return resp, err
		}
		c.Logger.InfoContext(ctx, "model: falling back to the next model of the chain",
			slog.String("model", model), slog.String("next", chain[i+1]), slog.String("error", err.Error()))
		failed = append(failed, model)
	}
	return Response{}, errors.New("model: empty model chain")
}

// ModelFault reports whether err is the model's fault rather than the
// prompt's or the key's, so another model may answer: overloaded or
// unavailable (503, 500), not found or retired (404), the model's quota
// exhausted for the project (429) or no key free for it until later.
func ModelFault(err error) bool {
	if nk, ok := errors.AsType[*NoKeyError](err); ok {
		return !nk.Until.IsZero()
	}
	var me *Error
	if !errors.As(err, &me) {
		return false
	}
	switch me.Kind {
	case KindModelNotFound, KindRateLimited, KindQuotaExhausted:
		return true
	case KindServer:
		return me.StatusCode == http.StatusServiceUnavailable || me.StatusCode == http.StatusInternalServerError || me.StatusCode == 529
	default:
		return false
	}
}

// generateOn is one model of the chain: up to MaxKeyAttempts keys.
func (c *Client) generateOn(ctx context.Context, req Request, model string, gcfg *genai.GenerateContentConfig) (Response, error) {
	contents := []*genai.Content{genai.NewContentFromText(req.Prompt, genai.RoleUser)}
	tokens := estimateTokens(req.Prompt, req.Settings.SystemInstruction)
	var lastErr error
	for range c.cfg.MaxKeyAttempts {
		var lease *Lease
		var err error
		if req.FreePool {
			lease, err = c.pool.AcquireFreePool(ctx, req.UserID, model, tokens)
		} else {
			lease, err = c.pool.Acquire(ctx, req.UserID, model, tokens)
		}
		if err != nil {
			var nk *NoKeyError
			if lastErr != nil && errors.As(err, &nk) {
				// Say which failure used up the last free key.
				nk.Reason = lastErr.Error()
			}
			return Response{}, err
		}
		resp, err := c.callShared(ctx, lease.Key, req, model, contents, gcfg)
		if rerr := lease.Release(context.WithoutCancel(ctx), req.TaskID, resp.Usage, err); rerr != nil {
			c.Logger.WarnContext(ctx, "model: key health not recorded", slog.String("key_id", lease.Key.ID), slog.String("error", rerr.Error()))
		}
		if err == nil {
			resp.KeyID = lease.Key.ID
			return resp, nil
		}
		var me *Error
		if !errors.As(err, &me) || me.Scope == ScopeNone {
			return resp, err
		}
		lastErr = err
	}
	return Response{}, lastErr
}

// callShared calls the model, through an explicit cached content of the
// request's shared content when it is large enough. Any failure of the cache
// (not created, expired, another project's, refused) falls back to the
// uncached call: a cache never fails a task.
func (c *Client) callShared(ctx context.Context, key Key, req Request, model string, contents []*genai.Content, gcfg *genai.GenerateContentConfig) (Response, error) {
	if req.FreePool || !c.caches.cacheable(req) {
		return c.call(ctx, key, model, contents, gcfg, req.OutputSchema)
	}
	gc, err := c.genaiClient(ctx, key)
	if err != nil {
		return Response{}, err
	}
	name := c.caches.lookup(ctx, gc, key, req, model)
	if name == "" {
		return c.call(ctx, key, model, contents, gcfg, req.OutputSchema)
	}
	cached := *gcfg
	cached.CachedContent = name
	cached.SystemInstruction = nil // part of the cached content
	rest := strings.TrimPrefix(req.Prompt, req.Shared)
	if strings.TrimSpace(rest) == "" {
		rest = "Answer as instructed."
	}
	resp, err := c.callRaw(ctx, gc, model, []*genai.Content{genai.NewContentFromText(rest, genai.RoleUser)}, &cached, req.OutputSchema)
	if err != nil && ctx.Err() == nil && isCacheError(err) {
		c.Logger.InfoContext(ctx, "model: cached content refused; calling uncached", slog.String("cache", name), slog.String("error", err.Error()))
		c.caches.forget(name)
		return c.call(ctx, key, model, contents, gcfg, req.OutputSchema)
	}
	return resp, err
}

func (c *Client) call(ctx context.Context, key Key, model string, contents []*genai.Content, gcfg *genai.GenerateContentConfig, schema json.RawMessage) (Response, error) {
	gc, err := c.genaiClient(ctx, key)
	if err != nil {
		return Response{}, err
	}
	return c.callRaw(ctx, gc, model, contents, gcfg, schema)
}

func (c *Client) callRaw(ctx context.Context, gc *genai.Client, model string, contents []*genai.Content, gcfg *genai.GenerateContentConfig, schema json.RawMessage) (Response, error) {
	resp, err := gc.Models.GenerateContent(ctx, model, contents, gcfg)
	if err != nil {
		return Response{}, c.classifier.classify(ctx, err, model, c.Time.Now())
	}
	return c.validator.fromGenai(resp, schema, model)
}

// genaiClient returns the cached genai client for key, building it once.
func (c *Client) genaiClient(ctx context.Context, key Key) (*genai.Client, error) {
	sum := sha256.Sum256([]byte(key.apiKey))
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc, ok := c.clients[sum]; ok {
		return gc, nil
	}
	timeout := c.cfg.RequestTimeout
	gc, err := genai.NewClient(ctx, &genai.ClientConfig{
		APIKey:     key.apiKey,
		Backend:    genai.BackendGeminiAPI,
		HTTPClient: c.httpClient,
		HTTPOptions: genai.HTTPOptions{
			BaseURL:    c.cfg.BaseURL,
			APIVersion: c.cfg.APIVersion,
			Timeout:    &timeout,
		},
	})
	if err != nil {
		// genai's configuration errors do not echo the key.
		return nil, fmt.Errorf("error creating Gemini client for key %s: %w", key.ID, err)
	}
	c.clients[sum] = gc
	return gc, nil
}

// generateConfig maps a Request onto genai's GenerateContentConfig.
func (c *Client) generateConfig(req Request) (*genai.GenerateContentConfig, error) {
	g := req.Settings.Generation
	out := &genai.GenerateContentConfig{}
	if g.Temperature != nil {
		out.Temperature = new(float32(*g.Temperature))
	}
	if g.TopP != nil {
		out.TopP = new(float32(*g.TopP))
	}
	if g.TopK != nil {
		out.TopK = new(float32(*g.TopK))
	}
	if g.MaxOutputTokens > 0 {
		out.MaxOutputTokens = int32(min(g.MaxOutputTokens, 1<<30)) // bounded above
	}
	if t := g.Thinking; t != nil {
		tc := &genai.ThinkingConfig{IncludeThoughts: t.IncludeThoughts, ThinkingLevel: genai.ThinkingLevel(t.Level)}
		if t.Budget != nil {
			tc.ThinkingBudget = new(int32(*t.Budget)) //nolint:gosec // budgets are small
		}
		out.ThinkingConfig = tc
	}
	if req.Settings.SystemInstruction != "" {
		out.SystemInstruction = genai.NewContentFromText(req.Settings.SystemInstruction, genai.RoleUser)
	}
	if len(req.OutputSchema) > 0 && string(req.OutputSchema) != "null" {
		var schema any
		if err := json.Unmarshal(req.OutputSchema, &schema); err != nil {
			return nil, newError(KindBadRequest, RetryNever, ScopeNone, 0, fmt.Sprintf("output_schema is not valid JSON: %v", err), err)
		}
		out.ResponseMIMEType = "application/json"
		out.ResponseJsonSchema = schema
	}
	return out, nil
}

// limitTransport caps response bodies: reading past limit fails instead of
// buffering an unbounded body.
type limitTransport struct {
	base  http.RoundTripper
	limit int64
}

func (t *limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.limit}
	return resp, nil
}

// errResponseTooLarge is returned when a response exceeds MaxResponseBytes.
var errResponseTooLarge = errors.New("model response exceeds the size limit")

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Distinguish "exactly at the limit" from "over it".
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errResponseTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
