package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genai"

	"github.com/orchable/orchable/baseservice"
)

// CacheConfig configures explicit context caching of a batch's shared
// content (Request.Shared).
type CacheConfig struct {
	// MinTokens is the smallest shared content (estimated tokens, system
	// instruction included) cached explicitly (GEMINI_CACHE_MIN_TOKENS).
	// Default 4096; negative disables explicit caching. Below it, the shared
	// prefix still benefits from Gemini's implicit caching.
	MinTokens int
	// TTL is the lifetime given to a cached content and renewed while the
	// batch uses it (GEMINI_CACHE_TTL). Default 15 min: a crash leaks a cached
	// content for at most this long.
	TTL time.Duration
	// Store records cached contents in gemini_caches so every instance shares
	// them. Nil disables explicit caching.
	Store CacheStore
}

// CacheKey identifies one shared cached content: a cached content belongs to
// the Google project of the key that created it, so each project gets its own.
type CacheKey struct {
	BatchID     uuid.UUID
	Model       string
	ContentHash string
	Project     string
}

// CacheEntry is a recorded cached content.
type CacheEntry struct {
	Name      string
	ExpiresAt time.Time
	Tokens    int
}

// CacheStore is gemini_caches, acting as the owner (RLS applies).
type CacheStore interface {
	// FindCache returns the live entry for k expiring after validUntil.
	FindCache(ctx context.Context, userID uuid.UUID, k CacheKey, validUntil time.Time) (CacheEntry, bool, error)
	// RecordCache records a cached content the caller created. When another
	// instance recorded a live one first, that one is returned with won
	// false; replaced names an expired entry the record replaced.
	RecordCache(ctx context.Context, userID uuid.UUID, k CacheKey, e CacheEntry) (kept CacheEntry, won bool, replaced string, err error)
	// RenewCache records a renewed expiry.
	RenewCache(ctx context.Context, userID uuid.UUID, name string, expiresAt time.Time) error
}

// CacheCounts are what this instance did with cached contents.
type CacheCounts struct {
	Created, Deleted, Renewed, Reused, Failed int64
}

// cacheRetryAfter is how long a cache key whose creation failed is used
// uncached before creation is tried again.
const cacheRetryAfter = 5 * time.Minute

// cacheManager creates, shares, renews and deletes explicit cached contents.
type cacheManager struct {
	cfg    CacheConfig
	log    *slog.Logger
	clock  baseservice.Clock
	mu     sync.Mutex
	local  map[localCacheKey]*localCache
	counts struct{ created, deleted, renewed, reused, failed atomic.Int64 }
}

type localCacheKey struct {
	user uuid.UUID
	key  CacheKey
}

type localCache struct {
	mu          sync.Mutex // one creation at a time per key on this instance
	name        string
	expires     time.Time
	failedUntil time.Time
}

func (m *cacheManager) entry(k localCacheKey) *localCache {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.local[k]
	if e == nil {
		e = &localCache{}
		m.local[k] = e
	}
	return e
}

// forget drops name from this instance's memory (expired, deleted, or
// refused by the server).
func (m *cacheManager) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.local {
		if e.name == name {
			delete(m.local, k)
		}
	}
}

// cacheable reports whether req's shared content should be cached
// explicitly.
func (m *cacheManager) cacheable(req Request) bool {
	return m != nil && m.cfg.Store != nil && m.cfg.MinTokens >= 0 && req.BatchID != uuid.Nil && req.Shared != "" &&
		strings.HasPrefix(req.Prompt, req.Shared) && estimateTokens(req.Shared, req.Settings.SystemInstruction) >= m.cfg.MinTokens
}

