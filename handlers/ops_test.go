package handlers_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// scrape reads GET /metrics.
func (b *testBundle) scrape(t testing.TB) string {
	t.Helper()
	res := b.do(t, http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, http.StatusOK, res.Status)
	require.Contains(t, res.Header.Get("Content-Type"), "text/plain")
	return string(res.Body)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.setReady(errors.New("database: connection refused")) // liveness does not care
	res := b.do(t, http.MethodGet, "/healthz", nil, nil)
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, map[string]any{"status": "ok"}, res.json(t))
}

func TestReadyz(t *testing.T) {
	t.Parallel()

	t.Run("Ready", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res := b.do(t, http.MethodGet, "/readyz", nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, map[string]any{"status": "ready"}, res.json(t))
	})

	t.Run("NotReady", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.setReady(errors.New("database: connection refused"))
		res := b.do(t, http.MethodGet, "/readyz", nil, nil)
		res.requireError(t, http.StatusServiceUnavailable, "not_ready")
		body := res.json(t)
		require.Equal(t, "not ready", body["message"])
		require.NotEmpty(t, body["request_id"])
	})

	// A dead database: the driver's error names host, port, user and
	// database. Anyone may call /readyz, so none of that is in the body;
	// the log has it, at warn level.
	t.Run("DeadDatabaseRevealsNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		require.NoError(t, l.Close())
		const user, dbName = "readyz_secret_user", "readyz_secret_db"
		_, dbErr := pgx.Connect(t.Context(), "postgres://"+user+":hunter2@127.0.0.1:"+port+"/"+dbName+"?connect_timeout=2&sslmode=disable")
		require.Error(t, dbErr)
		for _, detail := range []string{"127.0.0.1", port, user, dbName} {
			require.Contains(t, dbErr.Error(), detail, "the driver error must carry the detail for this test to mean anything")
		}
		b.setReady(fmt.Errorf("database: %w", dbErr))

		res := b.do(t, http.MethodGet, "/readyz", nil, nil)
		res.requireError(t, http.StatusServiceUnavailable, "not_ready")
		require.Equal(t, "not ready", res.json(t)["message"])
		for _, detail := range []string{"127.0.0.1", ":" + port, user, dbName, "hunter2", "connect", "refused"} {
			require.NotContains(t, string(res.Body), detail)
		}

		logs := b.logs.String()
		require.Contains(t, logs, `"level":"WARN"`)
		require.Contains(t, logs, `"path":"/readyz"`)
		for _, detail := range []string{"127.0.0.1", user, dbName} {
			require.Contains(t, logs, detail)
		}
		require.NotContains(t, logs, "hunter2")
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)

	b.metrics.TaskFinished(pipeline.Result{
		Outcome:       pipeline.OutcomeCompleted,
		Usage:         model.Usage{PromptTokens: 100, CandidatesTokens: 20, ThoughtsTokens: 5, TotalTokens: 125},
		ModelLatency:  800 * time.Millisecond,
		Regenerations: 1,
	}, "outline", time.Second)
	b.metrics.TaskFinished(pipeline.Result{Outcome: pipeline.OutcomeFailed, Err: errors.New("boom")}, "outline", time.Millisecond)
	b.metrics.QueueDepth(3, 7)
	b.metrics.ClaimFailed(supabase.NewError("08006", "connection failure", "", "", true))
	b.metrics.ClaimFailed(errors.New("other"))
	b.metrics.KeyOutcome(model.Outcome{Result: model.OutcomeRateLimited, ErrorCode: "rate_limited"})
	b.metrics.KeyOutcome(model.Outcome{Result: model.OutcomeSuccess})

	text := b.scrape(t)
	for _, want := range []string{
		`orchable_tasks_total{outcome="completed",stage="outline"} 1`,
		`orchable_tasks_total{outcome="failed",stage="outline"} 1`,
		`orchable_stage_duration_seconds_count{stage="outline"} 2`,
		`orchable_model_duration_seconds_count{stage="outline"} 1`,
		`orchable_model_tokens_total{kind="prompt"} 100`,
		`orchable_model_tokens_total{kind="candidates"} 20`,
		`orchable_model_tokens_total{kind="thoughts"} 5`,
		`orchable_model_regenerations_total 1`,
		`orchable_dispatcher_users_waiting 3`,
		`orchable_dispatcher_running 7`,
		`orchable_claim_failures_total{reason="unavailable"} 1`,
		`orchable_claim_failures_total{reason="other"} 1`,
		`orchable_key_outcomes_total{kind="rate_limited",result="rate_limited"} 1`,
		`orchable_key_outcomes_total{kind="none",result="success"} 1`,
		`go_goroutines`,
	} {
		require.Contains(t, text, want)
	}
}

