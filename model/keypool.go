package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
)

// Outcomes recorded by KeyStore.RecordOutcome (p_outcome of the SQL function
// public.record_key_outcome).
const (
	// OutcomeSuccess: the call reached the model (even if the content was then
	// rejected). Resets the key's failure count.
	OutcomeSuccess = "success"
	// OutcomeFailure: a failure that is not the key's fault (5xx, timeout).
	OutcomeFailure = "failure"
	// OutcomeRateLimited: the key's project hit a quota for the model; the
	// project/model is blocked until BlockedUntil.
	OutcomeRateLimited = "rate_limited"
	// OutcomeKeyBlocked: the key cannot be used until BlockedUntil.
	OutcomeKeyBlocked = "key_blocked"
	// OutcomeInvalid: the key is invalid or forbidden; it is deactivated with
	// Reason.
	OutcomeInvalid = "invalid"
)

// KeyStore is the durable key and health storage the pool needs. PgStore
// implements it over Postgres as the user (RLS applies); every method maps to
// one SQL function so a PostgREST implementation can call the same functions
// over RPC.
type KeyStore interface {
	// UsableKeys returns the user's active Gemini keys with their block state
	// for model (public.usable_api_keys).
	UsableKeys(ctx context.Context, userID uuid.UUID, model string) ([]StoredKey, error)
	// RecordOutcome updates health, blocks and the usage log
	// (public.record_key_outcome).
	RecordOutcome(ctx context.Context, userID uuid.UUID, o Outcome) error
}

// PoolKeyStore lists the operator's free-pool keys
// (public.pool_api_keys, service_role only).
type PoolKeyStore interface {
	// PoolKeys returns the active free-pool Gemini keys with their block
	// state for model, each with its owner (UserID) and the model's
	// free-tier limit from the model catalog (zero when unknown).
	PoolKeys(ctx context.Context, model string) ([]StoredKey, error)
}

// StoredKey is one row of public.usable_api_keys (or public.pool_api_keys).
type StoredKey struct {
	ID uuid.UUID
	// UserID is the row's owner; set for pool keys (the ciphertext is bound
	// to it), zero for the acting user's own keys.
	UserID uuid.UUID
	// FreeTierLimit is the model's free-tier budget per Google project (pool
	// keys only; zero fields: the configured limit applies).
	FreeTierLimit Limit
	// Name is key_name.
	Name string
	// Ciphertext is api_key_encrypted as stored (ciphertext or legacy plaintext).
	Ciphertext string `json:"-"`
	// ModelPreference is the model the owner prefers this key for.
	ModelPreference string
	// Priority orders keys, lower first.
	Priority int
	// Project is the Google project ("" when unknown).
	Project string
	// LastUsedAt is api_key_health.last_used_at (zero when never used).
	LastUsedAt time.Time
	// BlockedUntil is the key's own block (api_key_health.blocked_until).
	BlockedUntil time.Time
	// ProjectBlockedUntil is the block of (project, model).
	ProjectBlockedUntil time.Time
}

// Outcome is the result of one call with one key.
type Outcome struct {
	KeyID uuid.UUID
	Model string
	// Result is one of the Outcome* constants.
	Result string
	// ErrorCode is the Kind of the error, or "" on success.
	ErrorCode string
	// ErrorMessage is the key-free error message, or "".
	ErrorMessage string
	// BlockedUntil is set for OutcomeRateLimited and OutcomeKeyBlocked.
	BlockedUntil time.Time
	// Reason explains a block or deactivation.
	Reason string
	// Tokens is the total token count of the call.
	Tokens int
	// TaskID is the task the call was made for (may be zero).
	TaskID uuid.UUID
	// Latency is the duration of the call.
	Latency time.Duration
}

// Key is a usable key handed out by the pool. Its secret is unexported and
// never printed.
type Key struct {
	// ID is the user_api_keys.id, or "operator:<name>".
	ID string
	// Project is the Google project ("" when unknown).
	Project string
	// operator keys have no database row.
	operator bool
	// pool keys belong to the operator's account, not to the acting user:
	// their health is kept in memory, as for operator keys.
	pool    bool
	userKey uuid.UUID
	apiKey  string
}

// String never prints the secret.
func (k Key) String() string { return k.ID }

// LogValue never logs the secret.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.ID) }

// KeyPool hands out keys for (user, model) and learns from outcomes. It is
// safe for concurrent use; several pools (service instances) can share one
// database, which holds the durable blocks.
type KeyPool struct {
	baseservice.BaseService

	cfg    *Config
	store  KeyStore
	cipher *Cipher

	mu       sync.Mutex
	windows  map[groupModel]*slidingWindow
	blocks   map[groupModel]time.Time // local copy of project/model blocks
	keyBlock map[string]time.Time     // local key blocks (operator keys, and until the store catches up)
	lastUsed map[string]time.Time
	lastSeq  map[string]uint64 // breaks ties between keys used at the same instant
	nextID   uint64
}

