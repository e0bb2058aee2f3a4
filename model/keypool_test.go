package model

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model/geminitest"
)

// TestKeyPoolScenario runs 500 requests through 6 keys in 3 projects against
// per-project RPM limits, with one project's daily quota running out before
// midnight Pacific, on a fake clock.
func TestKeyPoolScenario(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		requests = 500
		rpm      = 10
		rpdC     = 35
	)
	keys := [][2]string{
		{"AIza-a1", "proj-a"},
		{"AIza-a2", "proj-a"},
		{"AIza-b1", "proj-b"},
		{"AIza-b2", "proj-b"},
		{"AIza-c1", "proj-c"},
		{"AIza-c2", "proj-c"},
	}
	b := setup(t, &bundleOpts{
		server: geminitest.Config{
			Quotas: map[string]geminitest.Quota{
				"proj-a": {RPM: rpm}, "proj-b": {RPM: rpm}, "proj-c": {RPM: rpm, RPD: rpdC},
			},
		},
		keys:   keys,
		config: Config{Pool: PoolConfig{Limits: map[string]Limit{"gemini-test": {RPM: rpm}}}},
	})
	// 23:52 Pacific: midnight (the daily reset) falls in the middle of the run.
	pt, err := time.LoadLocation("America/Los_Angeles")
	require.NoError(t, err)
	start := time.Date(2026, 11, 25, 23, 52, 0, 0, pt)
	b.clock.Set(start)
	midnight := time.Date(2026, 11, 26, 0, 0, 0, 0, pt)

	waits := 0
	for done := 0; done < requests; {
		_, err := b.client.Generate(ctx, b.request(fmt.Sprintf("request %d", done), ""))
		var nk *NoKeyError
		switch {
		case err == nil:
			done++
		case errors.As(err, &nk):
			require.True(t, nk.Until.After(b.clock.Now()), "no key free, and none will be")
			b.clock.Set(nk.Until)
			waits++
		default:
			require.NoError(t, err)
		}
	}
	end := b.clock.Now()

	calls := b.server.Calls()
	stats := b.server.Stats()
	require.Equal(t, requests, stats.OK)

	// No request reached a project while the pool had it blocked.
	b.store.mu.Lock()
	for i, o := range b.store.outcomes {
		if o.Result != OutcomeRateLimited {
			continue
		}
		at, project := b.store.times[i], keyProject(b, o.KeyID)
		for _, c := range calls {
			if c.Project == project && c.At.After(at) && c.At.Before(o.BlockedUntil) {
				t.Errorf("call to %s at %s while blocked from %s until %s", project, c.At, at, o.BlockedUntil)
			}
		}
	}
	b.store.mu.Unlock()

	// The daily quota of proj-c: exhausted before midnight, no calls until
	// midnight, used again after (until the new day's quota runs out too).
	var cBefore, cBlockedCalls, cAfter int
	var exhaustedAt time.Time
	for _, c := range calls {
		if c.Project != "proj-c" {
			continue
		}
		switch {
		case c.Status == http.StatusTooManyRequests && exhaustedAt.IsZero():
			exhaustedAt = c.At
		case c.At.Before(midnight) && exhaustedAt.IsZero():
			cBefore++
		case c.At.Before(midnight):
			cBlockedCalls++
		default:
			cAfter++
		}
	}
	require.Equal(t, rpdC, cBefore)
	require.False(t, exhaustedAt.IsZero(), "proj-c's daily quota should run out")
	require.Zero(t, cBlockedCalls, "proj-c called after its daily quota ran out, before the reset")
	require.Positive(t, cAfter, "proj-c not used again after midnight Pacific")
	// The new day's quota runs out again before the end of the run.
	require.Equal(t, 2, stats.ByProject["proj-c"].PerDay)

	// 429s after the first minute (warm-up).
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
	rate429 := float64(late429) / float64(late)
	require.Less(t, rate429, 0.01)

	// Quota used: successful calls against what the three projects allowed
	// over the run (per-minute windows, minus proj-c's blocked stretch).
	// A project can take rpm requests at the start of every minute of the run.
	bursts := func(from, to time.Time) int {
		if to.Before(from) {
			return 0
		}
		return int(to.Sub(from)/time.Minute) + 1
	}
	available := rpm*bursts(start, end)*2 + min(rpm*bursts(start, exhaustedAt), rpdC) + min(rpm*bursts(midnight, end), rpdC)
	used := float64(stats.OK) / float64(available)
	require.GreaterOrEqual(t, used, 0.95)

	perKey := map[int]int{}
	for _, c := range calls {
		if c.Status == http.StatusOK {
			perKey[c.KeyIndex]++
		}
	}
	t.Logf("key pool scenario: %d requests in %s of fake time, %d waits for a free key", requests, end.Sub(start), waits)
	t.Logf("calls=%d ok=%d 429=%d (per-day %d); 429s after warm-up %d/%d = %.2f%%", stats.Requests, stats.OK, stats.RateLimited,
		stats.ByProject["proj-c"].PerDay, late429, late, 100*rate429)
	t.Logf("quota used %d/%d = %.1f%%; proj-c: %d calls before its daily quota ran out at %s, %d while blocked, %d after midnight",
		stats.OK, available, 100*used, cBefore, exhaustedAt.In(pt).Format(time.TimeOnly), cBlockedCalls, cAfter)
	t.Logf("ok per project: a=%d b=%d c=%d; ok per key (sorted key index): %v", stats.ByProject["proj-a"].OK,
		stats.ByProject["proj-b"].OK, stats.ByProject["proj-c"].OK, perKey)
}

