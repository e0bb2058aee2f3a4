// Package geminitest is a fake Gemini REST server for tests and end-to-end
// runs. It serves POST /{version}/models/{model}:generateContent the way the
// Gemini API does (the path google.golang.org/genai calls), checks the
// x-goog-api-key header, enforces per-project RPM/TPM/RPD quotas with the
// same 429 body Gemini sends (QuotaFailure, Help and RetryInfo details), and
// answers with JSON generated from the request's responseJsonSchema, or with
// scripted replies: invalid JSON, fenced JSON, safety blocks, MAX_TOKENS,
// arbitrary errors, slow answers.
//
// It listens on loopback only. Counters (Stats) let tests assert what reached
// the server. cmd/fakegemini runs it as a standalone process.
package geminitest

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orchable/orchable/model/jsongen"
)

// Quota limits for one project and model. Zero means unlimited.
type Quota struct {
	RPM int // requests per minute
	TPM int // input tokens per minute
	RPD int // requests per day (resets at midnight Pacific)
}

// Config configures the fake server.
type Config struct {
	// Keys maps each valid API key to its Google project. Any other key gets
	// 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID.
	Keys map[string]string
	// ForbiddenKeys answer 403 PERMISSION_DENIED.
	ForbiddenKeys []string
	// Quotas holds per-project limits (applied to each model separately).
	Quotas map[string]Quota
	// DefaultQuota applies to projects not in Quotas.
	DefaultQuota Quota
	// RetiredModels answer 404 NOT_FOUND.
	RetiredModels []string
	// UnavailableModels answer 503 UNAVAILABLE ("The model is overloaded").
	UnavailableModels []string
	// ExhaustedModels answer 429 RESOURCE_EXHAUSTED with the per-day quota of
	// the model used up, for every project.
	ExhaustedModels []string
	// ImplicitCaching reports a repeated request start (at least
	// MinCacheTokens, same project and model) as cached tokens, as Gemini's
	// implicit caching does (see caches.go).
	ImplicitCaching bool
	// MinCacheTokens is the smallest cached content (and implicit hit), in
	// tokens. Default 1024.
	MinCacheTokens int
	// RejectCaches makes every cached content creation fail with 400.
	RejectCaches bool
	// Clock drives the quota windows. Default the wall clock.
	Clock interface{ Now() time.Time }
	// Latency returns the simulated latency of the n-th call (from 1).
	// Default none.
	Latency func(n int) time.Duration
	// Sleep waits for simulated latency and ReplySlow. Default a real timer
	// (cancelled when the client goes away).
	Sleep func(ctx context.Context, d time.Duration) error
}

// ReplyKind selects a scripted answer.
type ReplyKind int

// Scripted answers.
const (
	// ReplyValid answers with JSON generated from responseJsonSchema (or
	// plain text without one). It is the default.
	ReplyValid ReplyKind = iota
	// ReplyText answers with Reply.Text verbatim (finishReason STOP).
	ReplyText
	// ReplyInvalidJSON answers with text that is not JSON.
	ReplyInvalidJSON
	// ReplyFenced wraps the valid answer in a ```json fence.
	ReplyFenced
	// ReplySafety ends the candidate with finishReason SAFETY.
	ReplySafety
	// ReplyRecitation ends the candidate with finishReason RECITATION.
	ReplyRecitation
	// ReplyPromptBlocked returns no candidate and promptFeedback.blockReason SAFETY.
	ReplyPromptBlocked
	// ReplyMaxTokens returns truncated JSON with finishReason MAX_TOKENS.
	ReplyMaxTokens
	// ReplyError answers Reply.Status with a Gemini error body.
	ReplyError
	// ReplySlow waits Reply.Delay (or until the client gives up) and then
	// answers like ReplyValid.
	ReplySlow
)

// Reply is one scripted answer.
type Reply struct {
	Kind ReplyKind
	// Text is the answer for ReplyText.
	Text string
	// Status, StatusText, Message and Details form the error of ReplyError
	// (for example 503, "UNAVAILABLE").
	Status     int
	StatusText string
	Message    string
	Details    []map[string]any
	// Delay is the wait of ReplySlow; zero waits until the client gives up.
	Delay time.Duration
}