// TestPanicBecomes500 checks that Recover turns a panic into a logged 500
// with a request id and a generic message.
func TestPanicBecomes500(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.wake.panics = true
	res := b.api(t, http.MethodPost, "/api/v1/tasks/"+apiTaskID+"/retry", uuid.New(), "")
	res.requireError(t, http.StatusInternalServerError, "internal_error")
	body := res.json(t)
	require.Equal(t, res.Header.Get("X-Request-Id"), body["request_id"])
	require.NotContains(t, body["message"], "fakeWaker")
	require.Contains(t, b.logs.String(), "fakeWaker: told to panic")
	require.Contains(t, b.logs.String(), "handlers_test.(*fakeWaker).Notify") // the stack
}

// TestServerErrorLoggedOnce: a 5xx (a database failure, a panic, a failed
// readiness probe) is logged exactly once, with its error, by the error
// handler, and the request logger adds no second line for it; a 4xx keeps
// its one access line.
func TestServerErrorLoggedOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenSetup   func(b *testBundle)
		whenMethod   string
		whenPath     string
		whenAnon     bool // no user token (the ops routes)
		expectStatus int
		expectLevel  string
		expectInLog  string
	}{
		{
			name:       "DatabaseFailure",
			givenSetup: func(b *testBundle) { b.db.fail("pause_batch", errors.New("boom: the database fell over")) },
			whenMethod: http.MethodPost, whenPath: "/api/v1/batches/" + apiBatchID + "/pause",
			expectStatus: http.StatusInternalServerError, expectLevel: "ERROR", expectInLog: "the database fell over",
		},
		{
			name:       "Panic",
			givenSetup: func(b *testBundle) { b.wake.panics = true },
			whenMethod: http.MethodPost, whenPath: "/api/v1/tasks/" + apiTaskID + "/retry",
			expectStatus: http.StatusInternalServerError, expectLevel: "ERROR", expectInLog: "fakeWaker: told to panic",
		},
		{
			name:       "NotReady",
			givenSetup: func(b *testBundle) { b.setReady(errors.New("database: connection refused")) },
			whenMethod: http.MethodGet, whenPath: "/readyz", whenAnon: true,
			expectStatus: http.StatusServiceUnavailable, expectLevel: "WARN", expectInLog: "connection refused",
		},
		{
			name:       "ClientError",
			givenSetup: func(*testBundle) {},
			whenMethod: http.MethodGet, whenPath: "/api/v1/batches/not-a-uuid",
			expectStatus: http.StatusBadRequest, expectLevel: "WARN",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tt.givenSetup(b)
			user := uuid.New()
			if tt.whenAnon {
				user = uuid.Nil
			}
			res := b.api(t, tt.whenMethod, tt.whenPath, user, "")
			require.Equal(t, tt.expectStatus, res.Status, "body: %s", res.Body)
			reqID := res.Header.Get("X-Request-Id")
			require.NotEmpty(t, reqID)

			var lines []map[string]any
			for line := range strings.SplitSeq(strings.TrimSpace(b.logs.String()), "\n") {
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &m), line)
				if m["request_id"] == reqID {
					lines = append(lines, m)
				}
			}
			require.Len(t, lines, 1, "log lines of the request: %v", lines)
			require.Equal(t, tt.expectLevel, lines[0]["level"])
			require.InDelta(t, tt.expectStatus, lines[0]["status"], 0)
			if tt.expectInLog != "" {
				require.Equal(t, "handlers: request failed", lines[0]["msg"])
				require.Contains(t, lines[0]["error"], tt.expectInLog)
			} else {
				require.Equal(t, "handlers: request", lines[0]["msg"])
			}
		})
	}
}