func keyProject(b *testBundle, id uuid.UUID) string {
	for _, k := range b.store.keys {
		if k.ID == id {
			return k.Project
		}
	}
	return ""
}

func TestKeyPoolSelection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := baseservicetest.NewFakeClock(pacificStart)
	store := newMemStore(clock.Now)
	user := uuid.New()
	ids := map[string]uuid.UUID{}
	for _, k := range []struct {
		name, pref, project string
		priority            int
	}{
		{"low-priority", "gemini-test", "p1", 5},
		{"other-model", "gemini-other", "p2", 1},
		{"preferred-1", "gemini-test", "p3", 2},
		{"preferred-2", "gemini-test", "p4", 2},
	} {
		id := uuid.New()
		ids[k.name] = id
		store.add(StoredKey{ID: id, Name: k.name, Ciphertext: "AIza-" + k.name, ModelPreference: k.pref, Priority: k.priority, Project: k.project})
	}
	pool, err := NewKeyPool(&Config{Archetype: clock.Archetype(nil), Pool: PoolConfig{Limits: map[string]Limit{"gemini-test": {RPM: 1}}}}, store, nil)
	require.NoError(t, err)

	var got []string
	for range 4 {
		lease, err := pool.Acquire(ctx, user, "gemini-test", 10)
		require.NoError(t, err)
		require.NoError(t, lease.Release(ctx, uuid.Nil, Usage{TotalTokens: 5}, nil))
		for name, id := range ids {
			if id.String() == lease.Key.ID {
				got = append(got, name)
			}
		}
	}
	// Preferred model first, then priority, then least recently used; each
	// project has RPM 1, so every key is used once.
	require.ElementsMatch(t, []string{"preferred-1", "preferred-2"}, got[:2])
	require.Equal(t, []string{"low-priority", "other-model"}, got[2:])

	_, err = pool.Acquire(ctx, user, "gemini-test", 10)
	var nk *NoKeyError
	require.ErrorAs(t, err, &nk)
	require.Equal(t, pacificStart.Add(time.Minute), nk.Until)
}

func TestSlidingWindowTokens(t *testing.T) {
	t.Parallel()
	now := pacificStart
	var w slidingWindow
	lim := Limit{TPM: 100}
	require.Equal(t, now, w.availableAt(lim, 60, now))
	w.add(now, 60, 1)
	require.Equal(t, now.Add(time.Minute), w.availableAt(lim, 60, now.Add(time.Second)))
	w.correct(1, 30) // the model reported fewer tokens than estimated
	require.Equal(t, now.Add(time.Second), w.availableAt(lim, 60, now.Add(time.Second)))
	// A request larger than the budget waits for an empty window.
	require.Equal(t, now.Add(time.Minute), w.availableAt(lim, 500, now.Add(time.Second)))
}