// Call is one request that reached the server.
type Call struct {
	// At is the server clock's time when the call arrived.
	At      time.Time
	Model   string
	Project string // "" when the key was not valid
	// KeyIndex is the position of the key in sorted Config.Keys, -1 if unknown
	// (the key itself is not recorded).
	KeyIndex          int
	Prompt            string
	SystemInstruction string
	GenerationConfig  map[string]any
	Status            int
	// CachedContent is the cachedContent the request named ("" for none);
	// CachedTokens the tokens answered as cached (explicit or implicit).
	CachedContent string
	CachedTokens  int
	cachedText    string
}

// ProjectStats count one project's calls.
type ProjectStats struct {
	Requests    int // calls with a valid key
	OK          int // 200 answers
	RateLimited int // 429 answers (any quota)
	PerDay      int // 429 answers for the daily quota
}

// Stats count everything the server saw.
type Stats struct {
	Requests    int
	OK          int
	RateLimited int
	Errors      int // other non-200 answers
	ByProject   map[string]ProjectStats
}

// Server is a running fake Gemini.
type Server struct {
	// URL is the base URL to configure as the Gemini base URL.
	URL string

	cfg     Config
	srv     *httptest.Server
	closing chan struct{}
	closeMu sync.Once

	mu      sync.Mutex
	keyIdx  map[string]int
	script  []Reply
	handler func(Call) (Reply, bool)
	windows map[string]*usage // project/model
	stats   Stats
	calls   []Call
	n       int

	caches     map[string]*cachedContent
	cacheSeq   int
	cacheStats CacheStats
	prefixes   map[string]map[uint64]bool // project/model → implicit prefix hashes
}

type usage struct {
	minute []event
	day    string // Pacific date of dayCount
	dayN   int
}

type event struct {
	at     time.Time
	tokens int
}

// New starts a fake server on 127.0.0.1 with a random port.
func New(cfg Config) *Server {
	s := newServer(cfg)
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// NewUnstarted returns a server that is not listening yet, so the caller can
// set srv.Listener (for example to a fixed loopback port) before Start.
func NewUnstarted(cfg Config) (*Server, *httptest.Server) {
	s := newServer(cfg)
	s.srv = httptest.NewUnstartedServer(s)
	return s, s.srv
}

// Start starts a server built with NewUnstarted.
func (s *Server) Start() {
	s.srv.Start()
	s.URL = s.srv.URL
}

func newServer(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Sleep == nil {
		cfg.Sleep = realSleep
	}
	keys := make([]string, 0, len(cfg.Keys))
	for k := range cfg.Keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	idx := make(map[string]int, len(keys))
	for i, k := range keys {
		idx[k] = i
	}
	return &Server{
		cfg:     cfg,
		closing: make(chan struct{}),
		keyIdx:  idx,
		windows: map[string]*usage{},
		stats:   Stats{ByProject: map[string]ProjectStats{}},
	}
}

// Close stops the server, releasing slow requests first.
func (s *Server) Close() {
	s.closeMu.Do(func() { close(s.closing) })
	s.srv.Close()
}

// Enqueue scripts the next answers, in order, for any key and model (after
// the key and quota checks pass).
func (s *Server) Enqueue(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, replies...)
}

// SetHandler installs a function choosing the reply per call; it is consulted
// after the queue is empty. Returning false means the default (ReplyValid).
func (s *Server) SetHandler(h func(Call) (Reply, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.ByProject = make(map[string]ProjectStats, len(s.stats.ByProject))
	maps.Copy(out.ByProject, s.stats.ByProject)
	return out
}

// Calls returns the calls seen so far, in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// request is the part of a generateContent body the server reads.
type request struct {
	Contents []struct {
		Parts []struct {
			Text string `json:"text"`
		} `json:"parts"`
	} `json:"contents"`
	SystemInstruction *struct {
		Parts []struct {
			Text string `json:"text"`
		} `json:"parts"`
	} `json:"systemInstruction"`
	GenerationConfig map[string]any `json:"generationConfig"`
	CachedContent    string         `json:"cachedContent"`
}

// ServeHTTP implements the generateContent endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.serveCaches(w, r) {
		return
	}
	model, ok := parsePath(r)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", nil)
		return
	}
	var body request
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error(), nil)
		return
	}
	call := Call{Model: model, GenerationConfig: body.GenerationConfig, KeyIndex: -1, CachedContent: body.CachedContent}
	for _, c := range body.Contents {
		for _, p := range c.Parts {
			call.Prompt += p.Text
		}
	}
	if si := body.SystemInstruction; si != nil {
		for _, p := range si.Parts {
			call.SystemInstruction += p.Text
		}
	}
	key := r.Header.Get("x-goog-api-key")

	reply, status := s.admit(&call, key)
	s.respond(r.Context(), w, &call, reply, status)
}

