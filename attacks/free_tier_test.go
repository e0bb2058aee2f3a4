package attacks_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestFreeTierAttacks: B, a free user, tries to get more than the free tier
// gives (issue #15 part 2; docs/threat-model.md "Free tier"): raise its own
// tier, role or quota, reset its counter, read A's usage, forge tier_source,
// submit as A or into A's batch, read or join the pool's keys, and run a
// free task on a personal key.
func TestFreeTierAttacks(t *testing.T) {
	t.Parallel()
	t.Cleanup(printTable)
	pool := dbtest.Pool(t)
	t.Run("ProfileAndQuota", func(t *testing.T) { t.Parallel(); attackProfileAndQuota(t, newWorld(t, pool)) })
	t.Run("Usage", func(t *testing.T) { t.Parallel(); attackUsage(t, newWorld(t, pool)) })
	t.Run("TierSource", func(t *testing.T) { t.Parallel(); attackTierSource(t, newWorld(t, pool)) })
	t.Run("Keys", func(t *testing.T) { t.Parallel(); attackFreePoolKeys(t, newWorld(t, pool)) })
}

func attackProfileAndQuota(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	_, err := w.pool.Exec(ctx, `insert into public.user_profiles (id, email) values ($1, 'b@example.test')`, w.b)
	require.NoError(t, err)
	tier := func() string {
		var s string
		require.NoError(t, w.pool.QueryRow(ctx, `select tier || '/' || role from public.user_profiles where id = $1`, w.b).Scan(&s))
		return s
	}
	_, err = w.as(ctx, t, w.b, `update public.user_profiles set tier = 'premium' where id = $1`, w.b)
	record(t, "7 raise own tier to premium", "PostgREST update", "refused", errText(err), pgCode(err) == "42501" && tier() == "free/user")
	_, err = w.as(ctx, t, w.b, `update public.user_profiles set role = 'admin' where id = $1`, w.b)
	record(t, "7 raise own role to admin", "PostgREST update", "refused", errText(err), pgCode(err) == "42501" && tier() == "free/user")
	_, err = w.as(ctx, t, w.b, `update public.user_profiles set full_name = 'B' where id = $1`, w.b)
	record(t, "7 control: edit own profile's name", "PostgREST update", "accepted", errText(err), err == nil)
	_, err = w.as(ctx, t, w.a, `insert into public.user_profiles (id, email, tier, role) values ($1, 'a@example.test', 'premium', 'superadmin')`, w.a)
	record(t, "7 create own profile as premium superadmin", "PostgREST insert", "refused", errText(err), pgCode(err) == "42501")

	_, err = w.as(ctx, t, w.b, `update orchable.free_tier_settings set monthly_task_limit = 1000000`)
	record(t, "7 raise the monthly quota setting", "SQL as PostgREST", "permission denied", errText(err), pgCode(err) == "42501")
	err = w.rpc(ctx, w.b, "set_free_tier_quota", map[string]any{"p_monthly_task_limit": 1000000}, nil)
	record(t, "7 raise the quota through its RPC", "RPC", "permission denied", errText(err), pgCode(err) == "42501")
}

func attackUsage(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	var ok map[string]any
	require.NoError(t, w.rpc(ctx, w.a, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"input_data": map[string]any{"x": 1}}}}, &ok))
	require.NoError(t, w.rpc(ctx, w.b, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"input_data": map[string]any{"x": 1}}}}, &ok))

	_, err := w.as(ctx, t, w.b, `update public.user_usage set task_count = -100 where user_id = $1`, w.b)
	record(t, "7 reset own usage counter", "PostgREST update", "permission denied", errText(err), pgCode(err) == "42501")
	_, err = w.as(ctx, t, w.b, `delete from public.user_usage where user_id = $1`, w.b)
	record(t, "7 delete own usage row", "PostgREST delete", "permission denied", errText(err), pgCode(err) == "42501")
	_, err = w.as(ctx, t, w.b, `insert into public.user_usage (user_id, month, task_count) values ($1, '2099-01', 0)`, w.b)
	record(t, "7 insert an own usage row", "PostgREST insert", "permission denied", errText(err), pgCode(err) == "42501")

	var rows []map[string]any
	errVictim := w.rpc(ctx, w.b, "get_user_usage", map[string]any{"p_user_id": w.a}, &rows)
	errNobody := w.rpc(ctx, w.b, "get_user_usage", map[string]any{"p_user_id": uuid.New()}, &rows)
	record(t, "7 read victim's usage (get_user_usage)", "RPC", "refused", errText(errVictim), pgCode(errVictim) == "42501")
	record(t, "7 oracle: get_user_usage victim's id vs random id", "RPC", "same error", errText(errNobody),
		errText(errVictim) == errText(errNobody))
	var seen int
	err = w.asRow(ctx, t, w.b, `select count(*) from public.user_usage where user_id = $1`, []any{w.a}, &seen)
	record(t, "7 select victim's user_usage rows", "PostgREST select", "0 rows", fmt.Sprintf("%d rows %s", seen, errText(err)), err == nil && seen == 0)
}

