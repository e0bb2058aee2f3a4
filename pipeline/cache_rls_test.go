package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// gemini_caches as an attacker would try it: another user can neither find,
// record into, renew nor release the owner's cached contents, nor record one
// for the owner's batch; the janitor leaves a running batch's live cache
// alone and releases it once the batch has nothing left to run.
func TestGeminiCachesOwnerOnlyAndJanitorTiming(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	other := dbtest.CreateUser(ctx, t, b.pool)
	tpl := "tpl-c-" + uuid.NewString()[:8] // fresh, so -count=N stays green
	b.templates(ctx, t, b.user, stage{id: tpl, key: "c", prompt: "FAKE echo hi"})
	batch := b.launch(ctx, t, b.user, tpl, map[string]any{"x": 1})
	store := pipeline.NewCacheStore(b.db, claimsIdentity{})
	k := model.CacheKey{BatchID: batch, Model: "gemini-test", ContentHash: "h1", Project: "proj-a"}
	exp := time.Now().Add(10 * time.Minute)

	kept, won, _, err := store.RecordCache(ctx, b.user, k, model.CacheEntry{Name: "cachedContents/a1", ExpiresAt: exp, Tokens: 5000})
	require.NoError(t, err)
	require.True(t, won)
	require.Equal(t, "cachedContents/a1", kept.Name)
	// A second instance that created its own keeps the first.
	kept, won, _, err = store.RecordCache(ctx, b.user, k, model.CacheEntry{Name: "cachedContents/a2", ExpiresAt: exp})
	require.NoError(t, err)
	require.False(t, won)
	require.Equal(t, "cachedContents/a1", kept.Name)

	// The other user sees nothing and can change nothing.
	_, ok, err := store.FindCache(ctx, other, k, time.Now())
	require.NoError(t, err)
	require.False(t, ok)
	_, _, _, err = store.RecordCache(ctx, other, k, model.CacheEntry{Name: "cachedContents/evil", ExpiresAt: exp}) //nolint:dogsled // only the refusal matters
	require.Error(t, err, "no row for another user's batch")
	require.NoError(t, store.RenewCache(ctx, other, "cachedContents/a1", exp.Add(time.Hour)))
	oid, _ := claimsIdentity{}.Identity(ctx, other)
	var released []map[string]any
	require.NoError(t, b.db.RPC(ctx, oid, "release_gemini_caches", map[string]any{"p_batch_id": batch}, &released))
	require.Empty(t, released)
	found, ok, err := store.FindCache(ctx, b.user, k, time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.WithinDuration(t, exp, found.ExpiresAt, time.Second, "the other user's renewal changed nothing")

	// The janitor: the batch still has a task to run, so its live cache stays.
	del := &recordingDeleter{}
	j := pipeline.NewCacheJanitor(&pipeline.CacheJanitorConfig{}, b.db, supabase.ServiceIdentity(""), claimsIdentity{}, del)
	sweep, err := j.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, sweep.Released)
	// Once nothing is left to run, it is released and deleted with the project's key.
	_, err = b.pool.Exec(ctx, `update public.ai_tasks set status = 'cancelled' where batch_id = $1`, batch)
	require.NoError(t, err)
	sweep, err = j.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, pipeline.CacheSweep{Batches: 1, Released: 1, Deleted: 1}, sweep)
	require.Equal(t, []string{b.user.String() + " proj-a gemini-test cachedContents/a1"}, del.calls)
	_, ok, err = store.FindCache(ctx, b.user, k, time.Now())
	require.NoError(t, err)
	require.False(t, ok)
}

type recordingDeleter struct{ calls []string }

func (d *recordingDeleter) DeleteCache(_ context.Context, user uuid.UUID, project, modelID, name string) error {
	d.calls = append(d.calls, user.String()+" "+project+" "+modelID+" "+name)
	return nil
}
