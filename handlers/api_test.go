package handlers_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

const (
	apiBatchID = "8a4e0c1d-3b2a-4f5e-9d8c-7b6a5f4e3d2c"
	apiTaskID  = "5b0c6a0e-7c2e-4c55-9d43-2f7b1d7f3a10"
)

func TestAPIRoutes(t *testing.T) {
	t.Parallel()

	launchResult := `{"batch_id":"` + apiBatchID + `","launch_id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","task_ids":["` + apiTaskID + `"]}`
	tests := []struct {
		name           string
		givenMethod    string
		givenPath      string
		givenBody      string
		givenResult    string // what the fake database answers
		expectFunction string
		expectArgs     string
		expectStatus   int
		expectBody     string
		expectWake     bool
	}{
		{
			name: "LaunchMinimal", givenMethod: "POST", givenPath: "/api/v1/batches",
			givenBody:      `{"template_id":"tpl-outline","rows":[{"topic":"tides"},{"topic":"moons"}]}`,
			givenResult:    launchResult,
			expectFunction: "launch_batch", expectArgs: `{"p_template_id":"tpl-outline","p_rows":[{"topic":"tides"},{"topic":"moons"}]}`,
			expectStatus: 201, expectBody: launchResult, expectWake: true,
		},
		{
			name: "LaunchFull", givenMethod: "POST", givenPath: "/api/v1/batches",
			givenBody: `{"template_id":"tpl-outline","rows":[{"topic":"tides"}],"name":"Tides","global_context":{"tone":"dry"},
				"launch_id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","execution_delay_seconds":2,"orchestrator_config_id":"` + apiBatchID + `"}`,
			givenResult:    launchResult,
			expectFunction: "launch_batch",
			expectArgs: `{"p_template_id":"tpl-outline","p_rows":[{"topic":"tides"}],"p_name":"Tides","p_global_context":{"tone":"dry"},
				"p_launch_id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","p_execution_delay_seconds":2,"p_orchestrator_config_id":"` + apiBatchID + `"}`,
			expectStatus: 201, expectBody: launchResult, expectWake: true,
		},
		{
			name: "LaunchNullGlobalContext", givenMethod: "POST", givenPath: "/api/v1/batches",
			givenBody:      `{"template_id":"t","rows":[{}],"global_context":null}`,
			givenResult:    launchResult,
			expectFunction: "launch_batch", expectArgs: `{"p_template_id":"t","p_rows":[{}]}`,
			expectStatus: 201, expectBody: launchResult, expectWake: true,
		},
		{
			name: "Progress", givenMethod: "GET", givenPath: "/api/v1/batches/" + apiBatchID,
			givenResult:    `{"batch_id":"` + apiBatchID + `","total":3,"completed":1}`,
			expectFunction: "get_batch_progress", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"batch_id":"` + apiBatchID + `","total":3,"completed":1}`,
		},
		{
			name: "Pause", givenMethod: "POST", givenPath: "/api/v1/batches/" + apiBatchID + "/pause",
			givenResult:    `{"status":"paused"}`,
			expectFunction: "pause_batch", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"status":"paused"}`,
		},
		{
			name: "Resume", givenMethod: "POST", givenPath: "/api/v1/batches/" + apiBatchID + "/resume",
			givenResult:    `{"status":"processing"}`,
			expectFunction: "resume_batch", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"status":"processing"}`, expectWake: true,
		},
		{
			name: "Cancel", givenMethod: "POST", givenPath: "/api/v1/batches/" + apiBatchID + "/cancel",
			givenResult:    `{"status":"cancelled","cancelled_tasks":4}`,
			expectFunction: "cancel_batch", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"status":"cancelled","cancelled_tasks":4}`,
		},
		{
			name: "RetryFailed", givenMethod: "POST", givenPath: "/api/v1/batches/" + apiBatchID + "/retry-failed",
			givenResult:    `3`,
			expectFunction: "retry_all_failed_in_batch", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"retried":3}`, expectWake: true,
		},
		{
			name: "RetryFailedNone", givenMethod: "POST", givenPath: "/api/v1/batches/" + apiBatchID + "/retry-failed",
			givenResult:    `0`,
			expectFunction: "retry_all_failed_in_batch", expectArgs: `{"p_batch_id":"` + apiBatchID + `"}`,
			expectStatus: 200, expectBody: `{"retried":0}`,
		},
		{
			name: "ApproveNoBody", givenMethod: "POST", givenPath: "/api/v1/tasks/" + apiTaskID + "/approve",
			givenResult:    `{"status":"completed","created":2,"waiting":0}`,
			expectFunction: "approve_task", expectArgs: `{"p_task_id":"` + apiTaskID + `"}`,
			expectStatus: 200, expectBody: `{"status":"completed","created":2,"waiting":0}`, expectWake: true,
		},
		{
			name: "ApproveEdited", givenMethod: "POST", givenPath: "/api/v1/tasks/" + apiTaskID + "/approve",
			givenBody:      `{"edited_output":{"title":"Better"},"edit_notes":"tightened"}`,
			givenResult:    `{"status":"completed","created":1,"waiting":0}`,
			expectFunction: "approve_task", expectArgs: `{"p_task_id":"` + apiTaskID + `","p_edited_output":{"title":"Better"},"p_edit_notes":"tightened"}`,
			expectStatus: 200, expectBody: `{"status":"completed","created":1,"waiting":0}`, expectWake: true,
		},
		{
			name: "Reject", givenMethod: "POST", givenPath: "/api/v1/tasks/" + apiTaskID + "/reject",
			givenBody:      `{"reason":"off topic"}`,
			givenResult:    `{"status":"failed"}`,
			expectFunction: "reject_task", expectArgs: `{"p_task_id":"` + apiTaskID + `","p_reason":"off topic","p_regenerate":false}`,
			expectStatus: 200, expectBody: `{"status":"failed"}`,
		},
		{
			name: "RejectRegenerate", givenMethod: "POST", givenPath: "/api/v1/tasks/" + apiTaskID + "/reject",
			givenBody:      `{"reason":"shorter","regenerate":true}`,
			givenResult:    `{"status":"plan"}`,
			expectFunction: "reject_task", expectArgs: `{"p_task_id":"` + apiTaskID + `","p_reason":"shorter","p_regenerate":true}`,
			expectStatus: 200, expectBody: `{"status":"plan"}`, expectWake: true,
		},
		{
			name: "RetryTask", givenMethod: "POST", givenPath: "/api/v1/tasks/" + apiTaskID + "/retry",
			expectFunction: "retry_failed_task", expectArgs: `{"p_task_id":"` + apiTaskID + `"}`,
			expectStatus: 200, expectBody: `{"task_id":"` + apiTaskID + `","status":"plan"}`, expectWake: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			user := uuid.New()
			if tt.givenResult != "" {
				b.db.answer(tt.expectFunction, tt.givenResult)
			}
			res := b.api(t, tt.givenMethod, tt.givenPath, user, tt.givenBody)
			require.Equal(t, tt.expectStatus, res.Status, "body: %s", res.Body)
			require.JSONEq(t, tt.expectBody, string(res.Body))

			calls := b.db.Calls()
			require.Len(t, calls, 1)
			require.Equal(t, tt.expectFunction, calls[0].Function)
			require.JSONEq(t, tt.expectArgs, string(calls[0].Args))
			requireIdentity(t, calls[0].Identity, user)

			notified, _ := b.wake.snapshot()
			if tt.expectWake {
				require.Equal(t, []uuid.UUID{user}, notified)
			} else {
				require.Empty(t, notified)
			}
		})
	}
}

// requireIdentity checks that the call went to the database as user: the
// forwarded bearer token and its claims.
func requireIdentity(t *testing.T, id supabase.Identity, user uuid.UUID) {
	t.Helper()
	require.NotEmpty(t, id.Token)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(id.Claims, &claims))
	require.Equal(t, user.String(), claims["sub"])
	require.Equal(t, "authenticated", claims["role"])
	require.Equal(t, "authenticated", claims["aud"])
	// The token is the caller's own: its payload carries the same subject.
	parts := strings.Split(id.Token, ".")
	require.Len(t, parts, 3)
}

func TestAPIValidation(t *testing.T) {
	t.Parallel()

	batch := "/api/v1/batches/" + apiBatchID
	task := "/api/v1/tasks/" + apiTaskID
	tooMany := `{"template_id":"t","rows":[` + strings.TrimSuffix(strings.Repeat(`{},`, 10_001), ",") + `]}`
	tests := []struct {
		name         string
		givenMethod  string
		givenPath    string
		givenBody    string
		expectStatus int
		expectCode   string
	}{
		{name: "LaunchNoBody", givenMethod: "POST", givenPath: "/api/v1/batches", expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchMalformed", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchArray", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `[]`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchTrailing", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{}]} {}`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchUnknownField", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{}],"row":[]}`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchNoTemplate", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"rows":[{}]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchBlankTemplate", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"  ","rows":[{}]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchNoRows", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t"}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchEmptyRows", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchRowNotObject", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{},"x"]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchRowNull", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[null]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchTooManyRows", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: tooMany, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchGlobalContextArray", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{}],"global_context":[]}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchNegativeDelay", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{}],"execution_delay_seconds":-1}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "LaunchBadLaunchID", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{}],"launch_id":"nope"}`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "LaunchTooLarge", givenMethod: "POST", givenPath: "/api/v1/batches", givenBody: `{"template_id":"t","rows":[{"pad":"` + strings.Repeat("x", testAPIMaxBody) + `"}]}`, expectStatus: 413, expectCode: "payload_too_large"},
		{name: "ProgressBadID", givenMethod: "GET", givenPath: "/api/v1/batches/42", expectStatus: 400, expectCode: "invalid_id"},
		{name: "PauseBadID", givenMethod: "POST", givenPath: "/api/v1/batches/not-a-uuid/pause", expectStatus: 400, expectCode: "invalid_id"},
		{name: "ResumeBadID", givenMethod: "POST", givenPath: "/api/v1/batches/x/resume", expectStatus: 400, expectCode: "invalid_id"},
		{name: "CancelBadID", givenMethod: "POST", givenPath: "/api/v1/batches/x/cancel", expectStatus: 400, expectCode: "invalid_id"},
		{name: "RetryFailedBadID", givenMethod: "POST", givenPath: "/api/v1/batches/x/retry-failed", expectStatus: 400, expectCode: "invalid_id"},
		{name: "ApproveBadID", givenMethod: "POST", givenPath: "/api/v1/tasks/x/approve", expectStatus: 400, expectCode: "invalid_id"},
		{name: "ApproveUnknownField", givenMethod: "POST", givenPath: task + "/approve", givenBody: `{"edited":1}`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "RejectBadID", givenMethod: "POST", givenPath: "/api/v1/tasks/x/reject", givenBody: `{"reason":"r"}`, expectStatus: 400, expectCode: "invalid_id"},
		{name: "RejectNoBody", givenMethod: "POST", givenPath: task + "/reject", expectStatus: 400, expectCode: "malformed_json"},
		{name: "RejectNoReason", givenMethod: "POST", givenPath: task + "/reject", givenBody: `{"regenerate":true}`, expectStatus: 400, expectCode: "validation_failed"},
		{name: "RetryBadID", givenMethod: "POST", givenPath: "/api/v1/tasks/" + strings.ToUpper(apiTaskID) + "x/retry", expectStatus: 400, expectCode: "invalid_id"},
		{name: "UnknownRoute", givenMethod: "GET", givenPath: "/api/v1/nothing", expectStatus: 404, expectCode: "not_found"},
		{name: "WrongMethod", givenMethod: "DELETE", givenPath: batch, expectStatus: 405, expectCode: "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			res := b.api(t, tt.givenMethod, tt.givenPath, uuid.New(), tt.givenBody)
			res.requireError(t, tt.expectStatus, tt.expectCode)
			require.Empty(t, b.db.Calls())
			notified, kicks := b.wake.snapshot()
			require.Empty(t, notified)
			require.Zero(t, kicks)
		})
	}
}