// groupModel identifies a quota bucket: keys of one Google project share the
// quota of each model.
type groupModel struct {
	group string
	model string
}

// NewKeyPool builds a pool. store may be nil (operator keys only); cipher may
// be nil when no stored key is encrypted.
func NewKeyPool(cfg *Config, store KeyStore, cipher *Cipher) (*KeyPool, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cipher == nil {
		var err error
		if cipher, err = NewCipher(cfg.KEKs); err != nil {
			return nil, err
		}
	}
	return baseservice.Init(cfg.Archetype, &KeyPool{
		cfg:      cfg,
		store:    store,
		cipher:   cipher,
		windows:  map[groupModel]*slidingWindow{},
		blocks:   map[groupModel]time.Time{},
		keyBlock: map[string]time.Time{},
		lastUsed: map[string]time.Time{},
		lastSeq:  map[string]uint64{},
	}), nil
}

// Lease is a key checked out for one call. Call Release exactly once.
type Lease struct {
	Key     Key
	pool    *KeyPool
	bucket  groupModel
	model   string
	started time.Time
	eventID uint64
	userID  uuid.UUID
}

type candidate struct {
	key      Key
	prefers  bool
	priority int
	lastUsed time.Time
	freeAt   time.Time
	bucket   groupModel
	// limit overrides the configured limit of the model (free-tier limits
	// of pool keys).
	limit *Limit
}

// Acquire picks a key for model: active, not blocked, preferring keys whose
// model_preference is model, then by priority (lower first), then least
// recently used, with room in its project's per-minute budget for a request
// of about tokens input tokens. When none is free it returns a *NoKeyError
// with the earliest time one will be; when the user has no key at all, an
// *Error of KindNoKey that should fail the task. A stored key whose value
// cannot be decrypted (a KEK missing here, or a ciphertext bound to another
// row or owner) is skipped with a warning on Config.Logger.
func (p *KeyPool) Acquire(ctx context.Context, userID uuid.UUID, model string, tokens int) (*Lease, error) {
	cands, undecryptable, err := p.candidates(ctx, userID, model)
	if err != nil {
		return nil, err
	}
	return p.pick(cands, undecryptable, model, tokens, userID)
}

// AcquireFreePool picks a key for a free-pool task of userID
// (Request.FreePool): the operator's pool keys (Config.Pool.FreePool), then
// the operator keys, by the same rules as Acquire. The user's own keys, and
// every other user's personal keys, are never candidates.
func (p *KeyPool) AcquireFreePool(ctx context.Context, userID uuid.UUID, model string, tokens int) (*Lease, error) {
	cands, undecryptable, err := p.freePoolCandidates(ctx, model)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 && undecryptable == 0 {
		return nil, newError(KindNoKey, RetryNever, ScopeNone, 0,
			"no free-pool Gemini key: the operator has configured none (user_api_keys.pool_type free_pool or operator keys)", nil)
	}
	return p.pick(cands, undecryptable, model, tokens, userID)
}

// freePoolCandidates are the operator's pool keys (decrypted) and the
// operator keys.
func (p *KeyPool) freePoolCandidates(ctx context.Context, model string) ([]candidate, int, error) {
	var stored []StoredKey
	if p.cfg.Pool.FreePool != nil {
		var err error
		if stored, err = p.cfg.Pool.FreePool.PoolKeys(ctx, model); err != nil {
			return nil, 0, fmt.Errorf("error loading free-pool API keys: %w", err)
		}
	}
	cands := make([]candidate, 0, len(stored)+len(p.cfg.Pool.OperatorKeys))
	undecryptable := 0
	for _, sk := range stored {
		secret, err := p.cipher.Decrypt(sk.Ciphertext, KeyRow{ID: sk.ID, UserID: sk.UserID})
		if err != nil {
			undecryptable++
			p.Logger.WarnContext(ctx, "model: skipping free-pool API key that cannot be decrypted",
				slog.String("key_id", sk.ID.String()), slog.String("error", err.Error()))
			continue
		}
		group := "pool/key:" + sk.ID.String()
		if sk.Project != "" {
			group = "pool/project:" + sk.Project
		}
		c := candidate{
			key:      Key{ID: sk.ID.String(), Project: sk.Project, pool: true, apiKey: secret},
			prefers:  sk.ModelPreference == model,
			priority: sk.Priority,
			lastUsed: sk.LastUsedAt,
			bucket:   groupModel{group: group, model: model},
			freeAt:   latest(sk.BlockedUntil, sk.ProjectBlockedUntil),
		}
		if sk.FreeTierLimit != (Limit{}) {
			lim := sk.FreeTierLimit
			c.limit = &lim
		}
		cands = append(cands, c)
	}
	return append(cands, p.operatorCandidates(model)...), undecryptable, nil
}

