package geminitest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Cached contents (POST/GET/PATCH/DELETE /{version}/cachedContents[/{id}]),
// and the caching Gemini applies to generateContent:
//
//   - explicit: a request naming cachedContent is billed with the cached
//     tokens in usageMetadata.cachedContentTokenCount. A cached content
//     belongs to the project of the key that created it: another project,
//     an expired or deleted one answers 403 "CachedContent not found (or
//     permission denied)", as Gemini does. The request's model must be the
//     cached content's, and it may not set a system instruction.
//   - implicit (Config.ImplicitCaching): a request whose start (system
//     instruction, then contents) repeats at least MinCacheTokens of an
//     earlier request of the same project and model reports that repeated
//     prefix, in whole blocks of implicitBlock characters, as cached.

// implicitBlock is the granularity of implicit cache hits, in characters.
const implicitBlock = 1024

// cachedContent is one cached content held by the fake.
type cachedContent struct {
	name, project, model, displayName string
	text                              string // system instruction and contents, as they prefix a request
	tokens                            int
	created, updated, expire          time.Time
}

// CacheStats count the cached contents the server saw.
type CacheStats struct {
	Created int // cached contents created
	Deleted int // deleted with DELETE
	Renewed int // TTL or expireTime updated
	Live    int // neither deleted nor expired now
	// CachedTokens is the sum of cachedContentTokenCount answered (explicit
	// and implicit); ImplicitCachedTokens the implicit part.
	CachedTokens         int
	ImplicitCachedTokens int
}

// CacheStats returns the cache counters.
func (s *Server) CacheStats() CacheStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.cacheStats
	now := s.cfg.Clock.Now()
	out.Live = 0
	for _, c := range s.caches {
		if c.expire.After(now) {
			out.Live++
		}
	}
	return out
}

// ExpireCaches makes every cached content expire now (as if its TTL ran out).
func (s *Server) ExpireCaches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	for _, c := range s.caches {
		c.expire = now
	}
}

// serveCaches handles the cachedContents endpoints. It reports false when
// the path is not one of them.
func (s *Server) serveCaches(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
	if len(parts) < 2 || parts[1] != "cachedContents" {
		return false
	}
	id := ""
	if len(parts) == 3 {
		id = parts[2]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	project, status, reply := s.cacheCaller(r.Header.Get("x-goog-api-key"))
	if status != 0 {
		writeError(w, status, reply.StatusText, reply.Message, reply.Details)
		return true
	}
	now := s.cfg.Clock.Now()
	switch {
	case r.Method == http.MethodPost && id == "":
		s.createCache(w, r, project, now)
	case r.Method == http.MethodGet && id == "":
		var list []any
		for _, c := range s.caches {
			if c.project == project && c.expire.After(now) {
				list = append(list, c.json())
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"cachedContents": list})
	case id != "":
		c := s.caches["cachedContents/"+id]
		if c == nil || c.project != project || !c.expire.After(now) {
			writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "CachedContent not found (or permission denied)", nil)
			return true
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, c.json())
		case http.MethodDelete:
			delete(s.caches, c.name)
			s.cacheStats.Deleted++
			writeJSON(w, http.StatusOK, map[string]any{})
		case http.MethodPatch:
			var body map[string]any
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
				writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error(), nil)
				return true
			}
			expire, ok := expiry(body, now)
			if !ok {
				writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "ttl or expire_time is required", nil)
				return true
			}
			c.expire, c.updated = expire, now
			s.cacheStats.Renewed++
			writeJSON(w, http.StatusOK, c.json())
		default:
			writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "method not allowed", nil)
		}
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", nil)
	}
	return true
}

// cacheCaller checks the key of a caches call. Called with s.mu held.
func (s *Server) cacheCaller(key string) (string, int, Reply) {
	project, valid := s.cfg.Keys[key]
	if !valid || slices.Contains(s.cfg.ForbiddenKeys, key) {
		return "", http.StatusBadRequest, Reply{
			StatusText: "INVALID_ARGUMENT", Message: "API key not valid. Please pass a valid API key.",
			Details: []map[string]any{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}},
		}
	}
	return project, 0, Reply{}
}