// contentHash names the shared content: system instruction and shared text.
func contentHash(system, shared string) string {
	h := sha256.New()
	h.Write([]byte(system))
	h.Write([]byte{0})
	h.Write([]byte(shared))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// cacheScope is the cache scope of key: its Google project, or the key alone
// when the project is unknown.
func cacheScope(key Key) string {
	if key.Project != "" {
		return key.Project
	}
	return "key:" + key.ID
}

// lookup returns the name of a live cached content of req's shared content
// for key's project, creating, recording or renewing it as needed; "" when
// there is none (the call then goes uncached). It never fails the call.
func (m *cacheManager) lookup(ctx context.Context, gc *genai.Client, key Key, req Request, model string) string {
	k := CacheKey{BatchID: req.BatchID, Model: model, ContentHash: contentHash(req.Settings.SystemInstruction, req.Shared), Project: cacheScope(key)}
	e := m.entry(localCacheKey{user: req.UserID, key: k})
	e.mu.Lock()
	defer e.mu.Unlock()
	now := m.clock.Now()
	margin := min(30*time.Second, m.cfg.TTL/4)
	if e.name == "" && now.Before(e.failedUntil) {
		return ""
	}
	if e.name == "" || !e.expires.After(now.Add(margin)) {
		e.name = ""
		if found, ok, err := m.cfg.Store.FindCache(ctx, req.UserID, k, now.Add(margin)); err != nil {
			m.log.WarnContext(ctx, "model: cache lookup failed; calling uncached", slog.String("error", err.Error()))
			return ""
		} else if ok {
			e.name, e.expires = found.Name, found.ExpiresAt
		}
	}
	if e.name != "" {
		m.counts.reused.Add(1)
		if e.expires.Sub(now) < m.cfg.TTL/2 {
			m.renew(ctx, gc, req.UserID, e)
		}
		return e.name
	}
	return m.create(ctx, gc, req, k, e)
}

// renew extends e's TTL while the batch uses it. Called with e.mu held.
func (m *cacheManager) renew(ctx context.Context, gc *genai.Client, user uuid.UUID, e *localCache) {
	cc, err := gc.Caches.Update(ctx, e.name, &genai.UpdateCachedContentConfig{TTL: m.cfg.TTL})
	if err != nil {
		m.log.InfoContext(ctx, "model: cache renewal failed", slog.String("cache", e.name), slog.String("error", err.Error()))
		return
	}
	e.expires = m.clock.Now().Add(m.cfg.TTL)
	if cc != nil && !cc.ExpireTime.IsZero() {
		e.expires = cc.ExpireTime
	}
	m.counts.renewed.Add(1)
	if err := m.cfg.Store.RenewCache(ctx, user, e.name, e.expires); err != nil {
		m.log.WarnContext(ctx, "model: cache renewal not recorded", slog.String("cache", e.name), slog.String("error", err.Error()))
	}
}

// create makes a cached content of req's shared content and records it.
// Called with e.mu held.
func (m *cacheManager) create(ctx context.Context, gc *genai.Client, req Request, k CacheKey, e *localCache) string {
	ccfg := &genai.CreateCachedContentConfig{
		TTL:         m.cfg.TTL,
		DisplayName: "orchable batch " + req.BatchID.String(),
		Contents:    []*genai.Content{genai.NewContentFromText(req.Shared, genai.RoleUser)},
	}
	if req.Settings.SystemInstruction != "" {
		ccfg.SystemInstruction = genai.NewContentFromText(req.Settings.SystemInstruction, genai.RoleUser)
	}
	cc, err := gc.Caches.Create(ctx, k.Model, ccfg)
	if err != nil {
		m.counts.failed.Add(1)
		e.failedUntil = m.clock.Now().Add(cacheRetryAfter)
		m.log.InfoContext(ctx, "model: cached content not created; calling uncached", slog.String("model", k.Model), slog.String("error", err.Error()))
		return ""
	}
	m.counts.created.Add(1)
	entry := CacheEntry{Name: cc.Name, ExpiresAt: cc.ExpireTime}
	if entry.ExpiresAt.IsZero() {
		entry.ExpiresAt = m.clock.Now().Add(m.cfg.TTL)
	}
	if cc.UsageMetadata != nil {
		entry.Tokens = int(cc.UsageMetadata.TotalTokenCount)
	}
	kept, won, replaced, err := m.cfg.Store.RecordCache(ctx, req.UserID, k, entry)
	if err != nil {
		// Unrecorded, no other instance could delete it: delete it now.
		m.log.WarnContext(ctx, "model: cached content not recorded; deleting it and calling uncached", slog.String("error", err.Error()))
		m.delete(ctx, gc, cc.Name)
		e.failedUntil = m.clock.Now().Add(cacheRetryAfter)
		return ""
	}
	if !won {
		m.delete(ctx, gc, cc.Name) // another instance was first: use theirs
	}
	if replaced != "" && replaced != kept.Name {
		m.delete(ctx, gc, replaced)
	}
	e.name, e.expires = kept.Name, kept.ExpiresAt
	return e.name
}

// delete removes a cached content; one that is already gone is not an error.
func (m *cacheManager) delete(ctx context.Context, gc *genai.Client, name string) {
	m.forget(name)
	if _, err := gc.Caches.Delete(context.WithoutCancel(ctx), name, nil); err != nil && !isCacheGone(err) {
		m.log.WarnContext(ctx, "model: cached content not deleted (it expires with its TTL)", slog.String("cache", name), slog.String("error", err.Error()))
		return
	}
	m.counts.deleted.Add(1)
}

// isCacheGone reports a cached content that no longer exists (or is not
// this project's): 403 or 404 naming the cached content.
func isCacheGone(err error) bool {
	var ae genai.APIError
	return errors.As(err, &ae) && (ae.Code == 404 || (ae.Code == 403 && strings.Contains(strings.ToLower(ae.Message), "cachedcontent")))
}

// isCacheError reports a generateContent failure caused by the cached
// content it named (gone, expired, another project's, or refused with it);
// the call is then repeated uncached and the key is not blamed.
func isCacheError(err error) bool {
	var ae genai.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.Code < 500 && ae.Code != 429 && strings.Contains(strings.ToLower(ae.Message), "cachedcontent")
}

// CacheCounts returns what this client did with cached contents.
func (c *Client) CacheCounts() CacheCounts {
	m := c.caches
	if m == nil {
		return CacheCounts{}
	}
	return CacheCounts{
		Created: m.counts.created.Load(), Deleted: m.counts.deleted.Load(), Renewed: m.counts.renewed.Load(),
		Reused: m.counts.reused.Load(), Failed: m.counts.failed.Load(),
	}
}

// DeleteCache deletes the owner's cached content name of a Google project
// (as gemini_caches recorded it), with one of the owner's keys of that
// project. A cached content that is already gone is not an error.
func (c *Client) DeleteCache(ctx context.Context, userID uuid.UUID, project, modelID, name string) error {
	if c.caches == nil {
		return nil
	}
	key, ok, err := c.pool.keyOfProject(ctx, userID, project, modelID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no key of project %s to delete cached content %s (it expires with its TTL)", project, name)
	}
	gc, err := c.genaiClient(ctx, key)
	if err != nil {
		return err
	}
	c.caches.forget(name)
	if _, err := gc.Caches.Delete(ctx, name, nil); err != nil && !isCacheGone(err) {
		return fmt.Errorf("error deleting cached content %s: %w", name, err)
	}
	c.caches.counts.deleted.Add(1)
	return nil
}