// operatorCandidates are the operator keys from configuration.
func (p *KeyPool) operatorCandidates(model string) []candidate {
	cands := make([]candidate, 0, len(p.cfg.Pool.OperatorKeys))
	for _, ok := range p.cfg.Pool.OperatorKeys {
		group := "operator/key:" + ok.Name
		if ok.Project != "" {
			group = "operator/project:" + ok.Project
		}
		cands = append(cands, candidate{
			key:      Key{ID: ok.String(), Project: ok.Project, operator: true, apiKey: ok.APIKey},
			priority: cmp.Or(ok.Priority, 1),
			bucket:   groupModel{group: group, model: model},
		})
	}
	return cands
}

// keyOfProject returns one of the user's (or the operator's) keys whose
// cache scope (cacheScope) is project, for managing that project's cached
// contents. It takes no rate-limit budget.
func (p *KeyPool) keyOfProject(ctx context.Context, userID uuid.UUID, project, model string) (Key, bool, error) {
	cands, _, err := p.candidates(ctx, userID, model)
	if err != nil {
		return Key{}, false, err
	}
	for _, c := range cands {
		if cacheScope(c.key) == project {
			return c.key, true, nil
		}
	}
	return Key{}, false, nil
}

// candidates are the user's usable keys (decrypted) and the operator keys.
func (p *KeyPool) candidates(ctx context.Context, userID uuid.UUID, model string) ([]candidate, int, error) {
	var stored []StoredKey
	if p.store != nil && userID != uuid.Nil {
		var err error
		if stored, err = p.store.UsableKeys(ctx, userID, model); err != nil {
			return nil, 0, fmt.Errorf("error loading API keys: %w", err)
		}
	}
	cands := make([]candidate, 0, len(stored)+len(p.cfg.Pool.OperatorKeys))
	undecryptable := 0
	for _, sk := range stored {
		// The store returns the acting user's own rows (RLS), so the owner a
		// ciphertext must be bound to is userID.
		secret, err := p.cipher.Decrypt(sk.Ciphertext, KeyRow{ID: sk.ID, UserID: userID})
		if err != nil {
			// A value this instance cannot read (a KEK missing from its
			// configuration, or a ciphertext copied from another row) must
			// not stop the user's other keys from working.
			undecryptable++
			p.Logger.WarnContext(ctx, "model: skipping API key that cannot be decrypted",
				slog.String("key_id", sk.ID.String()), slog.String("user_id", userID.String()),
				slog.String("error", err.Error()))
			continue
		}
		group := "user:" + userID.String() + "/key:" + sk.ID.String()
		if sk.Project != "" {
			group = "user:" + userID.String() + "/project:" + sk.Project
		}
		c := candidate{
			key:      Key{ID: sk.ID.String(), Project: sk.Project, userKey: sk.ID, apiKey: secret},
			prefers:  sk.ModelPreference == model,
			priority: sk.Priority,
			lastUsed: sk.LastUsedAt,
			bucket:   groupModel{group: group, model: model},
		}
		c.freeAt = latest(sk.BlockedUntil, sk.ProjectBlockedUntil)
		cands = append(cands, c)
	}
	if p.cfg.Pool.OperatorKeysFreePoolOnly {
		return cands, undecryptable, nil
	}
	return append(cands, p.operatorCandidates(model)...), undecryptable, nil
}

