package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
)

// CacheStore is model.CacheStore over the data path: gemini_caches through
// the SQL API (find/record/renew_gemini_cache), as the cache's owner, so RLS
// applies and every instance sees the same cached contents.
type CacheStore struct {
	db  supabase.DB
	ids IdentitySource
}

var _ model.CacheStore = (*CacheStore)(nil)

// NewCacheStore returns a CacheStore acting as each owner through ids.
func NewCacheStore(db supabase.DB, ids IdentitySource) *CacheStore {
	return &CacheStore{db: db, ids: ids}
}

type cacheRow struct {
	CacheName   string    `json:"cache_name"`
	ExpiresAt   time.Time `json:"expires_at"`
	TotalTokens int       `json:"total_tokens"`
	Won         bool      `json:"won"`
	Replaced    string    `json:"replaced"`
}

// FindCache implements model.CacheStore.
func (s *CacheStore) FindCache(ctx context.Context, user uuid.UUID, k model.CacheKey, validUntil time.Time) (model.CacheEntry, bool, error) {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return model.CacheEntry{}, false, err
	}
	var row *cacheRow
	args := map[string]any{"p_batch_id": k.BatchID, "p_model": k.Model, "p_content_hash": k.ContentHash, "p_project": k.Project, "p_valid_until": validUntil.UTC()}
	if err := s.db.RPC(supabase.Idempotent(ctx), id, "find_gemini_cache", args, &row); err != nil {
		return model.CacheEntry{}, false, fmt.Errorf("error finding cached content: %w", err)
	}
	if row == nil || row.CacheName == "" {
		return model.CacheEntry{}, false, nil
	}
	return model.CacheEntry{Name: row.CacheName, ExpiresAt: row.ExpiresAt, Tokens: row.TotalTokens}, true, nil
}

// RecordCache implements model.CacheStore.
func (s *CacheStore) RecordCache(ctx context.Context, user uuid.UUID, k model.CacheKey, e model.CacheEntry) (model.CacheEntry, bool, string, error) {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return model.CacheEntry{}, false, "", err
	}
	var row cacheRow
	args := map[string]any{
		"p_batch_id": k.BatchID, "p_model": k.Model, "p_content_hash": k.ContentHash, "p_project": k.Project,
		"p_cache_name": e.Name, "p_total_tokens": e.Tokens, "p_expires_at": e.ExpiresAt.UTC(),
	}
	if err := s.db.RPC(ctx, id, "record_gemini_cache", args, &row); err != nil {
		return model.CacheEntry{}, false, "", fmt.Errorf("error recording cached content: %w", err)
	}
	return model.CacheEntry{Name: row.CacheName, ExpiresAt: row.ExpiresAt, Tokens: e.Tokens}, row.Won, row.Replaced, nil
}

// RenewCache implements model.CacheStore.
func (s *CacheStore) RenewCache(ctx context.Context, user uuid.UUID, name string, expiresAt time.Time) error {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return err
	}
	args := map[string]any{"p_cache_name": name, "p_expires_at": expiresAt.UTC()}
	if err := s.db.RPC(supabase.Idempotent(ctx), id, "renew_gemini_cache", args, nil); err != nil {
		return fmt.Errorf("error recording cached content renewal: %w", err)
	}
	return nil
}