// admit checks the key, the model and the quota, and picks the reply. A
// non-zero status means the reply is an error already decided.
func (s *Server) admit(call *Call, key string) (Reply, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.stats.Requests++
	call.At = s.cfg.Clock.Now()
	project, valid := s.cfg.Keys[key]
	switch {
	case key == "":
		return Reply{
			Kind: ReplyError, Status: 403, StatusText: "PERMISSION_DENIED",
			Message: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
		}, 403
	case slices.Contains(s.cfg.ForbiddenKeys, key):
		return Reply{
			Kind: ReplyError, Status: 403, StatusText: "PERMISSION_DENIED",
			Message: "Permission denied: Consumer has been suspended.",
		}, 403
	case !valid:
		return Reply{
			Kind: ReplyError, Status: 400, StatusText: "INVALID_ARGUMENT",
			Message: "API key not valid. Please pass a valid API key.",
			Details: []map[string]any{{
				"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
				"domain": "googleapis.com", "metadata": map[string]any{"service": "generativelanguage.googleapis.com"},
			}, {
				"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
				"message": "API key not valid. Please pass a valid API key.",
			}},
		}, 400
	}
	call.Project = project
	call.KeyIndex = s.keyIdx[key]
	ps := s.stats.ByProject[project]
	ps.Requests++
	s.stats.ByProject[project] = ps
	if slices.Contains(s.cfg.RetiredModels, call.Model) {
		return Reply{
			Kind: ReplyError, Status: 404, StatusText: "NOT_FOUND",
			Message: fmt.Sprintf("models/%s is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.", call.Model),
		}, 404
	}
	if slices.Contains(s.cfg.UnavailableModels, call.Model) {
		return Reply{
			Kind: ReplyError, Status: 503, StatusText: "UNAVAILABLE",
			Message: "The model is overloaded. Please try again later.",
		}, 503
	}
	if slices.Contains(s.cfg.ExhaustedModels, call.Model) {
		return s.quotaReply(call, "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
			"generativelanguage.googleapis.com/generate_content_free_tier_requests", 0, 13*time.Second), 429
	}
	if r, limited := s.checkQuota(call); limited {
		return r, 429
	}
	if call.CachedContent != "" {
		if r, ok := s.useCache(call); !ok {
			return r, r.Status
		}
	} else if s.cfg.ImplicitCaching {
		call.CachedTokens = s.implicitHit(call)
	}
	if len(s.script) > 0 {
		r := s.script[0]
		s.script = s.script[1:]
		return r, 0
	}
	if s.handler != nil {
		if r, ok := s.handler(*call); ok {
			return r, 0
		}
	}
	if kind, ok := markerKind(call.Prompt); ok {
		return Reply{Kind: kind, Status: 503, StatusText: "UNAVAILABLE", Message: "The model is overloaded. Please try again later."}, 0
	}
	return Reply{Kind: ReplyValid}, 0
}