func attackTierSource(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	tierOf := func(id uuid.UUID) string {
		s := new(string)
		require.NoError(t, w.pool.QueryRow(ctx, `select coalesce(tier_source, '') from public.ai_tasks where id = $1`, id).Scan(&s))
		return *s
	}
	var forged uuid.UUID
	err := w.asRow(ctx, t, w.b, `insert into public.ai_tasks (user_id, tier_source) values ($1, 'free_pool') returning id`, []any{w.b}, &forged)
	require.NoError(t, err)
	record(t, "7 insert own task as free_pool (no quota charge)", "PostgREST insert", "stored as personal (null)", "tier_source="+tierOf(forged), tierOf(forged) == "")
	_, err = w.as(ctx, t, w.b, `update public.ai_tasks set tier_source = 'free_pool' where id = $1`, forged)
	record(t, "7 mark own personal task free_pool", "PostgREST update", "kept personal", "tier_source="+tierOf(forged)+" "+errText(err), tierOf(forged) == "")

	var r struct {
		TaskIDs []uuid.UUID `json:"task_ids"`
	}
	require.NoError(t, w.rpc(ctx, w.b, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"input_data": map[string]any{"x": 1}}}}, &r))
	_, err = w.as(ctx, t, w.b, `update public.ai_tasks set tier_source = null where id = $1`, r.TaskIDs[0])
	record(t, "7 turn own free task personal", "PostgREST update", "kept free_pool", "tier_source="+tierOf(r.TaskIDs[0])+" "+errText(err), tierOf(r.TaskIDs[0]) == "free_pool")
	// A child the attacker inserts under its free task is not free-pool
	// (only the engine's successors inherit, and they are charged).
	var child uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.ai_tasks (user_id, parent_task_id, root_task_id, tier_source) values ($1, $2, $2, 'free_pool') returning id`,
		[]any{w.b, r.TaskIDs[0]}, &child))
	record(t, "7 insert a child of own free task", "PostgREST insert", "personal (null)", "tier_source="+tierOf(child), tierOf(child) == "")

	errAs := w.rpc(ctx, w.b, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"user_id": w.a}}}, nil)
	var aTasks int
	require.NoError(t, w.pool.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1`, w.a).Scan(&aTasks))
	record(t, "7 submit free tasks as the victim (user_id)", "RPC", "refused", errText(errAs), pgCode(errAs) == "22023" && aTasks == 0)

	var victimBatch uuid.UUID
	require.NoError(t, w.asRow(ctx, t, w.a, `insert into public.task_batches (name, created_by) values ('a', $1) returning id`, []any{w.a}, &victimBatch))
	errInto := w.rpc(ctx, w.b, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"batch_id": victimBatch}}}, nil)
	record(t, "7 submit free tasks into the victim's batch", "RPC", "refused", errText(errInto), pgCode(errInto) == "42501")
	// Over quota, naming the victim's empty batch: the refusal deletes only
	// the caller's own empty batches.
	_, err = w.pool.Exec(ctx, `update public.user_usage set task_count = 30 where user_id = $1`, w.b)
	require.NoError(t, err)
	var refused map[string]any
	require.NoError(t, w.rpc(ctx, w.b, "submit_free_tier_tasks", map[string]any{"p_tasks": []map[string]any{{"batch_id": victimBatch}}}, &refused))
	var left int
	require.NoError(t, w.pool.QueryRow(ctx, `select count(*) from public.task_batches where id = $1`, victimBatch).Scan(&left))
	record(t, "7 over-quota submit naming the victim's empty batch", "RPC", "QUOTA_EXCEEDED, batch kept",
		fmt.Sprintf("%v, batches=%d", refused["error"], left), refused["error"] == "QUOTA_EXCEEDED" && left == 1)
}

