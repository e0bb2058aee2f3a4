package handlers_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

const (
	whTaskID = "5b0c6a0e-7c2e-4c55-9d43-2f7b1d7f3a10"
	whUserID = "0f9d8c7b-6a5e-4d3c-8b2a-1f0e9d8c7b6a"
)

// taskJSON is an ai_tasks row as Supabase sends it (jsonb: any key order,
// timestamps as ISO strings).
func taskJSON(status, approvedAt string) string {
	approved := "null"
	if approvedAt != "" {
		approved = `"` + approvedAt + `"`
	}
	return fmt.Sprintf(`{"id": %q, "user_id": %q, "status": %q, "batch_id": "8a4e0c1d-3b2a-4f5e-9d8c-7b6a5f4e3d2c",
		"stage_key": "outline", "input_data": {"topic": "tides"}, "output_data": null, "attempts": 0,
		"requires_approval": true, "approved_at": %s, "created_at": "2026-11-26T10:00:00.123456+00:00"}`,
		whTaskID, whUserID, status, approved)
}

func payload(typ, record, oldRecord string) string {
	return fmt.Sprintf(`{"type": %q, "table": "ai_tasks", "schema": "public", "record": %s, "old_record": %s}`,
		typ, record, oldRecord)
}

func TestWebhook(t *testing.T) {
	t.Parallel()

	const approvedAt = "2026-11-26T10:05:00+00:00"
	tests := []struct {
		name         string
		givenBody    string
		givenHeader  http.Header // nil: the right shared secret
		expectStatus int
		expectCode   string // error code, or the "status" of a 202
		expectNotify bool
		expectKick   bool
	}{
		{name: "InsertPlan", givenBody: payload("INSERT", taskJSON("plan", ""), "null"), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "InsertPending", givenBody: payload("INSERT", taskJSON("pending", ""), "null"), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "InsertProcessing", givenBody: payload("INSERT", taskJSON("processing", ""), "null"), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateRetryFromFailed", givenBody: payload("UPDATE", taskJSON("plan", ""), taskJSON("failed", "")), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "UpdatePlanToPlan", givenBody: payload("UPDATE", taskJSON("plan", ""), taskJSON("plan", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateEchoProcessing", givenBody: payload("UPDATE", taskJSON("processing", ""), taskJSON("plan", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateEchoCompleted", givenBody: payload("UPDATE", taskJSON("completed", ""), taskJSON("processing", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateEchoFailed", givenBody: payload("UPDATE", taskJSON("failed", ""), taskJSON("processing", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateApproval", givenBody: payload("UPDATE", taskJSON("completed", approvedAt), taskJSON("generated", "")), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "UpdateApprovalStillGenerated", givenBody: payload("UPDATE", taskJSON("generated", approvedAt), taskJSON("generated", "")), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "UpdateApprovedAgain", givenBody: payload("UPDATE", taskJSON("completed", approvedAt), taskJSON("completed", approvedAt)), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateGenerated", givenBody: payload("UPDATE", taskJSON("generated", ""), taskJSON("processing", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UpdateWithoutOldRecord", givenBody: payload("UPDATE", taskJSON("plan", ""), "null"), expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "Delete", givenBody: payload("DELETE", "null", taskJSON("plan", "")), expectStatus: 202, expectCode: "ignored"},
		{name: "UnknownTopLevelFieldAccepted", givenBody: `{"type":"INSERT","table":"ai_tasks","schema":"public","record":` + taskJSON("plan", "") + `,"old_record":null,"user_id":null,"extra":1}`, expectStatus: 202, expectCode: "queued", expectNotify: true},
		{name: "NoUserIDKicks", givenBody: payload("INSERT", fmt.Sprintf(`{"id":%q,"status":"plan"}`, whTaskID), "null"), expectStatus: 202, expectCode: "queued", expectKick: true},
		{name: "BadUserIDKicks", givenBody: payload("INSERT", fmt.Sprintf(`{"id":%q,"user_id":"nope","status":"plan"}`, whTaskID), "null"), expectStatus: 202, expectCode: "queued", expectKick: true},
		{name: "WrongTable", givenBody: strings.Replace(payload("INSERT", taskJSON("plan", ""), "null"), `"ai_tasks"`, `"task_batches"`, 1), expectStatus: 400, expectCode: "wrong_table"},
		{name: "WrongSchema", givenBody: strings.Replace(payload("INSERT", taskJSON("plan", ""), "null"), `"public"`, `"auth"`, 1), expectStatus: 400, expectCode: "wrong_table"},
		{name: "MissingTable", givenBody: `{"type":"INSERT","schema":"public","record":` + taskJSON("plan", "") + `}`, expectStatus: 400, expectCode: "wrong_table"},
		{name: "UnknownType", givenBody: payload("TRUNCATE", "null", "null"), expectStatus: 400, expectCode: "unknown_type"},
		{name: "LowercaseType", givenBody: payload("insert", taskJSON("plan", ""), "null"), expectStatus: 400, expectCode: "unknown_type"},
		{name: "MissingType", givenBody: `{"table":"ai_tasks","schema":"public","record":` + taskJSON("plan", "") + `}`, expectStatus: 400, expectCode: "unknown_type"},
		{name: "MissingID", givenBody: payload("INSERT", `{"status":"plan","user_id":"`+whUserID+`"}`, "null"), expectStatus: 400, expectCode: "missing_id"},
		{name: "NonUUIDID", givenBody: payload("INSERT", `{"id":"42","status":"plan"}`, "null"), expectStatus: 400, expectCode: "missing_id"},
		{name: "NumericID", givenBody: payload("INSERT", `{"id":42,"status":"plan"}`, "null"), expectStatus: 400, expectCode: "missing_id"},
		{name: "NullRecord", givenBody: payload("INSERT", "null", "null"), expectStatus: 400, expectCode: "missing_id"},
		{name: "ArrayRecord", givenBody: payload("UPDATE", "[1,2]", "null"), expectStatus: 400, expectCode: "missing_id"},
		{name: "MalformedJSON", givenBody: `{"type":"INSERT",`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "WrongFieldType", givenBody: `{"type":1,"table":"ai_tasks","schema":"public"}`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "TopLevelArray", givenBody: `[]`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "TopLevelNull", givenBody: `null`, expectStatus: 400, expectCode: "malformed_json"},
		{name: "EmptyBody", givenBody: ``, expectStatus: 400, expectCode: "malformed_json"},
		{name: "Oversize", givenBody: payload("INSERT", taskJSON("plan", ""), `{"pad":"`+strings.Repeat("x", testWebhookMax)+`"}`), expectStatus: 413, expectCode: "payload_too_large"},
		{name: "MissingSecret", givenBody: payload("INSERT", taskJSON("plan", ""), "null"), givenHeader: http.Header{}, expectStatus: 401, expectCode: "invalid_webhook"},
		{name: "WrongSecret", givenBody: payload("INSERT", taskJSON("plan", ""), "null"), givenHeader: http.Header{testWebhookHeader: []string{"guess"}}, expectStatus: 401, expectCode: "invalid_webhook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var res *response
			if tt.givenHeader != nil {
				res = b.do(t, http.MethodPost, "/webhooks/supabase", tt.givenHeader, strings.NewReader(tt.givenBody))
			} else {
				res = b.webhook(t, tt.givenBody)
			}
			if tt.expectStatus == http.StatusAccepted {
				require.Equal(t, tt.expectStatus, res.Status, "body: %s", res.Body)
				require.Equal(t, map[string]any{"status": tt.expectCode}, res.json(t))
			} else {
				res.requireError(t, tt.expectStatus, tt.expectCode)
			}
			notified, kicks := b.wake.snapshot()
			if tt.expectNotify {
				require.Equal(t, []uuid.UUID{uuid.MustParse(whUserID)}, notified)
			} else {
				require.Empty(t, notified)
			}
			require.Equal(t, tt.expectKick, kicks == 1, "kicks: %d", kicks)
			require.Empty(t, b.db.Calls(), "the webhook must not touch the database")

			metrics := b.scrape(t)
			require.Contains(t, metrics, fmt.Sprintf(`orchable_webhooks_total{outcome=%q} 1`, tt.expectCode))
			require.Contains(t, metrics, "orchable_webhook_ack_duration_seconds_count 1")
		})
	}
}

func TestWebhookNotifyDroppedKicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.wake.accept = false // dispatcher full: fall back to a sweep
	res := b.webhook(t, payload("INSERT", taskJSON("plan", ""), "null"))
	require.Equal(t, http.StatusAccepted, res.Status)
	notified, kicks := b.wake.snapshot()
	require.Len(t, notified, 1)
	require.Equal(t, 1, kicks)
}

func TestWebhookMethodNotAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.do(t, http.MethodGet, "/webhooks/supabase", nil, nil)
	res.requireError(t, http.StatusMethodNotAllowed, "method_not_allowed")
}

// FuzzWebhookPayload feeds arbitrary bodies through the real router: the
// answer is never a 5xx, and a 202 is either queued or ignored.
func FuzzWebhookPayload(f *testing.F) {
	const approvedAt = "2026-11-26T10:05:00+00:00"
	for _, seed := range []string{
		payload("INSERT", taskJSON("plan", ""), "null"),
		payload("INSERT", taskJSON("processing", ""), "null"),
		payload("UPDATE", taskJSON("plan", ""), taskJSON("failed", "")),
		payload("UPDATE", taskJSON("completed", ""), taskJSON("processing", "")),
		payload("UPDATE", taskJSON("completed", approvedAt), taskJSON("generated", "")),
		payload("DELETE", "null", taskJSON("completed", "")),
		`{"type":"INSERT","table":"ai_tasks","schema":"public","record":{"id":"x"},"old_record":null}`,
		`{"type":"UPDATE","table":"ai_tasks","schema":"public","record":[],"old_record":"x"}`,
		`{"type":"INSERT"`, `null`, `[]`, ``, `"x"`, `{}`, "\x00\xff",
	} {
		f.Add(seed)
	}
	b := setup(f)
	f.Fuzz(func(t *testing.T, body string) {
		res := b.webhook(t, body)
		require.Less(t, res.Status, 500, "body: %q → %s", body, res.Body)
		if res.Status == http.StatusAccepted {
			status := res.json(t)["status"]
			require.Contains(t, []any{"queued", "ignored"}, status)
		} else {
			require.Contains(t, []int{400, 413}, res.Status, "body: %q → %s", body, res.Body)
			require.NotEmpty(t, res.json(t)["code"])
		}
	})
}