func TestAPIAuthentication(t *testing.T) {
	t.Parallel()

	routes := [][2]string{
		{"POST", "/api/v1/batches"},
		{"GET", "/api/v1/batches/" + apiBatchID},
		{"POST", "/api/v1/batches/" + apiBatchID + "/pause"},
		{"POST", "/api/v1/batches/" + apiBatchID + "/resume"},
		{"POST", "/api/v1/batches/" + apiBatchID + "/cancel"},
		{"POST", "/api/v1/batches/" + apiBatchID + "/retry-failed"},
		{"POST", "/api/v1/tasks/" + apiTaskID + "/approve"},
		{"POST", "/api/v1/tasks/" + apiTaskID + "/reject"},
		{"POST", "/api/v1/tasks/" + apiTaskID + "/retry"},
	}
	for _, r := range routes {
		t.Run(strings.ReplaceAll(r[0]+r[1], "/", "_"), func(t *testing.T) {
			t.Parallel()
			b := setup(t)

			res := b.api(t, r[0], r[1], uuid.Nil, `{}`)
			res.requireError(t, http.StatusUnauthorized, "missing_token")
			require.NotEmpty(t, res.Header.Get("WWW-Authenticate"))

			h := http.Header{"Authorization": []string{"Bearer " + token(t, uuid.New()) + "x"}}
			res = b.do(t, r[0], r[1], h, strings.NewReader(`{}`))
			res.requireError(t, http.StatusUnauthorized, "invalid_token")

			require.Empty(t, b.db.Calls())
		})
	}
}

func TestAPIDatabaseErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		givenErr      error
		expectStatus  int
		expectCode    string
		expectMessage string
	}{
		{name: "NotFound", givenErr: supabase.NewError("PT404", "batch x not found or not visible", "", "", true), expectStatus: 404, expectCode: "not_found", expectMessage: "batch x not found or not visible"},
		{name: "Conflict", givenErr: supabase.NewError("PT409", "batch x is completed and cannot be paused", "", "", true), expectStatus: 409, expectCode: "conflict", expectMessage: "batch x is completed and cannot be paused"},
		{name: "Unprocessable", givenErr: supabase.NewError("PT422", "successor template missing", "", "", true), expectStatus: 422, expectCode: "unprocessable", expectMessage: "successor template missing"},
		{name: "InvalidParameter", givenErr: supabase.NewError("22023", "p_rows must be a non-empty JSON array", "", "", true), expectStatus: 400, expectCode: "bad_request", expectMessage: "p_rows must be a non-empty JSON array"},
		{name: "Forbidden", givenErr: supabase.NewError("42501", "permission denied for function pause_batch", "", "", true), expectStatus: 403, expectCode: "forbidden", expectMessage: "permission denied for function pause_batch"},
		{name: "Unavailable", givenErr: supabase.NewError("08006", "connection failure at 10.0.0.1", "", "", true), expectStatus: 503, expectCode: "unavailable", expectMessage: "the database is unavailable; try again"},
		{name: "UndefinedFunction", givenErr: supabase.NewError("42883", "function public.pause_batch(uuid) does not exist", "", "", true), expectStatus: 500, expectCode: "internal_error"},
		{name: "PlainError", givenErr: errors.New("boom at 10.0.0.1"), expectStatus: 500, expectCode: "internal_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.db.fail("pause_batch", tt.givenErr)
			res := b.api(t, "POST", "/api/v1/batches/"+apiBatchID+"/pause", uuid.New(), "")
			res.requireError(t, tt.expectStatus, tt.expectCode)
			body := res.json(t)
			if tt.expectMessage != "" {
				require.Equal(t, tt.expectMessage, body["message"])
			}
			if tt.expectStatus >= 500 {
				require.NotEmpty(t, body["request_id"])
				require.Equal(t, res.Header.Get("X-Request-Id"), body["request_id"])
				require.NotContains(t, string(res.Body), "10.0.0.1")
				require.NotContains(t, string(res.Body), "does not exist")
			}
			if tt.expectStatus == 500 {
				require.Contains(t, b.logs.String(), "handlers: request failed")
			}
			notified, _ := b.wake.snapshot()
			require.Empty(t, notified)
		})
	}
}

// TestRequestLogNeverHasTokens checks that the request log carries the
// request id and never the bearer token.
func TestRequestLogNeverHasTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.New()
	tok := token(t, user)
	h := http.Header{"Authorization": []string{"Bearer " + tok}}
	res := b.do(t, "GET", "/api/v1/batches/"+apiBatchID+"?access_token="+tok, h, nil)
	require.Equal(t, http.StatusOK, res.Status)
	logs := b.logs.String()
	require.Contains(t, logs, `"request_id":"`+res.Header.Get("X-Request-Id")+`"`)
	require.Contains(t, logs, `"route":"/api/v1/batches/:id"`)
	require.NotContains(t, logs, tok)
	require.NotContains(t, logs, strings.Split(tok, ".")[2])
}
