package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TxBeginner starts transactions; *pgxpool.Pool and *pgx.Conn satisfy it.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// PgStore is the KeyStore over Postgres. Each call runs in its own
// transaction as the key owner, exactly as PostgREST does (set local role
// authenticated, request.jwt.claims = {"sub": user, "role": "authenticated"}),
// so the RLS policies apply, and calls one SQL function
// (public.usable_api_keys, public.record_key_outcome).
type PgStore struct {
	db TxBeginner
}

// NewPgStore returns a store over db.
func NewPgStore(db TxBeginner) *PgStore { return &PgStore{db: db} }

const (
	usableKeysSQL = `select id, key_name, api_key_encrypted, model_preference, priority, coalesce(project, ''),
  last_used_at, blocked_until, project_blocked_until
from public.usable_api_keys($1)`
	recordOutcomeSQL = `select public.record_key_outcome($1, $2, $3, $4, $5, $6, $7, $8, $9)`
)

// UsableKeys returns the user's active Gemini keys with their block state.
func (s *PgStore) UsableKeys(ctx context.Context, userID uuid.UUID, model string) ([]StoredKey, error) {
	var keys []StoredKey
	err := s.asUser(ctx, userID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, usableKeysSQL, model)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k StoredKey
			var name, pref *string
			var prio *int32
			var lastUsed, blocked, projBlocked *time.Time
			if err := rows.Scan(&k.ID, &name, &k.Ciphertext, &pref, &prio, &k.Project, &lastUsed, &blocked, &projBlocked); err != nil {
				return err
			}
			k.Name, k.ModelPreference = deref(name), deref(pref)
			k.Priority = int(deref(prio))
			k.LastUsedAt, k.BlockedUntil, k.ProjectBlockedUntil = deref(lastUsed), deref(blocked), deref(projBlocked)
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("error loading usable keys: %w", err)
	}
	return keys, nil
}

// RecordOutcome records one call's outcome for the key.
func (s *PgStore) RecordOutcome(ctx context.Context, userID uuid.UUID, o Outcome) error {
	err := s.asUser(ctx, userID, func(tx pgx.Tx) error {
		reason := o.Reason
		if reason == "" {
			reason = o.ErrorMessage
		}
		var taskID *uuid.UUID
		if o.TaskID != uuid.Nil {
			taskID = &o.TaskID
		}
		_, err := tx.Exec(ctx, recordOutcomeSQL, o.KeyID, o.Model, o.Result, nullString(o.ErrorCode), nullTime(o.BlockedUntil),
			nullString(reason), int32(min(o.Tokens, 1<<31-1)), taskID, int32(min(o.Latency.Milliseconds(), 1<<31-1))) //nolint:gosec // bounded
		return err
	})
	if err != nil {
		return fmt.Errorf("error recording key outcome: %w", err)
	}
	return nil
}

// asUser runs fn in a transaction acting as the user.
func (s *PgStore) asUser(ctx context.Context, userID uuid.UUID, fn func(pgx.Tx) error) error {
	claims, err := json.Marshal(map[string]string{"sub": userID.String(), "role": "authenticated"})
	if err != nil {
		return err
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "set local role authenticated"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "select set_config('request.jwt.claims', $1, true)", string(claims)); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// EncryptResult counts what EncryptStoredKeys did.
type EncryptResult struct {
	// Scanned is the number of user_api_keys rows read.
	Scanned int
	// Encrypted is the number of plaintext rows encrypted.
	Encrypted int
	// Reencrypted is the number of ciphertexts rewritten as v2 under the
	// active KEK (legacy v1 values, and values under an older KEK).
	Reencrypted int
	// Unreadable lists the rows left as they were because their value cannot
	// be decrypted with the configured KEKs (a KEK missing from the
	// configuration, a corrupted value, or a ciphertext copied from another
	// row). The service skips these keys.
	Unreadable []UnreadableKey
}

// UnreadableKey is a row EncryptStoredKeys could not decrypt.
type UnreadableKey struct {
	ID     uuid.UUID
	UserID uuid.UUID
	// Err wraps ErrDecrypt and never contains key material.
	Err error
}

// EncryptStoredKeys encrypts every plaintext user_api_keys.api_key_encrypted
// with the active KEK, bound to its row and owner (enc:v2), and rewrites
// legacy v1 values and values written under an older KEK the same way, in
// one transaction. It is idempotent: a second run changes nothing. It must
// run with a connection that can read and update every row (the table owner
// or the service role); `orchable keys encrypt` calls it.
//
// A value that cannot be decrypted is left as it is and reported in
// Unreadable rather than aborting the run: users write this column
// themselves, so one tenant's bad value must not stop the operator from
// rotating everyone else's keys.
func EncryptStoredKeys(ctx context.Context, db TxBeginner, c *Cipher) (EncryptResult, error) {
	var res EncryptResult
	if c.ActiveKID() == "" {
		return res, errors.New("cannot encrypt API keys: no KEK configured")
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("error beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `select id, user_id, api_key_encrypted from public.user_api_keys order by id for update`)
	if err != nil {
		return res, fmt.Errorf("error reading user_api_keys: %w", err)
	}
	type row struct {
		KeyRow

		stored string
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.ID, &r.UserID, &r.stored); err != nil {
			rows.Close()
			return res, fmt.Errorf("error reading user_api_keys: %w", err)
		}
		res.Scanned++
		if c.NeedsRewrite(r.stored) {
			todo = append(todo, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("error reading user_api_keys: %w", err)
	}
	for _, r := range todo {
		plain, err := c.Decrypt(r.stored, r.KeyRow)
		if err != nil {
			res.Unreadable = append(res.Unreadable, UnreadableKey{ID: r.ID, UserID: r.UserID, Err: err})
			continue
		}
		enc, err := c.Encrypt(plain, r.KeyRow)
		if err != nil {
			return EncryptResult{}, fmt.Errorf("error encrypting key %s: %w", r.ID, err)
		}
		if _, err := tx.Exec(ctx, `update public.user_api_keys set api_key_encrypted = $2 where id = $1`, r.ID, enc); err != nil {
			return EncryptResult{}, fmt.Errorf("error updating key %s: %w", r.ID, err)
		}
		if IsEncrypted(r.stored) {
			res.Reencrypted++
		} else {
			res.Encrypted++
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return EncryptResult{}, fmt.Errorf("error committing encrypted keys: %w", err)
	}
	return res, nil
}
