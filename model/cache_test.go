package model

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

// memCaches is an in-memory CacheStore with gemini_caches' semantics.
type memCaches struct {
	mu   sync.Mutex
	now  func() time.Time
	rows map[CacheKey]CacheEntry
}

func (s *memCaches) FindCache(_ context.Context, _ uuid.UUID, k CacheKey, validUntil time.Time) (CacheEntry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.rows[k]
	return e, ok && e.ExpiresAt.After(validUntil), nil
}

func (s *memCaches) RecordCache(_ context.Context, _ uuid.UUID, k CacheKey, e CacheEntry) (CacheEntry, bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.rows[k]
	if ok && old.ExpiresAt.After(s.now()) {
		return old, false, "", nil
	}
	s.rows[k] = e
	return e, true, old.Name, nil
}

func (s *memCaches) RenewCache(_ context.Context, _ uuid.UUID, name string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.rows {
		if e.Name == name {
			e.ExpiresAt = exp
			s.rows[k] = e
		}
	}
	return nil
}

func TestClientExplicitCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	doc := "--- DOCUMENT: handbook ---\n" + strings.Repeat("The tide rises twice a day. ", 1200) + "\n--- END OF DOCUMENT ---\n\n"
	batch := uuid.New()
	newReq := func(b *testBundle, task string) Request {
		r := b.request(doc+"Question: "+task, quizSchema)
		r.BatchID, r.Shared = batch, doc
		r.Settings.SystemInstruction = "You write quizzes."
		return r
	}
	withCaches := func(opts *bundleOpts, store *memCaches) *bundleOpts {
		opts.config.Cache = CacheConfig{Store: store, MinTokens: 2048, TTL: 10 * time.Minute}
		return opts
	}

	t.Run("CreatedOnceReusedRenewedPerProject", func(t *testing.T) {
		t.Parallel()
		store := &memCaches{rows: map[CacheKey]CacheEntry{}}
		b := setup(t, withCaches(&bundleOpts{keys: [][2]string{{"AIza-one", "proj-a"}, {"AIza-two", "proj-b"}}}, store))
		store.now = b.clock.Now
		for i := range 6 {
			resp, err := b.client.Generate(ctx, newReq(b, "task "+string(rune('a'+i))))
			require.NoError(t, err)
			require.Positive(t, resp.Usage.CachedTokens, "call %d", i)
			require.Greater(t, resp.Usage.PromptTokens, resp.Usage.CachedTokens)
		}
		st := b.server.CacheStats()
		require.Equal(t, 2, st.Created, "one cached content per project (the pool alternates keys)")
		require.Len(t, store.rows, 2)
		for _, c := range b.server.Calls() {
			require.NotEmpty(t, c.CachedContent)
			require.Empty(t, c.SystemInstruction, "the system instruction is in the cached content")
			require.NotContains(t, c.Prompt, "DOCUMENT", "the shared document is not sent again")
		}
		// Past half the TTL, the next use renews it.
		b.clock.Advance(6 * time.Minute)
		_, err := b.client.Generate(ctx, newReq(b, "late"))
		require.NoError(t, err)
		require.Equal(t, 1, b.server.CacheStats().Renewed)
		require.Equal(t, 2, b.server.CacheStats().Created)

		// Deleting through the client (what the janitor does).
		for k, e := range store.rows {
			require.NoError(t, b.client.DeleteCache(ctx, b.user, k.Project, k.Model, e.Name))
		}
		require.Zero(t, b.server.CacheStats().Live)
	})

	t.Run("SharedAcrossInstances", func(t *testing.T) {
		t.Parallel()
		store := &memCaches{rows: map[CacheKey]CacheEntry{}}
		opts := withCaches(&bundleOpts{keys: [][2]string{{"AIza-one", "proj-a"}}}, store)
		b := setup(t, opts)
		store.now = b.clock.Now
		_, err := b.client.Generate(ctx, newReq(b, "first"))
		require.NoError(t, err)
		// A second instance (another client) with the same store uses the same cached content.
		cfg := opts.config
		cfg.BaseURL, cfg.Archetype, cfg.DefaultModel, cfg.HTTPClient = b.server.URL, b.clock.Archetype(nil), "gemini-test", &http.Client{}
		other, err := NewClient(&cfg, b.pool)
		require.NoError(t, err)
		resp, err := other.Generate(ctx, newReq(b, "second"))
		require.NoError(t, err)
		require.Positive(t, resp.Usage.CachedTokens)
		require.Equal(t, 1, b.server.CacheStats().Created)
	})

	t.Run("ExpiredOrRefusedFallsBackUncached", func(t *testing.T) {
		t.Parallel()
		store := &memCaches{rows: map[CacheKey]CacheEntry{}}
		b := setup(t, withCaches(&bundleOpts{keys: [][2]string{{"AIza-one", "proj-a"}}}, store))
		store.now = b.clock.Now
		_, err := b.client.Generate(ctx, newReq(b, "first"))
		require.NoError(t, err)
		b.server.ExpireCaches() // expired on the server while this instance still believes in it
		resp, err := b.client.Generate(ctx, newReq(b, "second"))
		require.NoError(t, err)
		require.NotEmpty(t, resp.Output)
		calls := b.server.Calls()
		require.Equal(t, 403, calls[len(calls)-2].Status)
		require.Empty(t, calls[len(calls)-1].CachedContent)
		require.Equal(t, []string{OutcomeSuccess, OutcomeSuccess}, b.store.outcomeResults(), "the key is not blamed for the cache")
	})

	t.Run("CreationFailureCallsUncached", func(t *testing.T) {
		t.Parallel()
		store := &memCaches{rows: map[CacheKey]CacheEntry{}}
		b := setup(t, withCaches(&bundleOpts{keys: [][2]string{{"AIza-one", "proj-a"}}, server: geminitest.Config{RejectCaches: true}}, store))
		store.now = b.clock.Now
		for range 3 {
			resp, err := b.client.Generate(ctx, newReq(b, "x"))
			require.NoError(t, err)
			require.Zero(t, resp.Usage.CachedTokens)
		}
		require.Equal(t, int64(1), b.client.CacheCounts().Failed, "creation is not retried on every call")
		require.Empty(t, store.rows)
	})

	t.Run("ImplicitCachingOfTheStablePrefix", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &bundleOpts{keys: [][2]string{{"AIza-one", "proj-a"}}, server: geminitest.Config{ImplicitCaching: true}})
		r1, err := b.client.Generate(ctx, newReq(b, "one"))
		require.NoError(t, err)
		require.Zero(t, r1.Usage.CachedTokens)
		r2, err := b.client.Generate(ctx, newReq(b, "two"))
		require.NoError(t, err)
		require.Greater(t, r2.Usage.CachedTokens, len(doc)/4-300, "the shared prefix is served from the implicit cache")
	})
}