// pick leases the best free candidate.
func (p *KeyPool) pick(cands []candidate, undecryptable int, model string, tokens int, userID uuid.UUID) (*Lease, error) {
	if len(cands) == 0 {
		if undecryptable > 0 {
			return nil, newError(KindNoKey, RetryNever, ScopeNone, 0, fmt.Sprintf(
				"no usable Gemini API key: %d stored key(s) cannot be decrypted; enter the key again in the API key settings",
				undecryptable), nil)
		}
		return nil, newError(KindNoKey, RetryNever, ScopeNone, 0,
			"no active Gemini API key: add one in the API key settings", nil)
	}

	lim, ok := p.cfg.Pool.Limits[model]
	if !ok {
		lim = p.cfg.Pool.DefaultLimit
	}
	now := p.Time.Now()

	p.mu.Lock()
	defer p.mu.Unlock()
	var free []candidate
	var earliest time.Time
	for _, c := range cands {
		c.freeAt = latest(c.freeAt, p.blocks[c.bucket], p.keyBlock[c.key.ID])
		w := p.windows[c.bucket]
		if w == nil {
			w = &slidingWindow{}
			p.windows[c.bucket] = w
		}
		cl := lim
		if c.limit != nil {
			cl = *c.limit
		}
		c.freeAt = latest(c.freeAt, w.availableAt(cl, tokens, now))
		c.lastUsed = latest(c.lastUsed, p.lastUsed[c.key.ID])
		if !c.freeAt.After(now) {
			free = append(free, c)
			continue
		}
		if earliest.IsZero() || c.freeAt.Before(earliest) {
			earliest = c.freeAt
		}
	}
	if len(free) == 0 {
		return nil, &NoKeyError{Until: earliest, Model: model}
	}
	slices.SortFunc(free, func(a, b candidate) int {
		if a.key.operator != b.key.operator {
			if a.key.operator {
				return 1
			}
			return -1
		}
		if a.prefers != b.prefers {
			if a.prefers {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.priority, b.priority), a.lastUsed.Compare(b.lastUsed),
			cmp.Compare(p.lastSeq[a.key.ID], p.lastSeq[b.key.ID]), cmp.Compare(a.key.ID, b.key.ID))
	})
	c := free[0]
	p.nextID++
	p.windows[c.bucket].add(now, tokens, p.nextID)
	p.lastUsed[c.key.ID] = now
	p.lastSeq[c.key.ID] = p.nextID
	return &Lease{Key: c.key, pool: p, bucket: c.bucket, model: model, started: now, eventID: p.nextID, userID: userID}, nil
}

// Release records the outcome of the call made with the lease: callErr is
// what the call returned (nil on success), usage what the model reported.
// Project-wide quota errors block every key of the project for the model;
// invalid or forbidden keys are deactivated; errors that are not the key's
// fault only count. The returned error concerns the bookkeeping only.
func (l *Lease) Release(ctx context.Context, taskID uuid.UUID, usage Usage, callErr error) error {
	p := l.pool
	now := p.Time.Now()
	o := Outcome{
		KeyID:   l.Key.userKey,
		Model:   l.model,
		Result:  OutcomeSuccess,
		Tokens:  usage.TotalTokens,
		TaskID:  taskID,
		Latency: now.Sub(l.started),
	}
	var me *Error
	if callErr != nil && !errors.As(callErr, &me) {
		// Cancellation or an unclassified failure: not the key's fault.
		o.Result, o.ErrorCode, o.ErrorMessage = OutcomeFailure, "error", callErr.Error()
	}
	if me != nil {
		o.ErrorCode, o.ErrorMessage = string(me.Kind), me.Message
		switch {
		case me.Scope == ScopeProject:
			until := me.Until
			if until.IsZero() {
				until = now.Add(cmp.Or(me.RetryAfter, p.cfg.Pool.RateLimitDelay))
			}
			o.Result, o.BlockedUntil, o.Reason = OutcomeRateLimited, until, string(me.Kind)
		case me.Kind == KindInvalidKey || me.Kind == KindPermissionDenied:
			o.Result, o.Reason = OutcomeInvalid, me.Message
		case me.Scope == ScopeKey:
			o.Result, o.BlockedUntil, o.Reason = OutcomeKeyBlocked, now.Add(p.cfg.Pool.KeyBlockDuration), me.Message
		case me.Kind == KindServer || me.Kind == KindTimeout || me.Kind == KindConnection:
			o.Result = OutcomeFailure
		}
	}

	p.mu.Lock()
	if usage.PromptTokens > 0 {
		p.windows[l.bucket].correct(l.eventID, usage.PromptTokens)
	}
	switch o.Result {
	case OutcomeRateLimited:
		p.blocks[l.bucket] = latest(p.blocks[l.bucket], o.BlockedUntil)
	case OutcomeKeyBlocked:
		p.keyBlock[l.Key.ID] = latest(p.keyBlock[l.Key.ID], o.BlockedUntil)
	case OutcomeInvalid:
		// The store deactivates user keys; this keeps the key out locally even
		// if recording fails, and is the only record for operator keys.
		p.keyBlock[l.Key.ID] = latest(p.keyBlock[l.Key.ID], now.Add(p.cfg.Pool.KeyBlockDuration))
	}
	p.mu.Unlock()

	if l.Key.operator || l.Key.pool || p.store == nil {
		return nil
	}
	if err := p.store.RecordOutcome(ctx, l.userID, o); err != nil {
		return fmt.Errorf("error recording outcome of key %s: %w", l.Key.ID, err)
	}
	return nil
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