// checkQuota applies the project's RPM, TPM and RPD to call and records it
// when it is admitted. Called with s.mu held.
func (s *Server) checkQuota(call *Call) (Reply, bool) {
	q, ok := s.cfg.Quotas[call.Project]
	if !ok {
		q = s.cfg.DefaultQuota
	}
	now := s.cfg.Clock.Now()
	u := s.windows[call.Project+"/"+call.Model]
	if u == nil {
		u = &usage{}
		s.windows[call.Project+"/"+call.Model] = u
	}
	i := 0
	for i < len(u.minute) && !u.minute[i].at.Add(time.Minute).After(now) {
		i++
	}
	u.minute = u.minute[i:]
	day := now.In(pacific()).Format(time.DateOnly)
	if u.day != day {
		u.day, u.dayN = day, 0
	}
	tokens := len(call.Prompt+call.SystemInstruction)/4 + 1
	used := 0
	for _, e := range u.minute {
		used += e.tokens
	}
	var quotaID, metric string
	var limit int
	var retry time.Duration
	switch {
	case q.RPD > 0 && u.dayN >= q.RPD:
		quotaID, metric, limit = "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "generativelanguage.googleapis.com/generate_content_free_tier_requests", q.RPD
		retry = 13*time.Second + 412*time.Millisecond // Gemini sends a short delay even for daily quotas
	case q.RPM > 0 && len(u.minute) >= q.RPM:
		quotaID, metric, limit = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "generativelanguage.googleapis.com/generate_content_free_tier_requests", q.RPM
		retry = u.minute[len(u.minute)-q.RPM].at.Add(time.Minute).Sub(now)
	case q.TPM > 0 && used+tokens > q.TPM && len(u.minute) > 0:
		quotaID, metric, limit = "GenerateContentInputTokensPerModelPerMinute-FreeTier", "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count", q.TPM
		retry = u.minute[0].at.Add(time.Minute).Sub(now)
	default:
		u.minute = append(u.minute, event{at: now, tokens: tokens})
		u.dayN++
		return Reply{}, false
	}
	return s.quotaReply(call, quotaID, metric, limit, retry), true
}

// quotaReply is Gemini's 429 body for a quota; it counts the 429 for the
// project. Called with s.mu held.
func (s *Server) quotaReply(call *Call, quotaID, metric string, limit int, retry time.Duration) Reply {
	ps := s.stats.ByProject[call.Project]
	ps.RateLimited++
	if strings.Contains(quotaID, "PerDay") {
		ps.PerDay++
	}
	s.stats.ByProject[call.Project] = ps
	return Reply{
		Kind: ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED",
		Message: fmt.Sprintf("You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: %s, limit: %d, model: %s\nPlease retry in %s.", metric, limit, call.Model, protoDuration(retry)),
		Details: []map[string]any{
			{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{
				"quotaMetric": metric, "quotaId": quotaID,
				"quotaDimensions": map[string]any{"location": "global", "model": call.Model},
				"quotaValue":      strconv.Itoa(limit),
			}}},
			{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{
				"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
			}}},
			{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": protoDuration(retry)},
		},
	}
}

func (s *Server) respond(ctx context.Context, w http.ResponseWriter, call *Call, reply Reply, status int) {
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	if s.cfg.Latency != nil {
		if err := s.sleep(ctx, s.cfg.Latency(n)); err != nil {
			return
		}
	}
	if reply.Kind == ReplySlow {
		d := reply.Delay
		if d == 0 {
			d = 24 * time.Hour
		}
		if err := s.sleep(ctx, d); err != nil {
			s.record(call, 0)
			return
		}
	}
	if status == 0 && reply.Kind == ReplyError {
		status = reply.Status
	}
	if status != 0 {
		s.record(call, status)
		writeError(w, status, reply.StatusText, reply.Message, reply.Details)
		return
	}
	s.record(call, http.StatusOK)
	writeJSON(w, http.StatusOK, s.answer(call, reply, n))
}

// sleep waits d with the configured sleeper, ending early when the client
// goes away or the server closes.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.cfg.Sleep(ctx, d)
}

func (s *Server) record(call *Call, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call.Status = status
	s.calls = append(s.calls, *call)
	switch status {
	case http.StatusOK:
		s.stats.OK++
		if call.Project != "" {
			ps := s.stats.ByProject[call.Project]
			ps.OK++
			s.stats.ByProject[call.Project] = ps
		}
	case http.StatusTooManyRequests:
		s.stats.RateLimited++
	default:
		s.stats.Errors++
	}
}