// servicePool is the service's PoolKeyStore over the direct transport.
type servicePool struct{ db *supabase.Direct }

func (s servicePool) PoolKeys(ctx context.Context, m string) ([]model.StoredKey, error) {
	var rows []struct {
		ID              uuid.UUID `json:"id"`
		UserID          uuid.UUID `json:"user_id"`
		APIKeyEncrypted string    `json:"api_key_encrypted"`
		Priority        int       `json:"priority"`
	}
	if err := s.db.RPC(ctx, supabase.ServiceIdentity(""), "pool_api_keys", map[string]any{"p_model": m}, &rows); err != nil {
		return nil, err
	}
	out := make([]model.StoredKey, 0, len(rows))
	for _, r := range rows {
		out = append(out, model.StoredKey{ID: r.ID, UserID: r.UserID, Ciphertext: r.APIKeyEncrypted, Priority: r.Priority})
	}
	return out, nil
}

func attackFreePoolKeys(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	operator := dbtest.CreateUser(ctx, t, w.pool)
	var poolKey, victimKey, ownKey uuid.UUID // poolKey: the operator's
	require.NoError(t, w.pool.QueryRow(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted, pool_type) values ($1, 'pool', 'AIzaPoolKey-attacks', 'free_pool') returning id`, operator).Scan(&poolKey))
	require.NoError(t, w.asRow(ctx, t, w.a, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'mine', 'AIzaVictimKey') returning id`, []any{w.a}, &victimKey))
	require.NoError(t, w.asRow(ctx, t, w.b, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'mine', 'AIzaAttackerKey') returning id`, []any{w.b}, &ownKey))

	var rows []map[string]any
	err := w.rpc(ctx, w.b, "pool_api_keys", map[string]any{"p_model": "gemini-test"}, &rows)
	record(t, "7 read the pool keys", "RPC", "permission denied", errText(err), pgCode(err) == "42501")
	var n int
	err = w.asRow(ctx, t, w.b, `select count(*) from public.user_api_keys where pool_type = 'free_pool'`, nil, &n)
	record(t, "7 select the pool keys' rows", "PostgREST select", "0 rows", fmt.Sprintf("%d rows %s", n, errText(err)), err == nil && n == 0)
	_, err = w.as(ctx, t, w.b, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted, pool_type) values ($1, 'trap', 'AIzaTrap', 'free_pool')`, w.b)
	record(t, "7 add own key to the free pool (to see others' prompts)", "PostgREST insert", "refused", errText(err), pgCode(err) == "42501")
	_, err = w.as(ctx, t, w.b, `update public.user_api_keys set pool_type = 'free_pool' where id = $1`, ownKey)
	record(t, "7 move own personal key into the free pool", "PostgREST update", "refused", errText(err), pgCode(err) == "42501")

	// B's free task, through the key pool as the service runs it: only the
	// pool key is a candidate, every time; never A's or B's personal key.
	kp, err := model.NewKeyPool(&model.Config{Pool: model.PoolConfig{FreePool: servicePool{w.db}}}, model.NewPgStore(w.pool), nil)
	require.NoError(t, err)
	used := map[string]int{}
	for range 5 {
		lease, err := kp.AcquireFreePool(ctx, w.b, "gemini-test", 10)
		require.NoError(t, err)
		used[lease.Key.ID]++
		require.NoError(t, lease.Release(ctx, uuid.Nil, model.Usage{}, nil))
	}
	// Other runs of this test leave pool keys of their own operators: any
	// free_pool row will do, a personal one never.
	pooled := 0
	for id, n := range used {
		var pt string
		require.NoError(t, w.pool.QueryRow(ctx, `select pool_type::text from public.user_api_keys where id = $1`, id).Scan(&pt))
		if pt == "free_pool" {
			pooled += n
		}
	}
	record(t, "7 free task runs on a personal key (victim's or own)", "key pool", "pool keys only",
		fmt.Sprintf("pool=%d victim=%d own=%d", pooled, used[victimKey.String()], used[ownKey.String()]),
		pooled == 5 && used[victimKey.String()] == 0 && used[ownKey.String()] == 0)
	lease, err := kp.Acquire(ctx, w.b, "gemini-test", 10)
	require.NoError(t, err)
	record(t, "7 control: B's personal task uses B's own key", "key pool", "own key", lease.Key.ID, lease.Key.ID == ownKey.String())
}
