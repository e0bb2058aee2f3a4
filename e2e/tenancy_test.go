package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestAttackSweeperCrossTenant is attack 1 of SPEC §14 through the real
// binary: B plants, under A's launch id, a completed decoy and a task whose
// lease expired five times, feeding B's own N:1 merge (batch_grouping
// global) whose post-process hook is B's collector on loopback. Before the
// fix the sweeper (service identity) merged A's outputs into a task owned by
// B and the hook received them about a second later. Now the engine columns
// B writes are reset, and even with the lease forged past that (as the
// database owner) the sweeper only names B, and B's give-up runs as B:
// nothing of A reaches B's rows or B's hook.
func TestAttackSweeperCrossTenant(t *testing.T) {
	t.Parallel()
	const secret = "A-PRIVATE-OUTPUT-7f3a"
	var mu sync.Mutex
	var hookBodies []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hookBodies = append(hookBodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(collector.Close)

	s := newStack(t, stackOpts{Env: map[string]string{"SWEEP_INTERVAL": "200ms", "MAX_LEASE_LOSSES": "5"}})
	a, b := s.createUser(), s.createUser()
	ctx := context.Background()

	// A: mapper (1:1) → merge (N:1, global), run to the end; then A's
	// mapper outputs hold a secret.
	tpl := func(user uuid.UUID, id, key string, cfg map[string]any, next []string) {
		code, body := s.rest(s.userJWT(user), http.MethodPost, "/rest/v1/prompt_templates", map[string]any{
			"id": id, "template": "Summarise %%input_data%%", "stage_key": key, "stage_config": cfg, "next_stage_template_ids": next,
		})
		require.Equal(t, http.StatusCreated, code, "%s", body)
	}
	pa, pb := "A-"+randHex(4), "B-"+randHex(4)
	tpl(a, pa+"-merge", "merge", map[string]any{"cardinality": "N:1", "batch_grouping": "global"}, []string{})
	tpl(a, pa+"-mapper", "mapper", map[string]any{"cardinality": "1:1"}, []string{pa + "-merge"})
	la := s.launchBatch(a, pa+"-mapper", "victim", []map[string]any{{"topic": "one"}, {"topic": "two"}})
	s.waitSettled(60*time.Second, la.BatchID)
	_, err := s.db.Exec(ctx, `update public.ai_tasks set output_data = jsonb_build_object('secret', $2::text)
		where user_id = $1 and stage_key = 'mapper'`, a, secret)
	require.NoError(t, err)
	snapshot := func() string {
		var h string
		require.NoError(t, s.db.QueryRow(ctx, `select md5(string_agg(id::text || status::text || coalesce(output_data::text, '') ||
			coalesce(input_data::text, ''), '|' order by id)) from public.ai_tasks where user_id = $1`, a).Scan(&h))
		return h
	}
	before := snapshot()

	// B: a feeder named like A's stage, feeding B's global merge with B's hook.
	tpl(b, pb+"-merge", "merge", map[string]any{
		"cardinality": "N:1", "batch_grouping": "global",
		"post_process": map[string]any{"enabled": true, "webhook_url": collector.URL + "/collect", "output_handling": "merge"},
	}, []string{})
	tpl(b, pb+"-mapper", "mapper", map[string]any{"cardinality": "1:1"}, []string{pb + "-merge"})
	code, body := s.rest(s.userJWT(b), http.MethodPost, "/rest/v1/ai_tasks", map[string]any{
		"status": "completed", "stage_key": "mapper", "prompt_template_id": pb + "-mapper", "launch_id": la.LaunchID,
		"output_data": map[string]any{"decoy": true}, "completed_at": "2999-01-01T00:00:00Z",
	})
	require.Equal(t, http.StatusCreated, code, "%s", body)
	req, err := http.NewRequest(http.MethodPost, s.restURL+"/rest/v1/ai_tasks", strings.NewReader(`{"status": "processing", "stage_key": "mapper",
		"prompt_template_id": "`+pb+`-mapper", "launch_id": "`+la.LaunchID.String()+`", "locked_until": "2000-01-01T00:00:00Z",
		"locked_by": "ghost", "attempts": 5}`))
	require.NoError(t, err)
	req.Header.Set("apikey", s.anonKey)
	req.Header.Set("Authorization", "Bearer "+s.userJWT(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "return=representation")
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	rb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", rb)
	var planted []struct {
		ID          uuid.UUID  `json:"id"`
		LockedUntil *time.Time `json:"locked_until"`
		Attempts    int        `json:"attempts"`
	}
	require.NoError(t, json.Unmarshal(rb, &planted))
	require.Len(t, planted, 1)
	t.Logf("B's forged insert came back with locked_until=%v attempts=%d", planted[0].LockedUntil, planted[0].Attempts)
	require.Nil(t, planted[0].LockedUntil, "a client set the lease")
	require.Zero(t, planted[0].Attempts, "a client set attempts")

	// Defence in depth: forge the lease past the trigger, as the database
	// owner, and let the real sweeper find it.
	_, err = s.db.Exec(ctx, `with e as (select set_config('orchable.engine', 'on', true))
		update public.ai_tasks set locked_until = now() - interval '1 hour', locked_by = 'ghost', attempts = 5 from e where id = $1`, planted[0].ID)
	require.NoError(t, err)
	start := time.Now()
	waitFor(t, 30*time.Second, 20*time.Millisecond, "the sweeper to give up B's planted task and B's work to settle", func() (bool, string) {
		var st string
		var open int
		_ = s.db.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", planted[0].ID).Scan(&st)
		_ = s.db.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and status in ('plan', 'processing') and id <> $2", b, planted[0].ID).Scan(&open)
		return st == "failed" && open == 0, st
	})
	var leaked int
	require.NoError(t, s.db.QueryRow(ctx, `select count(*) from public.ai_tasks where user_id = $1
		and (coalesce(input_data::text, '') like '%' || $2 || '%' or coalesce(output_data::text, '') like '%' || $2 || '%')`, b, secret).Scan(&leaked))
	var merges int
	require.NoError(t, s.db.QueryRow(ctx, "select count(*) from public.ai_tasks where user_id = $1 and stage_key = 'merge'", b).Scan(&merges))
	mu.Lock()
	calls := len(hookBodies)
	sawSecret := strings.Contains(strings.Join(hookBodies, "\n"), secret)
	mu.Unlock()
	t.Logf("after %s: B's merges=%d (over B's decoy only), rows of B holding A's output=%d, hook calls=%d, hook saw A's output=%v",
		time.Since(start).Round(time.Millisecond), merges, leaked, calls, sawSecret)
	require.Zero(t, leaked, "B holds A's output")
	require.False(t, sawSecret, "B's hook received A's output")
	require.Equal(t, before, snapshot(), "A's rows changed")
}
