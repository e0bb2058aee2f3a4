package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/supabase"
)

// apiHandler serves the user API (SPEC §10). Every call goes to the database
// as the caller.
type apiHandler struct {
	db       supabase.DB
	wake     Waker
	progress *progressCache
}

// wakeUp tells the dispatcher that user has work now, falling back to a sweep
// when the hint is dropped.
func (h *apiHandler) wakeUp(user uuid.UUID) {
	if !h.wake.Notify(user) {
		h.wake.Kick()
	}
}

// launchRequest is the body of POST /api/v1/batches.
type launchRequest struct {
	TemplateID            string            `json:"template_id"`
	Rows                  []json.RawMessage `json:"rows"`
	Name                  *string           `json:"name"`
	GlobalContext         json.RawMessage   `json:"global_context"`
	LaunchID              *uuid.UUID        `json:"launch_id"`
	ExecutionDelaySeconds *int              `json:"execution_delay_seconds"`
	OrchestratorConfigID  *uuid.UUID        `json:"orchestrator_config_id"`
}

// launchArgs are the arguments of public.launch_batch; omitted ones take
// their SQL defaults.
type launchArgs struct {
	TemplateID            string            `json:"p_template_id"`
	Rows                  []json.RawMessage `json:"p_rows"`
	Name                  *string           `json:"p_name,omitempty"`
	GlobalContext         json.RawMessage   `json:"p_global_context,omitempty"`
	LaunchID              *uuid.UUID        `json:"p_launch_id,omitempty"`
	ExecutionDelaySeconds *int              `json:"p_execution_delay_seconds,omitempty"`
	OrchestratorConfigID  *uuid.UUID        `json:"p_orchestrator_config_id,omitempty"`
}

func (r *launchRequest) validate() error {
	switch {
	case strings.TrimSpace(r.TemplateID) == "":
		return badRequest(CodeValidation, "template_id is required", nil)
	case len(r.Rows) == 0 || len(r.Rows) > MaxLaunchRows:
		return badRequest(CodeValidation, fmt.Sprintf("rows must hold 1 to %d objects", MaxLaunchRows), nil)
	case !isNull(r.GlobalContext) && !isObject(r.GlobalContext):
		return badRequest(CodeValidation, "global_context must be an object", nil)
	case r.ExecutionDelaySeconds != nil && *r.ExecutionDelaySeconds < 0:
		return badRequest(CodeValidation, "execution_delay_seconds must not be negative", nil)
	}
	for i, row := range r.Rows {
		if !isObject(row) {
			return badRequest(CodeValidation, fmt.Sprintf("rows[%d] must be an object", i), nil)
		}
	}
	return nil
}

// launchBatch creates a batch and its first-stage tasks (launch_batch) and
// wakes the dispatcher for the caller. 201 with {batch_id, launch_id, task_ids}.
func (h *apiHandler) launchBatch(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	var req launchRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	args := launchArgs{
		TemplateID: req.TemplateID, Rows: req.Rows, Name: req.Name, LaunchID: req.LaunchID,
		ExecutionDelaySeconds: req.ExecutionDelaySeconds, OrchestratorConfigID: req.OrchestratorConfigID,
	}
	if !isNull(req.GlobalContext) {
		args.GlobalContext = req.GlobalContext
	}
	var out json.RawMessage
	if err := h.db.RPC(c.Request().Context(), id, "launch_batch", args, &out); err != nil {
		return err
	}
	h.wakeUp(user)
	return c.JSONBlob(http.StatusCreated, out)
}

// batchArgs are the arguments of the batch functions.
type batchArgs struct {
	BatchID uuid.UUID `json:"p_batch_id"`
}

// batchCall runs fn(p_batch_id) as the caller and answers 200 with its
// result; wake says whether the call may have made work due.
func (h *apiHandler) batchCall(c echo.Context, fn string, wake bool) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	batchID, err := pathID(c)
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := h.db.RPC(c.Request().Context(), id, fn, batchArgs{BatchID: batchID}, &out); err != nil {
		return err
	}
	if wake {
		h.wakeUp(user)
	}
	return c.JSONBlob(http.StatusOK, out)
}

// batchProgress answers get_batch_progress: counts by status and stage.
// With max_age=<seconds> (1 to 10) the caller accepts an answer that old,
// shared with the caller's other viewers of the batch (see progressCache).
func (h *apiHandler) batchProgress(c echo.Context) error {
	s := c.QueryParam("max_age")
	if s == "" {
		return h.batchCall(c, "get_batch_progress", false)
	}
	secs, err := strconv.Atoi(s)
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > MaxProgressAge {
		return badRequest(CodeValidation, "max_age must be 1 to 10 seconds", err)
	}
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	batchID, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	out, err := h.progress.get(ctx, progressKey{user: user, batch: batchID}, time.Duration(secs)*time.Second, func() (json.RawMessage, error) {
		var out json.RawMessage
		err := h.db.RPC(ctx, id, "get_batch_progress", batchArgs{BatchID: batchID}, &out)
		return out, err
	})
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, out)
}

// pauseBatch stops new claims for the batch's tasks.
func (h *apiHandler) pauseBatch(c echo.Context) error { return h.batchCall(c, "pause_batch", false) }

// resumeBatch lets a paused batch run again.
func (h *apiHandler) resumeBatch(c echo.Context) error { return h.batchCall(c, "resume_batch", true) }

// cancelBatch cancels the batch and its unfinished tasks.
func (h *apiHandler) cancelBatch(c echo.Context) error { return h.batchCall(c, "cancel_batch", false) }

type retriedResponse struct {
	Retried int `json:"retried"`
}

// retryFailedInBatch re-queues every failed task of the batch
// (retry_all_failed_in_batch) and answers {"retried": n}.
func (h *apiHandler) retryFailedInBatch(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	batchID, err := pathID(c)
	if err != nil {
		return err
	}
	var n int
	if err := h.db.RPC(c.Request().Context(), id, "retry_all_failed_in_batch", batchArgs{BatchID: batchID}, &n); err != nil {
		return err
	}
	if n > 0 {
		h.wakeUp(user)
	}
	return c.JSON(http.StatusOK, retriedResponse{Retried: n})
}
