package model

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model/geminitest"
)

// memStore is a hand-written in-memory KeyStore with the semantics of the
// SQL functions (public.usable_api_keys, public.record_key_outcome).
type memStore struct {
	mu       sync.Mutex
	keys     []memKey
	blocks   map[string]time.Time // project/model
	outcomes []Outcome
	times    []time.Time
	now      func() time.Time
}

type memKey struct {
	StoredKey

	active       bool
	reason       string
	failures     int
	lastUsed     time.Time
	blockedUntil time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{blocks: map[string]time.Time{}, now: now}
}

func (s *memStore) add(k StoredKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, memKey{StoredKey: k, active: true})
}

func projectOf(k StoredKey) string {
	if k.Project != "" {
		return k.Project
	}
	return "key:" + k.ID.String()
}

func (s *memStore) UsableKeys(_ context.Context, _ uuid.UUID, model string) ([]StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredKey
	for _, k := range s.keys {
		if !k.active {
			continue
		}
		sk := k.StoredKey
		sk.LastUsedAt = k.lastUsed
		sk.BlockedUntil = k.blockedUntil
		sk.ProjectBlockedUntil = s.blocks[projectOf(sk)+"/"+model]
		out = append(out, sk)
	}
	return out, nil
}

func (s *memStore) RecordOutcome(_ context.Context, _ uuid.UUID, o Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outcomes = append(s.outcomes, o)
	s.times = append(s.times, s.now())
	for i := range s.keys {
		k := &s.keys[i]
		if k.ID != o.KeyID {
			continue
		}
		k.lastUsed = s.now()
		switch o.Result {
		case OutcomeSuccess:
			k.failures = 0
		case OutcomeRateLimited:
			k.failures++
			b := projectOf(k.StoredKey) + "/" + o.Model
			if o.BlockedUntil.After(s.blocks[b]) {
				s.blocks[b] = o.BlockedUntil
			}
		case OutcomeKeyBlocked:
			k.failures++
			k.blockedUntil = o.BlockedUntil
		case OutcomeInvalid:
			k.failures++
			k.active, k.reason = false, o.Reason
		}
		return nil
	}
	return fmt.Errorf("unknown key %s", o.KeyID)
}

func (s *memStore) outcomeResults() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.outcomes))
	for _, o := range s.outcomes {
		out = append(out, o.Result)
	}
	return out
}

// testBundle is a fake Gemini server, a fake clock, an in-memory store and
// a client wired to them.
type testBundle struct {
	clock  *baseservicetest.FakeClock
	server *geminitest.Server
	store  *memStore
	pool   *KeyPool
	client *Client
	user   uuid.UUID
	keyIDs []uuid.UUID
}

type bundleOpts struct {
	server geminitest.Config
	// keys are (secret, project) pairs stored for the user, in order.
	keys   [][2]string
	config Config
}

// pacificStart is a fixed test start time (a Wednesday morning in Pacific time).
var pacificStart = time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC) //nolint:gochecknoglobals // constant time

func setup(t *testing.T, opts *bundleOpts) *testBundle {
	t.Helper()
	clock := baseservicetest.NewFakeClock(pacificStart)
	scfg := opts.server
	scfg.Clock = clock
	if scfg.Keys == nil {
		scfg.Keys = map[string]string{}
		for _, k := range opts.keys {
			scfg.Keys[k[0]] = k[1]
		}
	}
	srv := geminitest.New(scfg)
	t.Cleanup(srv.Close)

	store := newMemStore(clock.Now)
	user := uuid.New()
	var ids []uuid.UUID
	for i, k := range opts.keys {
		id := uuid.New()
		ids = append(ids, id)
		store.add(StoredKey{ID: id, Name: fmt.Sprintf("key-%d", i), Ciphertext: k[0], Project: k[1], Priority: 1, ModelPreference: "gemini-test"})
	}
	cfg := opts.config
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: tr}
	cfg.BaseURL = srv.URL
	cfg.Archetype = clock.Archetype(nil)
	cfg.DefaultModel = "gemini-test"
	pool, err := NewKeyPool(&cfg, store, nil)
	require.NoError(t, err)
	client, err := NewClient(&cfg, pool)
	require.NoError(t, err)
	return &testBundle{clock: clock, server: srv, store: store, pool: pool, client: client, user: user, keyIDs: ids}
}

func (b *testBundle) request(prompt string, schema string) Request {
	r := Request{UserID: b.user, TaskID: uuid.New(), Prompt: prompt, Settings: Settings{Model: "gemini-test"}}
	if schema != "" {
		r.OutputSchema = []byte(schema)
	}
	return r
}

const quizSchema = `{
  "type": "object",
  "properties": {
    "title": {"type": "string", "description": "quiz title"},
    "difficulty": {"type": "string", "enum": ["easy", "medium", "hard"]},
    "questions": {
      "type": "array", "minItems": 2, "maxItems": 4,
      "items": {
        "type": "object",
        "properties": {
          "stem": {"type": "string"},
          "options": {"type": "array", "items": {"type": "string"}, "minItems": 4, "maxItems": 4},
          "answer_index": {"type": "integer", "minimum": 0, "maximum": 3},
          "explanation": {"type": "string", "nullable": true}
        },
        "required": ["stem", "options", "answer_index"]
      }
    }
  },
  "required": ["title", "difficulty", "questions"]
}`
