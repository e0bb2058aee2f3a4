package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
)

// Webhook outcomes, as answered ({"status": …}) and counted in metrics.
const (
	webhookQueued  = "queued"
	webhookIgnored = "ignored"
)

// webhookPayload is the body of a Supabase Database Webhook
// (platform-facts §A2). Unknown top-level fields are accepted: Supabase may
// add some.
type webhookPayload struct {
	Type      string          `json:"type"`
	Table     string          `json:"table"`
	Schema    string          `json:"schema"`
	Record    json.RawMessage `json:"record"`
	OldRecord json.RawMessage `json:"old_record"`
}

// taskRow is the little the webhook looks at in an ai_tasks row. It is a
// hint only: the row is re-read (claimed) as its owner before anything is done.
type taskRow struct {
	ID         string          `json:"id"`
	UserID     string          `json:"user_id"`
	Status     string          `json:"status"`
	ApprovedAt json.RawMessage `json:"approved_at"`
}

func (r *taskRow) approved() bool {
	return len(r.ApprovedAt) > 0 && !bytes.Equal(r.ApprovedAt, []byte("null"))
}

type webhookHandler struct {
	wake    Waker
	metrics *Metrics
}

type webhookResponse struct {
	Status string `json:"status"`
}

// handle acknowledges a Supabase webhook for public.ai_tasks (SPEC §6): it
// decides from the payload whether the change may have made work due, wakes
// the dispatcher if so, and answers 202 at once. It never calls the database.
func (h *webhookHandler) handle(c echo.Context) error {
	raw, err := io.ReadAll(c.Request().Body) // capped by WebhookAuth
	if err != nil {
		return badRequest(CodeMalformedJSON, "the body could not be read", err)
	}
	rec, actionable, err := classifyWebhook(raw)
	if err != nil {
		return err
	}
	outcome := webhookIgnored
	if actionable {
		outcome = webhookQueued
		if uid, perr := uuid.Parse(rec.UserID); perr == nil && uid != uuid.Nil {
			if !h.wake.Notify(uid) {
				h.wake.Kick()
			}
		} else {
			h.wake.Kick()
		}
	}
	c.Set(webhookOutcomeKey, outcome)
	return c.JSON(http.StatusAccepted, webhookResponse{Status: outcome})
}

// classifyWebhook validates a payload and reports whether it announces work:
// an INSERT of a task in plan (or pending), an UPDATE that moves a task into
// plan/pending (retry, resume), or an UPDATE that sets approved_at on a
// generated task. Everything else, including the echoes of the engine's own
// writes, is not actionable. Bad input gives a 400 *apierror.Error.
func classifyWebhook(raw []byte) (*taskRow, bool, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false, badRequest(CodeMalformedJSON, "the body must be a JSON object", nil)
	}
	var p webhookPayload
	if err := json.Unmarshal(trimmed, &p); err != nil {
		return nil, false, badRequest(CodeMalformedJSON, "the body is not a valid webhook payload", err)
	}
	if p.Table != "ai_tasks" || p.Schema != "public" {
		return nil, false, badRequest(CodeWrongTable, "only public.ai_tasks webhooks are accepted", nil)
	}
	switch p.Type {
	case "INSERT", "UPDATE":
	case "DELETE":
		return nil, false, nil
	default:
		return nil, false, badRequest(CodeUnknownType, "type must be INSERT, UPDATE or DELETE", nil)
	}
	rec, ok := decodeRow(p.Record)
	if !ok {
		return nil, false, badRequest(CodeMissingID, "record must be an object whose id is a UUID", nil)
	}
	if _, err := uuid.Parse(rec.ID); err != nil {
		return nil, false, badRequest(CodeMissingID, "record must be an object whose id is a UUID", err)
	}
	if p.Type == "INSERT" {
		return rec, isDue(rec.Status), nil
	}
	old, ok := decodeRow(p.OldRecord)
	if !ok {
		old = &taskRow{} // an UPDATE without a usable old row: judge by the new one
	}
	switch {
	case isDue(rec.Status) && old.Status != rec.Status:
		return rec, true, nil
	case (old.Status == "generated" || rec.Status == "generated") && !old.approved() && rec.approved():
		return rec, true, nil
	default:
		return rec, false, nil
	}
}

func decodeRow(raw json.RawMessage) (*taskRow, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var r taskRow
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, false
	}
	return &r, true
}

func isDue(status string) bool { return status == "plan" || status == "pending" }

const webhookOutcomeKey = "orchable.webhook_outcome"

// observe wraps the whole webhook chain, authentication included, to record
// the acknowledgement latency and the outcome.
func (h *webhookHandler) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		outcome, _ := c.Get(webhookOutcomeKey).(string)
		if err != nil {
			outcome = errorOutcome(err)
		}
		h.metrics.webhookHandled(outcome, time.Since(start))
		return err
	}
}

func errorOutcome(err error) string {
	if ae, ok := errors.AsType[*apierror.Error](err); ok {
		return ae.Code
	}
	return "error"
}
