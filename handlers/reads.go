package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/supabase"
)

// The read endpoints below serve the console (and any other client): each
// reads the caller's own rows as the caller (RLS applies, and every query is
// also filtered by the caller's id), in bounded pages, without the large
// columns unless one task is asked for.

// Page sizes of the list endpoints.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// batchColumns are the columns of GET /api/v1/batches (the folded counters:
// reading them costs the same for any batch size).
var batchColumns = []string{ //nolint:gochecknoglobals // read-only
	"id", "name", "status", "total_tasks", "pending_tasks", "processing_tasks", "completed_tasks",
	"failed_tasks", "created_at", "started_at", "completed_at", "orchestrator_config_id",
}

// taskListColumns are the columns of a task list: no input, output or prompt.
var taskListColumns = []string{ //nolint:gochecknoglobals // read-only
	"id", "batch_id", "parent_task_id", "root_task_id", "stage_key", "step_number", "status",
	"created_at", "started_at", "completed_at", "total_token_count", "api_key_id", "attempts",
	"retry_count", "error_message", "model_id",
}

// taskDetailColumns are the columns of GET /api/v1/tasks/{id}. Engine
// internals (lease holder, idempotency key) are left out.
var taskDetailColumns = []string{ //nolint:gochecknoglobals // read-only
	"id", "batch_id", "parent_task_id", "root_task_id", "stage_key", "step_number", "total_steps",
	"status", "task_type", "prompt_template_id", "input_data", "output_data", "edited_output_data",
	"edit_notes", "error_message", "requires_approval", "approved_at", "attempts", "retry_count",
	"model_id", "model_version", "api_key_id", "prompt_token_count", "candidates_token_count",
	"thoughts_token_count", "total_token_count", "created_at", "started_at", "completed_at",
	"updated_at", "run_after", "launch_id",
}

// page reads limit (1..MaxPageSize, default DefaultPageSize) and offset.
func page(c echo.Context) (limit, offset int, err error) {
	limit, offset = DefaultPageSize, 0
	if s := c.QueryParam("limit"); s != "" {
		limit, err = strconv.Atoi(s)
		if err != nil || limit < 1 || limit > MaxPageSize {
			return 0, 0, badRequest(CodeValidation, "limit must be 1 to "+strconv.Itoa(MaxPageSize), err)
		}
	}
	if s := c.QueryParam("offset"); s != "" {
		offset, err = strconv.Atoi(s)
		if err != nil || offset < 0 || offset > 1_000_000 {
			return 0, 0, badRequest(CodeValidation, "offset must be 0 to 1000000", err)
		}
	}
	return limit, offset, nil
}

// listPage is a page of rows; HasMore says whether a next page exists.
type listPage struct {
	Items   []map[string]any `json:"items"`
	Limit   int              `json:"limit"`
	Offset  int              `json:"offset"`
	HasMore bool             `json:"has_more"`
}

// selectPage reads one page (limit+1 rows to know whether more exist).
func (h *apiHandler) selectPage(ctx context.Context, id supabase.Identity, table string, q supabase.Query, limit, offset int) (listPage, error) {
	q.Limit, q.Offset = limit+1, offset
	var rows []map[string]any
	if err := h.db.Select(ctx, id, table, q, &rows); err != nil {
		return listPage{}, err
	}
	p := listPage{Items: rows, Limit: limit, Offset: offset}
	if len(rows) > limit {
		p.Items, p.HasMore = rows[:limit], true
	}
	if p.Items == nil {
		p.Items = []map[string]any{}
	}
	return p, nil
}

