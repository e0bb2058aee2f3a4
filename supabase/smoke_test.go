package supabase_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

func TestDirectSmoke(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testPool(t)
	d := supabase.NewDirect(pool, nil)
	u := dbtest.CreateUser(ctx, t, pool)
	id := userIdentity(t, u)
	var n int
	require.NoError(t, d.RPC(ctx, id, "t_scalar", map[string]any{"p_a": 2}, &n))
	require.Equal(t, 3, n)
	var raw json.RawMessage
	require.NoError(t, d.RPC(ctx, id, "t_jsonb", map[string]any{"p_obj": map[string]any{"a": 1}, "p_ids": []string{u.String()}}, &raw))
	t.Log(string(raw))
	require.NoError(t, d.RPC(ctx, id, "t_table", map[string]any{"p_n": 2}, &raw))
	t.Log(string(raw))
	require.NoError(t, d.RPC(ctx, id, "t_setof", map[string]any{"p_n": 2}, &raw))
	t.Log(string(raw))
	require.NoError(t, d.RPC(ctx, id, "t_void", map[string]any{"p_s": "x"}, &raw))
	require.NoError(t, d.RPC(ctx, id, "t_noargs", nil, &n))
	err := d.RPC(ctx, id, "t_raise", map[string]any{"p_code": "P0001", "p_msg": "boom"}, nil)
	t.Log(err)
	require.ErrorIs(t, err, supabase.ErrBadRequest)
	var rows []map[string]any
	require.NoError(t, d.Select(ctx, id, "ai_tasks", supabase.Query{Filters: []supabase.Filter{supabase.Eq("user_id", u), supabase.In("status", "plan", "failed")}, Order: []supabase.Order{supabase.Desc("created_at")}, Limit: 3}, &rows))
	t.Log(rows, d.RoundTrips())
}
