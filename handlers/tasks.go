package handlers

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// approveRequest is the optional body of POST /api/v1/tasks/:id/approve.
type approveRequest struct {
	EditedOutput json.RawMessage `json:"edited_output"`
	EditNotes    *string         `json:"edit_notes"`
}

type approveArgs struct {
	TaskID       uuid.UUID       `json:"p_task_id"`
	EditedOutput json.RawMessage `json:"p_edited_output,omitempty"`
	EditNotes    *string         `json:"p_edit_notes,omitempty"`
}

// approveTask approves a generated task, optionally with edited output
// (approve_task), which creates its successors; the dispatcher is woken.
func (h *apiHandler) approveTask(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	taskID, err := pathID(c)
	if err != nil {
		return err
	}
	var req approveRequest
	if err := bindJSON(c, &req, true); err != nil {
		return err
	}
	args := approveArgs{TaskID: taskID, EditNotes: req.EditNotes}
	if !isNull(req.EditedOutput) {
		args.EditedOutput = req.EditedOutput
	}
	var out json.RawMessage
	if err := h.db.RPC(c.Request().Context(), id, "approve_task", args, &out); err != nil {
		return err
	}
	h.wakeUp(user)
	return c.JSONBlob(http.StatusOK, out)
}

// rejectRequest is the body of POST /api/v1/tasks/:id/reject.
type rejectRequest struct {
	Reason     string `json:"reason"`
	Regenerate bool   `json:"regenerate"`
}

type rejectArgs struct {
	TaskID     uuid.UUID `json:"p_task_id"`
	Reason     string    `json:"p_reason"`
	Regenerate bool      `json:"p_regenerate"`
}

// rejectTask rejects a generated task (reject_task): it fails, or with
// regenerate goes back to plan with the reason as reviewer notes.
func (h *apiHandler) rejectTask(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	taskID, err := pathID(c)
	if err != nil {
		return err
	}
	var req rejectRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return badRequest(CodeValidation, "reason is required", nil)
	}
	var out json.RawMessage
	args := rejectArgs{TaskID: taskID, Reason: req.Reason, Regenerate: req.Regenerate}
	if err := h.db.RPC(c.Request().Context(), id, "reject_task", args, &out); err != nil {
		return err
	}
	if req.Regenerate {
		h.wakeUp(user)
	}
	return c.JSONBlob(http.StatusOK, out)
}

type taskArgs struct {
	TaskID uuid.UUID `json:"p_task_id"`
}

type retryResponse struct {
	TaskID uuid.UUID `json:"task_id"`
	Status string    `json:"status"`
}

// retryTask resets a finished task and removes its descendants
// (retry_failed_task), then wakes the dispatcher. 200 {"task_id", "status": "plan"}.
func (h *apiHandler) retryTask(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	taskID, err := pathID(c)
	if err != nil {
		return err
	}
	if err := h.db.RPC(c.Request().Context(), id, "retry_failed_task", taskArgs{TaskID: taskID}, nil); err != nil {
		return err
	}
	h.wakeUp(user)
	return c.JSON(http.StatusOK, retryResponse{TaskID: taskID, Status: "plan"})
}
