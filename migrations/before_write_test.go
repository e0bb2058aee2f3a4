package migrations_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// The row trigger on ai_tasks gives the engine's updates the same result on
// its short path (every default already satisfied) as on the full one: the
// lease goes with processing, updated_at moves, and a NULL or 'pending' an
// update writes still gets its default.
func TestBeforeWriteEngineUpdates(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)

	type row struct {
		Status           string
		LockedBy         *string
		LockedUntil      *time.Time
		Extra            string
		RetryCount       int
		Attempts         int
		StepNumber       int
		HierarchyPath    string
		RequiresApproval bool
		RunAfterSet      bool
		UpdatedAt        time.Time
	}
	var id uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `insert into public.ai_tasks (user_id, retry_count, step_number, extra)
		values ($1, 2, 3, '{"k": 1}') returning id`, user).Scan(&id))
	// engine runs one update as the engine (orchable.engine = on, as the
	// SQL API sets it) and returns the row.
	engine := func(set string) row {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, "select set_config('orchable.engine', 'on', true)")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "update public.ai_tasks set "+set+" where id = $1", id)
		require.NoError(t, err)
		var r row
		require.NoError(t, tx.QueryRow(ctx, `select status, locked_by, locked_until, extra::text, retry_count, attempts, step_number,
			hierarchy_path::text, requires_approval, run_after is not null, updated_at from public.ai_tasks where id = $1`, id).
			Scan(&r.Status, &r.LockedBy, &r.LockedUntil, &r.Extra, &r.RetryCount, &r.Attempts, &r.StepNumber,
				&r.HierarchyPath, &r.RequiresApproval, &r.RunAfterSet, &r.UpdatedAt))
		require.NoError(t, tx.Commit(ctx))
		return r
	}
	var before time.Time
	require.NoError(t, pool.QueryRow(ctx, "select updated_at from public.ai_tasks where id = $1", id).Scan(&before))

	// A claim: the lease is kept, updated_at moves.
	r := engine("status = 'processing', locked_by = 'w1', locked_until = now() + interval '5 minutes', attempts = attempts + 1")
	require.Equal(t, "processing", r.Status)
	require.NotNil(t, r.LockedBy)
	require.Equal(t, "w1", *r.LockedBy)
	require.NotNil(t, r.LockedUntil)
	require.Equal(t, 1, r.Attempts)
	require.True(t, r.UpdatedAt.After(before), "updated_at moves")

	// A completion that leaves the lease in place: leaving processing drops it.
	r = engine("status = 'completed', output_data = '{\"a\": 1}'")
	require.Equal(t, "completed", r.Status)
	require.Nil(t, r.LockedBy, "leaving processing drops the lease")
	require.Nil(t, r.LockedUntil)
	require.JSONEq(t, `{"k": 1}`, r.Extra)
	require.Equal(t, 2, r.RetryCount)
	require.Equal(t, 3, r.StepNumber)

	// Back to processing, then an update that writes NULLs and 'pending':
	// each default applies as for any other writer.
	engine("status = 'processing', locked_by = 'w2', locked_until = now() + interval '5 minutes'")
	r = engine(`status = 'pending', extra = null, retry_count = null, attempts = null, step_number = null,
		hierarchy_path = null, requires_approval = null, run_after = null`)
	require.Equal(t, "plan", r.Status, "'pending' is stored as plan")
	require.Nil(t, r.LockedBy)
	require.Nil(t, r.LockedUntil)
	require.JSONEq(t, `{}`, r.Extra)
	require.Equal(t, 2, r.RetryCount, "a NULL keeps the old value")
	require.Equal(t, 1, r.Attempts)
	require.Equal(t, 3, r.StepNumber)
	require.JSONEq(t, `[]`, r.HierarchyPath)
	require.False(t, r.RequiresApproval)
	require.True(t, r.RunAfterSet)

	// 'pending' alone, every other column set, is still stored as plan.
	engine("status = 'processing', locked_by = 'w3', locked_until = now() + interval '5 minutes'")
	r = engine("status = 'pending'")
	require.Equal(t, "plan", r.Status)
	require.Nil(t, r.LockedBy)

	// One NULL alone takes the full path too, and the lease still goes.
	engine("status = 'processing', locked_by = 'w4', locked_until = now() + interval '5 minutes'")
	r = engine("status = 'failed', extra = null")
	require.Equal(t, "failed", r.Status)
	require.Nil(t, r.LockedBy)
	require.JSONEq(t, `{}`, r.Extra)
}
