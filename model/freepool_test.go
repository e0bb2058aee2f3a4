package model

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/model/geminitest"
)

// memPool is a PoolKeyStore over fixed rows.
type memPool struct {
	keys  []StoredKey
	calls int
}

func (p *memPool) PoolKeys(context.Context, string) ([]StoredKey, error) {
	p.calls++
	return p.keys, nil
}

// The key rule of the free tier: a free-pool request runs on the operator's
// pool keys, then the operator keys, and never on a personal key (the
// owner's included, though the store holds one); a personal request runs on
// the owner's keys and never on a pool key. The pool keys' budget is the
// model's free-tier limit from the catalog.
func TestKeyPoolFreePool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := baseservicetest.NewFakeClock(pacificStart)
	store := newMemStore(clock.Now)
	user, operator := uuid.New(), uuid.New()
	personal, poolKey := uuid.New(), uuid.New()
	store.add(StoredKey{ID: personal, Name: "mine", Ciphertext: "AIza-personal", ModelPreference: "gemini-test", Priority: 1})
	pool := &memPool{keys: []StoredKey{{
		ID: poolKey, UserID: operator, Name: "pool", Ciphertext: "AIza-pool", Priority: 1,
		FreeTierLimit: Limit{RPM: 2},
	}}}
	cfg := &Config{Archetype: clock.Archetype(nil), Pool: PoolConfig{
		FreePool:     pool,
		OperatorKeys: []OperatorKey{{Name: "op", APIKey: "AIza-operator"}},
		Limits:       map[string]Limit{"gemini-test": {RPM: 100}},
	}}
	kp, err := NewKeyPool(cfg, store, nil)
	require.NoError(t, err)

	var free []string
	for range 3 {
		lease, err := kp.AcquireFreePool(ctx, user, "gemini-test", 10)
		require.NoError(t, err)
		free = append(free, lease.Key.ID)
		require.NoError(t, lease.Release(ctx, uuid.New(), Usage{}, nil))
	}
	// The pool key twice (its free-tier RPM is 2), then the operator key.
	require.Equal(t, []string{poolKey.String(), poolKey.String(), "operator:op"}, free)
	require.Empty(t, store.outcomeResults(), "pool and operator keys record no outcome as the user")

	lease, err := kp.Acquire(ctx, user, "gemini-test", 10)
	require.NoError(t, err)
	require.Equal(t, personal.String(), lease.Key.ID, "a personal request uses the owner's key")
	require.NoError(t, lease.Release(ctx, uuid.New(), Usage{}, nil))
	require.Equal(t, 3, pool.calls, "a personal request never lists pool keys")

	// No pool key and no operator key: the free task fails with a clear
	// error, it does not fall back to the owner's personal key.
	bare, err := NewKeyPool(&Config{Archetype: clock.Archetype(nil), Pool: PoolConfig{FreePool: &memPool{}}}, store, nil)
	require.NoError(t, err)
	_, err = bare.AcquireFreePool(ctx, user, "gemini-test", 10)
	var me *Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindNoKey, me.Kind)
	require.Contains(t, me.Message, "no free-pool Gemini key")

	// Operator keys reserved for the free pool: a personal request of a
	// user without keys gets no operator key.
	reserved, err := NewKeyPool(&Config{Archetype: clock.Archetype(nil), Pool: PoolConfig{
		OperatorKeys: []OperatorKey{{Name: "op", APIKey: "AIza-operator"}}, OperatorKeysFreePoolOnly: true,
	}}, newMemStore(clock.Now), nil)
	require.NoError(t, err)
	_, err = reserved.Acquire(ctx, user, "gemini-test", 10)
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindNoKey, me.Kind)
	lease, err = reserved.AcquireFreePool(ctx, user, "gemini-test", 10)
	require.NoError(t, err)
	require.Equal(t, "operator:op", lease.Key.ID)

	// The fake server confirms which key served a free-pool request.
	srv := geminitest.New(geminitest.Config{Clock: clock, Keys: map[string]string{"AIza-personal": "p-user", "AIza-pool": "p-pool"}})
	t.Cleanup(srv.Close)
	ccfg := &Config{Archetype: clock.Archetype(nil), BaseURL: srv.URL, DefaultModel: "gemini-test", Pool: PoolConfig{FreePool: &memPool{keys: pool.keys}}}
	ckp, err := NewKeyPool(ccfg, store, nil)
	require.NoError(t, err)
	client, err := NewClient(ccfg, ckp)
	require.NoError(t, err)
	resp, err := client.Generate(ctx, Request{UserID: user, TaskID: uuid.New(), Prompt: "hi", FreePool: true, Settings: Settings{Model: "gemini-test"}})
	require.NoError(t, err)
	require.Equal(t, poolKey.String(), resp.KeyID)
	calls := srv.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, "p-pool", calls[0].Project)
}
