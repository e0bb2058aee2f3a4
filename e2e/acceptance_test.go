package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// fixtures are the in-repo copies of the sample bundles.
var fixtures = []string{ //nolint:gochecknoglobals // constant list
	"orc-01-quiz-gen", "orc-02-lesson-plan", "orc-05-social-media", "orc-09-code-review", "orc-10-lesson-plan-advanced",
}

func fixtureDir(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "pipeline", "testdata", "bundles", name))
	return p
}

// localBundle is one of e2e's own bundles (e2e/testdata/bundles).
func localBundle(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", "bundles", name))
	return p
}

// fixtureRows are input rows carrying every %%key%% the fixtures' root
// prompts use.
func fixtureRows(tag string, n int) []map[string]any {
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{
			"input_data":   fmt.Sprintf("%s item %d: photosynthesis, light and dark reactions", tag, i),
			"lo_code":      fmt.Sprintf("LO-%d", i),
			"batch_number": i + 1,
			"lo_count":     1,
		}
	}
	return rows
}

type userRun struct {
	user    uuid.UUID
	batches map[string]launch // fixture → launch
}

// TestAcceptance runs every fixture bundle for two users at once through the
// real binary, on both transports, with the fake Gemini server and webhooks
// in the exact Supabase format for the root tasks.
func TestAcceptance(t *testing.T) {
	t.Parallel()
	variants := []struct {
		name string
		opts stackOpts
	}{
		{"Direct", stackOpts{Transport: direct}},
		{"PostgREST", stackOpts{Transport: postgrest}},
		// New-format keys end to end: users call with their JWTs and the
		// publishable key, the sweeper with the secret key in apikey alone.
		// Without DATABASE_URL (no LISTEN) only the sweeper finds the
		// children, so the run completes only if the secret key works.
		{"PostgRESTNewKeys", stackOpts{Transport: postgrest, NewKeys: true, NoDatabaseURL: true, Env: map[string]string{"SWEEP_INTERVAL": "200ms"}}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, v.opts)
			users := []*userRun{{user: s.createUser()}, {user: s.createUser()}}
			roots := map[string]string{} // user/fixture → root template
			for _, u := range users {
				u.batches = map[string]launch{}
				for _, f := range fixtures {
					_, root := s.importBundle(u.user, fixtureDir(f))
					roots[u.user.String()+f] = root
				}
			}
			// Launch everything for both users concurrently and announce the
			// root tasks by webhook.
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, u := range users {
				for _, f := range fixtures {
					wg.Go(func() {
						l := s.launchBatch(u.user, roots[u.user.String()+f], f, fixtureRows(f, 2))
						mu.Lock()
						u.batches[f] = l
						mu.Unlock()
						s.insertWebhooks(l.TaskIDs)
					})
				}
			}
			wg.Wait()
			var all []uuid.UUID
			for _, u := range users {
				for _, l := range u.batches {
					all = append(all, l.BatchID)
				}
			}
			s.waitSettled(2*time.Minute, all...)

			for _, u := range users {
				for _, f := range fixtures {
					l := u.batches[f]
					rep := s.checkTree(l.BatchID)
					t.Logf("%s %s: %d tasks by stage %v by status %v", u.user.String()[:8], f, rep.Tasks, rep.ByStage, rep.ByStatus)
					s.requireTree(rep)
					require.Equal(t, 2, rep.Roots)
					for _, tk := range s.tasks("batch_id = $1", l.BatchID) {
						require.Equal(t, "completed", tk.Status, "%s task %s (%s): %v", f, tk.ID, tk.StageKey, tk.ErrorMessage)
						require.Equal(t, u.user, tk.UserID)
						require.NotNil(t, tk.Tokens, "%s task %s: total_token_count not recorded", f, tk.ID)
						require.Positive(t, *tk.Tokens, "%s task %s: total_token_count", f, tk.ID)
					}
				}
			}
			requireIsolation(t, s, users)
		})
	}
}

// requireIsolation checks through the PostgREST test server, with each
// user's JWT, that a user sees exactly their own tasks and batches.
func requireIsolation(t *testing.T, s *stack, users []*userRun) {
	t.Helper()
	for i, u := range users {
		other := users[1-i]
		tok := s.userJWT(u.user)
		code, body := s.rest(tok, http.MethodGet, "/rest/v1/ai_tasks?select=id,user_id", nil)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var rows []struct {
			ID     uuid.UUID `json:"id"`
			UserID uuid.UUID `json:"user_id"`
		}
		require.NoError(t, json.Unmarshal(body, &rows))
		own := s.tasks("user_id = $1", u.user)
		require.Len(t, rows, len(own), "user %s sees %d tasks, owns %d", u.user, len(rows), len(own))
		for _, r := range rows {
			require.Equal(t, u.user, r.UserID)
		}
		for _, l := range other.batches {
			code, body = s.rest(tok, http.MethodGet, "/rest/v1/task_batches?select=id&id=eq."+l.BatchID.String(), nil)
			require.Equal(t, http.StatusOK, code)
			require.JSONEq(t, "[]", string(body), "user %s sees the other user's batch", u.user)
			code, body = s.rest(tok, http.MethodGet, "/rest/v1/ai_tasks?select=id&or=(batch_id.eq."+l.BatchID.String()+",launch_id.eq."+l.LaunchID.String()+")", nil)
			require.Equal(t, http.StatusOK, code)
			require.JSONEq(t, "[]", string(body), "user %s sees the other user's tasks", u.user)
			code, body = s.rest(tok, http.MethodPost, "/rest/v1/rpc/get_batch_progress", map[string]any{"p_batch_id": l.BatchID})
			require.Equal(t, http.StatusNotFound, code, "get_batch_progress of another user's batch: %s", body)
		}
		code, body = s.rest(tok, http.MethodGet, "/rest/v1/task_batches?select=id,created_by", nil)
		require.Equal(t, http.StatusOK, code)
		var bs []struct {
			CreatedBy uuid.UUID `json:"created_by"`
		}
		require.NoError(t, json.Unmarshal(body, &bs))
		require.Len(t, bs, len(u.batches))
		for _, b := range bs {
			require.Equal(t, u.user, b.CreatedBy)
		}
	}
}
