package model

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/supabase"
)

// IdentitySource gives the identity to act as for a user
// (*supabase.UserIdentities satisfies it).
type IdentitySource interface {
	Identity(ctx context.Context, user uuid.UUID) (supabase.Identity, error)
}

// RPCStore is the KeyStore over the data path (PostgREST, or the direct
// transport), as the key's owner: the same SQL functions PgStore calls
// directly (public.usable_api_keys, public.record_key_outcome), so the RLS
// policies apply in the same way.
type RPCStore struct {
	db  supabase.DB
	ids IdentitySource
}

// NewRPCStore returns a store that calls db as the identity ids gives for
// each key's owner.
func NewRPCStore(db supabase.DB, ids IdentitySource) *RPCStore {
	return &RPCStore{db: db, ids: ids}
}

// UsableKeys returns the user's active Gemini keys with their block state.
func (s *RPCStore) UsableKeys(ctx context.Context, user uuid.UUID, modelID string) ([]StoredKey, error) {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID                  uuid.UUID  `json:"id"`
		KeyName             string     `json:"key_name"`
		APIKeyEncrypted     string     `json:"api_key_encrypted"`
		ModelPreference     string     `json:"model_preference"`
		Priority            int        `json:"priority"`
		Project             *string    `json:"project"`
		LastUsedAt          *time.Time `json:"last_used_at"`
		BlockedUntil        *time.Time `json:"blocked_until"`
		ProjectBlockedUntil *time.Time `json:"project_blocked_until"`
	}
	if err := s.db.RPC(supabase.Idempotent(ctx), id, "usable_api_keys", map[string]any{"p_model": modelID}, &rows); err != nil {
		return nil, fmt.Errorf("error loading usable keys: %w", err)
	}
	out := make([]StoredKey, 0, len(rows))
	for _, r := range rows {
		out = append(out, StoredKey{
			ID: r.ID, Name: r.KeyName, Ciphertext: r.APIKeyEncrypted, ModelPreference: r.ModelPreference, Priority: r.Priority,
			Project: deref(r.Project), LastUsedAt: deref(r.LastUsedAt), BlockedUntil: deref(r.BlockedUntil),
			ProjectBlockedUntil: deref(r.ProjectBlockedUntil),
		})
	}
	return out, nil
}

// RecordOutcome records one call's outcome for the key.
func (s *RPCStore) RecordOutcome(ctx context.Context, user uuid.UUID, o Outcome) error {
	id, err := s.ids.Identity(ctx, user)
	if err != nil {
		return err
	}
	reason := o.Reason
	if reason == "" {
		reason = o.ErrorMessage
	}
	args := map[string]any{
		"p_key_id": o.KeyID, "p_model": o.Model, "p_outcome": o.Result,
		"p_error_code": nilIfEmpty(o.ErrorCode), "p_blocked_until": nilIfZero(o.BlockedUntil),
		"p_reason": nilIfEmpty(reason), "p_tokens": o.Tokens,
		"p_task_id": nilIfNilUUID(o.TaskID), "p_latency_ms": o.Latency.Milliseconds(),
	}
	if err := s.db.RPC(ctx, id, "record_key_outcome", args, nil); err != nil {
		return fmt.Errorf("error recording key outcome: %w", err)
	}
	return nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nilIfZero(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func nilIfNilUUID(u uuid.UUID) any {
	if u == uuid.Nil {
		return nil
	}
	return u
}

// RPCPoolStore is the PoolKeyStore over the data path: it lists the
// operator's free-pool keys for free-tier tasks through public.pool_api_keys,
// with the service identity (the function is service_role only: a user never
// sees a pool key). The only other use of the service credential besides
// finding due work and expiring leases; it reads keys, never task content.
type RPCPoolStore struct {
	db      supabase.DB
	service supabase.Identity
}

// NewRPCPoolStore returns a store that calls db as service (the service
// identity, supabase.ServiceIdentity).
func NewRPCPoolStore(db supabase.DB, service supabase.Identity) *RPCPoolStore {
	return &RPCPoolStore{db: db, service: service}
}

// PoolKeys returns the free-pool keys usable for modelID with their block
// state and free-tier budgets.
func (s *RPCPoolStore) PoolKeys(ctx context.Context, modelID string) ([]StoredKey, error) {
	var rows []struct {
		ID                  uuid.UUID  `json:"id"`
		UserID              uuid.UUID  `json:"user_id"`
		KeyName             string     `json:"key_name"`
		APIKeyEncrypted     string     `json:"api_key_encrypted"`
		ModelPreference     string     `json:"model_preference"`
		Priority            int        `json:"priority"`
		Project             *string    `json:"project"`
		LastUsedAt          *time.Time `json:"last_used_at"`
		BlockedUntil        *time.Time `json:"blocked_until"`
		ProjectBlockedUntil *time.Time `json:"project_blocked_until"`
		FreeTierRPM         *int       `json:"free_tier_rpm"`
		FreeTierTPM         *int       `json:"free_tier_tpm"`
	}
	if err := s.db.RPC(supabase.Idempotent(ctx), s.service, "pool_api_keys", map[string]any{"p_model": modelID}, &rows); err != nil {
		return nil, fmt.Errorf("error loading free-pool keys: %w", err)
	}
	out := make([]StoredKey, 0, len(rows))
	for _, r := range rows {
		k := StoredKey{
			ID: r.ID, UserID: r.UserID, Name: r.KeyName, Ciphertext: r.APIKeyEncrypted,
			ModelPreference: r.ModelPreference, Priority: r.Priority,
			FreeTierLimit: Limit{RPM: deref(r.FreeTierRPM), TPM: deref(r.FreeTierTPM)},
		}
		if r.Project != nil {
			k.Project = *r.Project
		}
		if r.LastUsedAt != nil {
			k.LastUsedAt = *r.LastUsedAt
		}
		if r.BlockedUntil != nil {
			k.BlockedUntil = *r.BlockedUntil
		}
		if r.ProjectBlockedUntil != nil {
			k.ProjectBlockedUntil = *r.ProjectBlockedUntil
		}
		out = append(out, k)
	}
	return out, nil
}