// answer builds a 200 generateContent response.
func (s *Server) answer(call *Call, reply Reply, n int) map[string]any {
	seed := seedOf(call.Prompt)
	valid := validText(call, seed)
	text, finish := valid, "STOP"
	switch reply.Kind {
	case ReplyText:
		text = reply.Text
	case ReplyInvalidJSON:
		text = "Sure! Here is the result you asked for: {not json"
	case ReplyFenced:
		text = "```json\n" + valid + "\n```"
	case ReplySafety:
		text, finish = "", "SAFETY"
	case ReplyRecitation:
		text, finish = "", "RECITATION"
	case ReplyMaxTokens:
		text, finish = valid[:len(valid)/2], "MAX_TOKENS"
	default:
		// The other kinds answer with the valid text; ReplyPromptBlocked
		// and the usage are handled below.
	}
	prompt := len(call.cachedText+call.Prompt+call.SystemInstruction)/4 + 1
	cand := len(text)/4 + 1
	usage := map[string]any{"promptTokenCount": prompt, "candidatesTokenCount": cand, "totalTokenCount": prompt + cand}
	if call.CachedTokens > 0 {
		usage["cachedContentTokenCount"] = min(call.CachedTokens, prompt)
	}
	resp := map[string]any{
		"usageMetadata": usage,
		"modelVersion":  call.Model + "-fake-001",
		"responseId":    fmt.Sprintf("fake-%d-%x", n, seed&0xffffff),
	}
	if reply.Kind == ReplyPromptBlocked {
		usage["totalTokenCount"] = prompt
		delete(usage, "candidatesTokenCount")
		resp["promptFeedback"] = map[string]any{"blockReason": "SAFETY", "safetyRatings": []any{
			map[string]any{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
		}}
		return resp
	}
	cand0 := map[string]any{"finishReason": finish, "index": 0}
	if text != "" {
		cand0["content"] = map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}}
	}
	if finish == "SAFETY" {
		cand0["safetyRatings"] = []any{map[string]any{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": true}}
	}
	resp["candidates"] = []any{cand0}
	return resp
}

// validText is JSON from the request's responseJsonSchema, or plain text.
func validText(call *Call, seed uint64) string {
	if schema, ok := call.GenerationConfig["responseJsonSchema"]; ok && schema != nil {
		v, err := jsongen.Generate(schema, seed)
		if err == nil {
			b, err := json.Marshal(v)
			if err == nil {
				return string(b)
			}
		}
		return fmt.Sprintf(`{"error": %q}`, fmt.Sprint(err))
	}
	if mt, _ := call.GenerationConfig["responseMimeType"].(string); mt == "application/json" {
		return fmt.Sprintf(`{"result": %q}`, jsongen.Text(seed, 8))
	}
	return jsongen.Text(seed, 16)
}

// markerKind reads a "[[fakegemini:<kind>]]" marker in the prompt, which lets
// end-to-end tests script answers through task data.
func markerKind(prompt string) (ReplyKind, bool) {
	_, rest, ok := strings.Cut(prompt, "[[fakegemini:")
	if !ok {
		return 0, false
	}
	name, _, ok := strings.Cut(rest, "]]")
	if !ok {
		return 0, false
	}
	kinds := map[string]ReplyKind{
		"invalid_json": ReplyInvalidJSON, "fenced": ReplyFenced, "safety": ReplySafety,
		"recitation": ReplyRecitation, "prompt_blocked": ReplyPromptBlocked,
		"max_tokens": ReplyMaxTokens, "unavailable": ReplyError,
	}
	k, ok := kinds[name]
	return k, ok
}

func parsePath(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	// /{version}/models/{model}:generateContent
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
	if len(parts) != 3 || parts[1] != "models" {
		return "", false
	}
	model, method, ok := strings.Cut(parts[2], ":")
	if !ok || method != "generateContent" || model == "" {
		return "", false
	}
	return model, true
}

func writeError(w http.ResponseWriter, code int, status, msg string, details []map[string]any) {
	e := map[string]any{"code": code, "message": msg, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	writeJSON(w, code, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) //nolint:errchkjson // the status is sent; a failed write means the client left
}

// protoDuration formats d as a google.protobuf.Duration in JSON ("37.5s").
func protoDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func seedOf(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

var pacificOnce = sync.OnceValue(func() *time.Location { //nolint:gochecknoglobals // immutable after load
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		return time.FixedZone("PST", -8*3600)
	}
	return loc
})

func pacific() *time.Location { return pacificOnce() }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func realSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