// listBatches answers the caller's batches, newest first, one page.
func (h *apiHandler) listBatches(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	q := supabase.Query{
		Columns: batchColumns,
		Filters: []supabase.Filter{supabase.Eq("created_by", user)},
		Order:   []supabase.Order{supabase.Desc("created_at"), supabase.Desc("id")},
	}
	p, err := h.selectPage(c.Request().Context(), id, "task_batches", q, limit, offset)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// batchTasks answers one page of a batch's tasks (light columns), filtered
// by parent (a task id, or "none" for the tasks without a parent), stage and
// status, in step, creation and id order. Each row carries its key's name.
func (h *apiHandler) batchTasks(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	batchID, err := pathID(c)
	if err != nil {
		return err
	}
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	filters := []supabase.Filter{supabase.Eq("user_id", user), supabase.Eq("batch_id", batchID)}
	switch parent := c.QueryParam("parent"); parent {
	case "":
	case "none":
		filters = append(filters, supabase.Is("parent_task_id", nil))
	default:
		pid, err := uuid.Parse(parent)
		if err != nil {
			return badRequest(CodeValidation, `parent must be a task id or "none"`, err)
		}
		filters = append(filters, supabase.Eq("parent_task_id", pid))
	}
	if s := c.QueryParam("stage"); s != "" {
		filters = append(filters, supabase.Eq("stage_key", s))
	}
	if s := c.QueryParam("status"); s != "" {
		if !validStatus(s) {
			return badRequest(CodeValidation, "unknown status "+strconv.Quote(s), nil)
		}
		filters = append(filters, supabase.Eq("status", s))
	}
	q := supabase.Query{
		Columns: taskListColumns, Filters: filters,
		Order: []supabase.Order{supabase.Asc("step_number"), supabase.Asc("created_at"), supabase.Asc("id")},
	}
	ctx := c.Request().Context()
	p, err := h.selectPage(ctx, id, "ai_tasks", q, limit, offset)
	if err != nil {
		return err
	}
	if err := h.nameKeys(ctx, id, user, p.Items); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// validStatus reports whether s is a task status.
func validStatus(s string) bool {
	switch s {
	case "plan", "pending", "running", "processing", "awaiting_approval", "approved",
		"completed", "generated", "failed", "cancelled", "skipped":
		return true
	}
	return false
}

// nameKeys sets "api_key_name" on each row from its api_key_id (the
// caller's own keys; never key material).
func (h *apiHandler) nameKeys(ctx context.Context, id supabase.Identity, user uuid.UUID, rows []map[string]any) error {
	want := map[string]bool{}
	for _, r := range rows {
		if k, ok := r["api_key_id"].(string); ok && k != "" {
			want[k] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	ids := make([]string, 0, len(want))
	for k := range want {
		ids = append(ids, k)
	}
	var keys []struct {
		ID   string `json:"id"`
		Name string `json:"key_name"`
	}
	q := supabase.Query{Columns: []string{"id", "key_name"}, Filters: []supabase.Filter{supabase.Eq("user_id", user), supabase.In("id", ids...)}}
	if err := h.db.Select(ctx, id, "user_api_keys", q, &keys); err != nil {
		return err
	}
	names := make(map[string]string, len(keys))
	for _, k := range keys {
		names[k.ID] = k.Name
	}
	for _, r := range rows {
		if k, ok := r["api_key_id"].(string); ok {
			r["api_key_name"] = names[k]
		}
	}
	return nil
}

// taskDetail is GET /api/v1/tasks/{id}: the task and its stage.
type taskDetail struct {
	Task  map[string]any `json:"task"`
	Stage *stageInfo     `json:"stage"`
}

// stageInfo is what the console needs of a task's stage (its template).
type stageInfo struct {
	TemplateID       string          `json:"id"`
	Name             *string         `json:"name"`
	StageKey         *string         `json:"stage_key"`
	OutputSchema     json.RawMessage `json:"output_schema"`
	RequiresApproval *bool           `json:"requires_approval"`
	// ModelID is the stage's default_ai_settings.model_id, if set.
	ModelID string `json:"model_id,omitempty"`
	// AISettings is read to fill ModelID and not returned.
	AISettings json.RawMessage `json:"default_ai_settings,omitempty"`
}

// getTask answers one task with its input, output, usage and key name, and
// its stage's output schema (for editing before approval).
func (h *apiHandler) getTask(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	taskID, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var task map[string]any
	q := supabase.Query{Columns: taskDetailColumns, Filters: []supabase.Filter{supabase.Eq("id", taskID), supabase.Eq("user_id", user)}, Single: true}
	if err := h.db.Select(ctx, id, "ai_tasks", q, &task); err != nil {
		return err
	}
	if err := h.nameKeys(ctx, id, user, []map[string]any{task}); err != nil {
		return err
	}
	out := taskDetail{Task: task}
	if tid, ok := task["prompt_template_id"].(string); ok && tid != "" {
		var stages []stageInfo
		sq := supabase.Query{Columns: []string{"id", "name", "stage_key", "output_schema", "requires_approval", "default_ai_settings"}, Filters: []supabase.Filter{supabase.Eq("id", tid)}, Limit: 1}
		if err := h.db.Select(ctx, id, "prompt_templates", sq, &stages); err != nil {
			return err
		}
		if len(stages) == 1 {
			st := &stages[0]
			var ai struct {
				ModelID string `json:"model_id"`
			}
			_ = json.Unmarshal(st.AISettings, &ai) // settings without a model id show none
			st.ModelID, st.AISettings = ai.ModelID, nil
			out.Stage = st
		}
	}
	return c.JSON(http.StatusOK, out)
}

// approvalQueue answers one page of the caller's tasks waiting for
// approval across batches, oldest first, each with its batch's name.
func (h *apiHandler) approvalQueue(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	q := supabase.Query{
		Columns: taskListColumns,
		Filters: []supabase.Filter{supabase.Eq("user_id", user), supabase.Eq("status", "generated")},
		Order:   []supabase.Order{supabase.Asc("created_at"), supabase.Asc("id")},
	}
	p, err := h.selectPage(ctx, id, "ai_tasks", q, limit, offset)
	if err != nil {
		return err
	}
	batches := map[string]bool{}
	for _, r := range p.Items {
		if b, ok := r["batch_id"].(string); ok {
			batches[b] = true
		}
	}
	if len(batches) > 0 {
		ids := make([]string, 0, len(batches))
		for b := range batches {
			ids = append(ids, b)
		}
		var rows []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		bq := supabase.Query{Columns: []string{"id", "name"}, Filters: []supabase.Filter{supabase.Eq("created_by", user), supabase.In("id", ids...)}}
		if err := h.db.Select(ctx, id, "task_batches", bq, &rows); err != nil {
			return err
		}
		names := map[string]string{}
		for _, r := range rows {
			names[r.ID] = r.Name
		}
		for _, r := range p.Items {
			if b, ok := r["batch_id"].(string); ok {
				r["batch_name"] = names[b]
			}
		}
	}
	return c.JSON(http.StatusOK, p)
}

// keyHealth is one row of GET /api/v1/keys: a key's name and health, never
// its material.
type keyHealth struct {
	ID                  string     `json:"id"`
	KeyName             string     `json:"key_name"`
	Provider            string     `json:"provider"`
	ModelPreference     string     `json:"model_preference"`
	Priority            int        `json:"priority"`
	Project             *string    `json:"project"`
	IsActive            bool       `json:"is_active"`
	DeactivatedReason   *string    `json:"deactivated_reason"`
	CreatedAt           *time.Time `json:"created_at"`
	BlockedUntil        *time.Time `json:"blocked_until"`
	BlockReason         *string    `json:"block_reason"`
	LastUsedAt          *time.Time `json:"last_used_at"`
	LastSuccessAt       *time.Time `json:"last_success_at"`
	LastFailureAt       *time.Time `json:"last_failure_at"`
	LastErrorCode       *string    `json:"last_error_code"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	TotalRequests       int        `json:"total_requests"`
	FailedRequests      int        `json:"failed_requests"`
}

// listKeys answers the caller's API keys with their health.
func (h *apiHandler) listKeys(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var keys []keyHealth
	kq := supabase.Query{
		Columns: []string{"id", "key_name", "provider", "model_preference", "priority", "project", "is_active", "deactivated_reason", "created_at"},
		Filters: []supabase.Filter{supabase.Eq("user_id", user)},
		Order:   []supabase.Order{supabase.Asc("priority"), supabase.Asc("key_name")},
		Limit:   MaxPageSize,
	}
	if err := h.db.Select(ctx, id, "user_api_keys", kq, &keys); err != nil {
		return err
	}
	var health []struct {
		keyHealth

		KeyID string `json:"user_api_key_id"`
	}
	hq := supabase.Query{
		Columns: []string{"user_api_key_id", "blocked_until", "block_reason", "last_used_at", "last_success_at", "last_failure_at", "last_error_code", "consecutive_failures", "total_requests", "failed_requests"},
		Filters: []supabase.Filter{supabase.Eq("user_id", user)},
		Limit:   MaxPageSize,
	}
	if err := h.db.Select(ctx, id, "api_key_health", hq, &health); err != nil {
		return err
	}
	byKey := make(map[string]int, len(keys))
	for i := range keys {
		byKey[keys[i].ID] = i
	}
	for _, hr := range health {
		i, ok := byKey[hr.KeyID]
		if !ok {
			continue
		}
		k := &keys[i]
		k.BlockedUntil, k.BlockReason, k.LastUsedAt = hr.BlockedUntil, hr.BlockReason, hr.LastUsedAt
		k.LastSuccessAt, k.LastFailureAt, k.LastErrorCode = hr.LastSuccessAt, hr.LastFailureAt, hr.LastErrorCode
		k.ConsecutiveFailures, k.TotalRequests, k.FailedRequests = hr.ConsecutiveFailures, hr.TotalRequests, hr.FailedRequests
	}
	if keys == nil {
		keys = []keyHealth{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": keys})
}

// pipelineStage is one stage of a pipeline as the console draws it.
type pipelineStage struct {
	ID               string   `json:"id"`
	StageKey         string   `json:"stage_key"`
	Label            string   `json:"label"`
	Cardinality      string   `json:"cardinality"`
	DependsOn        []string `json:"depends_on"`
	RequiresApproval bool     `json:"requires_approval"`
	TemplateID       string   `json:"template_id"`
}

// pipelineInfo is an imported pipeline (a lab_orchestrator_configs row).
type pipelineInfo struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Description    *string         `json:"description"`
	UpdatedAt      *time.Time      `json:"updated_at"`
	RootTemplateID string          `json:"root_template_id"`
	Stages         []pipelineStage `json:"stages"`
}

// configRow is what is read of a lab_orchestrator_configs row.
type configRow struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	UpdatedAt   *time.Time      `json:"updated_at"`
	Steps       json.RawMessage `json:"steps"`
}

var configColumns = []string{"id", "name", "description", "updated_at", "steps"} //nolint:gochecknoglobals // read-only

// info turns the config's steps (as the bundle or the Designer wrote them)
// into stages; depends_on names stage keys.
func (r *configRow) info() pipelineInfo {
	var steps []struct {
		ID               string   `json:"id"`
		Label            string   `json:"label"`
		Name             string   `json:"name"`
		StageKey         string   `json:"stage_key"`
		Cardinality      string   `json:"cardinality"`
		DependsOn        []string `json:"dependsOn"` //nolint:tagliatelle // the Designer's key
		RequiresApproval bool     `json:"requires_approval"`
		TemplateID       string   `json:"prompt_template_id"`
	}
	_ = json.Unmarshal(r.Steps, &steps) // a malformed config shows no stages
	keyOf := map[string]string{}
	for _, s := range steps {
		keyOf[s.ID] = s.StageKey
	}
	p := pipelineInfo{ID: r.ID, Name: r.Name, Description: r.Description, UpdatedAt: r.UpdatedAt, Stages: []pipelineStage{}}
	for _, s := range steps {
		st := pipelineStage{
			ID: s.ID, StageKey: s.StageKey, Label: cmpOr(s.Label, s.Name, s.StageKey), Cardinality: strings.ToUpper(cmpOr(s.Cardinality, "1:1")),
			DependsOn: []string{}, RequiresApproval: s.RequiresApproval, TemplateID: s.TemplateID,
		}
		for _, d := range s.DependsOn {
			st.DependsOn = append(st.DependsOn, cmpOr(keyOf[d], d))
		}
		if len(s.DependsOn) == 0 && p.RootTemplateID == "" {
			p.RootTemplateID = s.TemplateID
		}
		p.Stages = append(p.Stages, st)
	}
	return p
}

func cmpOr(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// listPipelines answers the caller's imported pipelines, newest first.
func (h *apiHandler) listPipelines(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	var rows []configRow
	q := supabase.Query{
		Columns: configColumns, Filters: []supabase.Filter{supabase.Eq("created_by", user)},
		Order: []supabase.Order{supabase.Desc("updated_at")}, Limit: MaxPageSize,
	}
	if err := h.db.Select(c.Request().Context(), id, "lab_orchestrator_configs", q, &rows); err != nil {
		return err
	}
	out := make([]pipelineInfo, 0, len(rows))
	for i := range rows {
		out = append(out, rows[i].info())
	}
	return c.JSON(http.StatusOK, map[string]any{"items": out})
}

// batchPipeline answers the pipeline a batch runs: its config, or when the
// batch was launched without one, the config of its first task's template.
func (h *apiHandler) batchPipeline(c echo.Context) error {
	id, user, err := caller(c)
	if err != nil {
		return err
	}
	batchID, err := pathID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var batch struct {
		ConfigID *string `json:"orchestrator_config_id"`
	}
	bq := supabase.Query{Columns: []string{"orchestrator_config_id"}, Filters: []supabase.Filter{supabase.Eq("id", batchID), supabase.Eq("created_by", user)}, Single: true}
	if err := h.db.Select(ctx, id, "task_batches", bq, &batch); err != nil {
		return err
	}
	configID := ""
	if batch.ConfigID != nil {
		configID = *batch.ConfigID
	} else {
		var tasks []struct {
			TemplateID *string `json:"prompt_template_id"`
		}
		tq := supabase.Query{Columns: []string{"prompt_template_id"}, Filters: []supabase.Filter{supabase.Eq("batch_id", batchID), supabase.Eq("user_id", user)}, Order: []supabase.Order{supabase.Asc("step_number")}, Limit: 1}
		if err := h.db.Select(ctx, id, "ai_tasks", tq, &tasks); err != nil {
			return err
		}
		if len(tasks) == 1 && tasks[0].TemplateID != nil {
			var tpl []struct {
				Org *string `json:"organization_code"`
			}
			pq := supabase.Query{Columns: []string{"organization_code"}, Filters: []supabase.Filter{supabase.Eq("id", *tasks[0].TemplateID)}, Limit: 1}
			if err := h.db.Select(ctx, id, "prompt_templates", pq, &tpl); err != nil {
				return err
			}
			if len(tpl) == 1 && tpl[0].Org != nil {
				configID = *tpl[0].Org
			}
		}
	}
	if _, err := uuid.Parse(configID); err != nil {
		return apierror.New(http.StatusNotFound, CodeNotFound, "the batch's pipeline is not known", nil)
	}
	var rows []configRow
	cq := supabase.Query{Columns: configColumns, Filters: []supabase.Filter{supabase.Eq("id", configID)}, Limit: 1}
	if err := h.db.Select(ctx, id, "lab_orchestrator_configs", cq, &rows); err != nil {
		return err
	}
	if len(rows) == 0 {
		return apierror.New(http.StatusNotFound, CodeNotFound, "the batch's pipeline is not visible", nil)
	}
	return c.JSON(http.StatusOK, rows[0].info())
}
