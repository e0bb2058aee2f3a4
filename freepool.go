package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
)

// freePoolKeys lists the operator's free-pool keys for free-tier tasks
// through public.pool_api_keys, with the service identity (the function is
// service_role only: a user never sees a pool key). The only other use of
// the service credential besides finding due work and expiring leases; it
// reads keys, never task content.
type freePoolKeys struct {
	db      supabase.DB
	service supabase.Identity
}

func (s freePoolKeys) PoolKeys(ctx context.Context, modelID string) ([]model.StoredKey, error) {
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
	out := make([]model.StoredKey, 0, len(rows))
	for _, r := range rows {
		k := model.StoredKey{
			ID: r.ID, UserID: r.UserID, Name: r.KeyName, Ciphertext: r.APIKeyEncrypted,
			ModelPreference: r.ModelPreference, Priority: r.Priority,
			FreeTierLimit: model.Limit{RPM: deref(r.FreeTierRPM), TPM: deref(r.FreeTierTPM)},
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

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