func (s *Server) createCache(w http.ResponseWriter, r *http.Request, project string, now time.Time) {
	var body struct {
		Model             string `json:"model"`
		DisplayName       string `json:"displayName"`
		Contents          []part `json:"contents"`
		SystemInstruction *part  `json:"systemInstruction"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.", nil)
		return
	}
	var rest map[string]any
	_ = json.Unmarshal(raw, &rest)
	model := strings.TrimPrefix(body.Model, "models/")
	if s.cfg.RejectCaches || slices.Contains(s.cfg.RetiredModels, model) {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("Model %s does not support cached content creation.", body.Model), nil)
		return
	}
	var text strings.Builder
	if body.SystemInstruction != nil {
		text.WriteString(body.SystemInstruction.text())
	}
	for _, c := range body.Contents {
		text.WriteString(c.text())
	}
	tokens := text.Len() / 4
	if tokens < s.minCacheTokens() {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT",
			fmt.Sprintf("Cached content is too small. total_token_count=%d, min_total_token_count=%d", tokens, s.minCacheTokens()), nil)
		return
	}
	expire, ok := expiry(rest, now)
	if !ok {
		expire = now.Add(time.Hour) // Gemini's default TTL
	}
	s.cacheSeq++
	c := &cachedContent{
		name: fmt.Sprintf("cachedContents/fake%06d%x", s.cacheSeq, seedOf(project+text.String())&0xffff), project: project,
		model: model, displayName: body.DisplayName, text: text.String(), tokens: tokens, created: now, updated: now, expire: expire,
	}
	if s.caches == nil {
		s.caches = map[string]*cachedContent{}
	}
	s.caches[c.name] = c
	s.cacheStats.Created++
	writeJSON(w, http.StatusOK, c.json())
}

func (s *Server) minCacheTokens() int {
	if s.cfg.MinCacheTokens > 0 {
		return s.cfg.MinCacheTokens
	}
	return 1024
}

// expiry reads ttl ("300s") or expireTime from a create or update body.
func expiry(body map[string]any, now time.Time) (time.Time, bool) {
	if v, ok := body["ttl"].(string); ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return now.Add(d), true
		}
	}
	if v, ok := body["expireTime"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func (c *cachedContent) json() map[string]any {
	return map[string]any{
		"name": c.name, "model": "models/" + c.model, "displayName": c.displayName,
		"createTime": c.created.UTC().Format(time.RFC3339Nano), "updateTime": c.updated.UTC().Format(time.RFC3339Nano),
		"expireTime": c.expire.UTC().Format(time.RFC3339Nano), "usageMetadata": map[string]any{"totalTokenCount": c.tokens},
	}
}

// part is a Content with text parts.
type part struct {
	Parts []struct {
		Text string `json:"text"`
	} `json:"parts"`
}

func (p part) text() string {
	var b strings.Builder
	for _, x := range p.Parts {
		b.WriteString(x.Text)
	}
	return b.String()
}

// useCache resolves a request's cachedContent. Called with s.mu held.
func (s *Server) useCache(call *Call) (Reply, bool) {
	c := s.caches[call.CachedContent]
	if c == nil || c.project != call.Project || !c.expire.After(call.At) {
		return Reply{Kind: ReplyError, Status: 403, StatusText: "PERMISSION_DENIED", Message: "CachedContent not found (or permission denied)"}, false
	}
	if c.model != call.Model {
		return Reply{
			Kind: ReplyError, Status: 400, StatusText: "INVALID_ARGUMENT",
			Message: fmt.Sprintf("Model used by GenerateContent request (models/%s) and CachedContent (models/%s) has to be the same.", call.Model, c.model),
		}, false
	}
	if call.SystemInstruction != "" {
		return Reply{
			Kind: ReplyError, Status: 400, StatusText: "INVALID_ARGUMENT",
			Message: "CachedContent can not be used with GenerateContent request setting system_instruction, tools or tool_config.",
		}, false
	}
	call.CachedTokens = c.tokens
	call.cachedText = c.text
	s.cacheStats.CachedTokens += c.tokens
	return Reply{}, true
}

// implicitHit returns how many tokens of the request's start an earlier
// request of the same project and model already sent, and remembers this
// one. Called with s.mu held.
func (s *Server) implicitHit(call *Call) int {
	text := call.SystemInstruction + call.Prompt
	if s.prefixes == nil {
		s.prefixes = map[string]map[uint64]bool{}
	}
	seen := s.prefixes[call.Project+"/"+call.Model]
	if seen == nil {
		seen = map[uint64]bool{}
		s.prefixes[call.Project+"/"+call.Model] = seen
	}
	h := fnv.New64a()
	hit := 0
	for end := implicitBlock; end <= len(text); end += implicitBlock {
		_, _ = h.Write([]byte(text[end-implicitBlock : end]))
		sum := h.Sum64()
		if seen[sum] && hit == end-implicitBlock {
			hit = end
		}
		seen[sum] = true
	}
	tokens := hit / 4
	if tokens < s.minCacheTokens() {
		return 0
	}
	s.cacheStats.CachedTokens += tokens
	s.cacheStats.ImplicitCachedTokens += tokens
	return tokens
}
