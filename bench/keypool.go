package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/model/geminitest"
)

// keypool: the fake Gemini server with per-project quotas (RPM, TPM, RPD),
// 6 keys in 3 projects, one project's daily quota running out before
// midnight Pacific, on a fake clock (model/keypool_test.go's approach):
// share of the available quota used, and 429s after the first minute.
func keypool(ctx context.Context, e *env) ([]Figure, error) {
	requests, rpm, tpm, rpdC := 1000, 10, 100000, 35
	if e.o.Quick {
		requests = 300
	}
	keys := [][2]string{
		{"AIza-a1", "proj-a"}, {"AIza-a2", "proj-a"},
		{"AIza-b1", "proj-b"}, {"AIza-b2", "proj-b"},
		{"AIza-c1", "proj-c"}, {"AIza-c2", "proj-c"},
	}
	pt, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		return nil, fmt.Errorf("error loading the Pacific time zone: %w", err)
	}
	start := time.Date(2026, 11, 25, 23, 52, 0, 0, pt) // midnight falls mid-run
	midnight := time.Date(2026, 11, 26, 0, 0, 0, 0, pt)
	clock := baseservicetest.NewFakeClock(start)
	scfg := geminitest.Config{
		Clock: clock, Keys: map[string]string{},
		Quotas: map[string]geminitest.Quota{
			"proj-a": {RPM: rpm, TPM: tpm}, "proj-b": {RPM: rpm, TPM: tpm}, "proj-c": {RPM: rpm, TPM: tpm, RPD: rpdC},
		},
	}
	for _, k := range keys {
		scfg.Keys[k[0]] = k[1]
	}
	srv := geminitest.New(scfg)
	defer srv.Close()
	store := newMemStore(clock.Now)
	for i, k := range keys {
		store.add(model.StoredKey{ID: uuid.New(), Name: fmt.Sprintf("key-%d", i), Ciphertext: k[0], Project: k[1], Priority: 1, ModelPreference: "gemini-test"})
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cfg := model.Config{
		HTTPClient: &http.Client{Transport: tr}, BaseURL: srv.URL, Archetype: clock.Archetype(nil), DefaultModel: "gemini-test",
		Pool: model.PoolConfig{Limits: map[string]model.Limit{"gemini-test": {RPM: rpm, TPM: tpm}}},
	}
	pool, err := model.NewKeyPool(&cfg, store, nil)
	if err != nil {
		return nil, fmt.Errorf("error building the key pool: %w", err)
	}
	client, err := model.NewClient(&cfg, pool)
	if err != nil {
		return nil, fmt.Errorf("error building the model client: %w", err)
	}
	user := uuid.New()
	for done := 0; done < requests; {
		_, err := client.Generate(ctx, model.Request{UserID: user, TaskID: uuid.New(), Prompt: fmt.Sprintf("request %d", done), Settings: model.Settings{Model: "gemini-test"}})
		var nk *model.NoKeyError
		switch {
		case err == nil:
			done++
		case errors.As(err, &nk):
			if !nk.Until.After(clock.Now()) {
				return nil, errors.New("keypool: no key free, and none will be")
			}
			clock.Set(nk.Until)
		default:
			return nil, fmt.Errorf("keypool: %w", err)
		}
	}
	end := clock.Now()
	calls, stats := srv.Calls(), srv.Stats()

	var exhaustedAt time.Time
	var blockedCalls int
	for _, c := range calls {
		if c.Project != "proj-c" {
			continue
		}
		switch {
		case c.Status == http.StatusTooManyRequests && exhaustedAt.IsZero() && c.At.Before(midnight):
			exhaustedAt = c.At
		case !exhaustedAt.IsZero() && c.At.After(exhaustedAt) && c.At.Before(midnight):
			blockedCalls++
		}
	}
	if exhaustedAt.IsZero() {
		exhaustedAt = midnight
	}
	var late, late429 int
	for _, c := range calls {
		if c.At.Sub(start) < time.Minute {
			continue
		}
		late++
		if c.Status == http.StatusTooManyRequests {
			late429++
		}
	}
	bursts := func(from, to time.Time) int {
		if to.Before(from) {
			return 0
		}
		return int(to.Sub(from)/time.Minute) + 1
	}
	// Requests the projects allowed over the run: rpm at the start of every
	// minute for a and b; c until its daily quota ran out, and again after
	// midnight up to the new day's quota.
	available := rpm*bursts(start, end)*2 + min(rpm*bursts(start, exhaustedAt), rpdC) + min(rpm*bursts(midnight, end), rpdC)
	used := 100 * float64(stats.OK) / float64(available)
	rate429 := 100 * float64(late429) / float64(max(late, 1))
	return []Figure{
		{Name: fmt.Sprintf("quota used (%d requests, %s fake time)", requests, end.Sub(start).Round(time.Second)), Unit: "%", Value: used,
			Baseline: 95, BaselineName: "target", HigherIsBetter: true, Target: "≥ 95 %", Met: boolPtr(used >= 95)},
		{Name: "429s after the first minute", Unit: "%", Value: rate429, Baseline: 1, BaselineName: "target", Target: "< 1 %", Met: boolPtr(rate429 < 1)},
		{Name: "calls to proj-c while its daily quota was exhausted", Unit: "calls", Value: float64(blockedCalls), Target: "0", Met: boolPtr(blockedCalls == 0)},
	}, nil
}

// memStore is an in-memory model.KeyStore with the semantics of
// public.usable_api_keys and public.record_key_outcome (as in the model
// package's tests).
type memStore struct {
	mu     sync.Mutex
	keys   []memKey
	blocks map[string]time.Time // project/model
	now    func() time.Time
}

type memKey struct {
	model.StoredKey
	active       bool
	lastUsed     time.Time
	blockedUntil time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{blocks: map[string]time.Time{}, now: now}
}

func (s *memStore) add(k model.StoredKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, memKey{StoredKey: k, active: true})
}

func projectOf(k model.StoredKey) string {
	if k.Project != "" {
		return k.Project
	}
	return "key:" + k.ID.String()
}

func (s *memStore) UsableKeys(_ context.Context, _ uuid.UUID, modelID string) ([]model.StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []model.StoredKey
	for _, k := range s.keys {
		if !k.active {
			continue
		}
		sk := k.StoredKey
		sk.LastUsedAt, sk.BlockedUntil = k.lastUsed, k.blockedUntil
		sk.ProjectBlockedUntil = s.blocks[projectOf(sk)+"/"+modelID]
		out = append(out, sk)
	}
	return out, nil
}

func (s *memStore) RecordOutcome(_ context.Context, _ uuid.UUID, o model.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.keys {
		k := &s.keys[i]
		if k.ID != o.KeyID {
			continue
		}
		k.lastUsed = s.now()
		switch o.Result {
		case model.OutcomeRateLimited:
			b := projectOf(k.StoredKey) + "/" + o.Model
			if o.BlockedUntil.After(s.blocks[b]) {
				s.blocks[b] = o.BlockedUntil
			}
		case model.OutcomeKeyBlocked:
			k.blockedUntil = o.BlockedUntil
		case model.OutcomeInvalid:
			k.active = false
		}
		return nil
	}
	return fmt.Errorf("unknown key %s", o.KeyID)
}
