package pipeline_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/pipeline"
)

// The dispatcher claims a user's queue from where the user's last full
// claim stopped (claim_tasks' cursor), from the head once the head was last
// walked HeadClaimInterval ago, and after a claim that was not full: every
// task is claimed once, in queue order, and a task committed behind the
// cursor waits at most until the next claim from the head.
func TestDispatcherClaimsFromTheCursor(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	_, err := b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, run_after)
		select 'generic', 'plan', jsonb_build_object('n', n), $1, 'k', now() - interval '1 day' + make_interval(secs => n) from generate_series(1, 30) n`, b.user)
	require.NoError(t, err)

	clock := baseservicetest.NewFakeClock(testStart())
	db := newRecordingDB(b.db)
	r := pipeline.NewRunner(&pipeline.RunnerConfig{Archetype: clock.Archetype(nil), WorkerID: "cursor"}, db, b.gen)
	// Never started: the test makes the loop's claims itself.
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Archetype: clock.Archetype(nil), HeadClaimInterval: time.Second}, onlyUser{b.user}, r)

	// claim makes one claim of up to n tasks and returns the inputs' n of
	// what it claimed, and whether it was sent a cursor.
	claim := func(n int) ([]int, bool) {
		t.Helper()
		claimed, err := d.ClaimForTest(ctx, b.user, n)
		require.NoError(t, err)
		var ns []int
		for _, c := range claimed {
			var in struct {
				N int `json:"n"`
			}
			require.NoError(t, json.Unmarshal(c.Task.InputData, &in))
			ns = append(ns, in.N)
		}
		calls := db.args("claim_tasks")
		args, ok := calls[len(calls)-1].(map[string]any)
		require.True(t, ok)
		require.Contains(t, args, "p_after_run_after", "the cursor's keys are always sent")
		require.Contains(t, args, "p_after_id", "the cursor's keys are always sent")
		return ns, args["p_after_id"] != nil
	}
	seq := func(from, to int) []int {
		var s []int
		for n := from; n <= to; n++ {
			s = append(s, n)
		}
		return s
	}

	ns, cursor := claim(10)
	require.False(t, cursor, "the first claim starts from the head")
	require.ElementsMatch(t, seq(1, 10), ns)
	ns, cursor = claim(10)
	require.True(t, cursor, "a claim after a full one starts from its cursor")
	require.ElementsMatch(t, seq(11, 20), ns)

	// A task committed behind the cursor waits for the next claim from the
	// head, which comes once the head was last walked a second ago.
	_, err = b.pool.Exec(ctx, `insert into public.ai_tasks (task_type, status, input_data, user_id, stage_key, run_after)
		values ('generic', 'plan', '{"n": 0}', $1, 'k', now() - interval '2 days')`, b.user)
	require.NoError(t, err)
	ns, cursor = claim(3)
	require.True(t, cursor)
	require.ElementsMatch(t, seq(21, 23), ns, "the part ahead of the cursor fills the claim")
	clock.Advance(time.Second)
	ns, cursor = claim(3)
	require.False(t, cursor, "the head was last walked a second ago")
	require.ElementsMatch(t, []int{0, 24, 25}, ns, "from the head: the task behind the cursor first")
	ns, cursor = claim(3)
	require.True(t, cursor)
	require.ElementsMatch(t, seq(26, 28), ns)

	// A claim that is not full drops the cursor: the queue is drained.
	ns, cursor = claim(10)
	require.True(t, cursor)
	require.ElementsMatch(t, seq(29, 30), ns)
	ns, cursor = claim(10)
	require.False(t, cursor, "after a claim that was not full, from the head")
	require.Empty(t, ns)

	// Every task was claimed once.
	var left, processing int
	require.NoError(t, b.pool.QueryRow(ctx, `select count(*) filter (where status = 'plan'), count(*) filter (where status = 'processing')
		from public.ai_tasks where user_id = $1`, b.user).Scan(&left, &processing))
	require.Zero(t, left)
	require.Equal(t, 31, processing)
}
