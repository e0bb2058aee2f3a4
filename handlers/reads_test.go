package handlers_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
)

// TestProgressMaxAge: with max_age, the caller's repeated reads of a batch
// share one get_batch_progress call; another user's read is their own call;
// without max_age every read is a call; a failed call is not kept.
func TestProgressMaxAge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.db.answer("get_batch_progress", `{"total": 3}`)
	alice, bob, batch := uuid.New(), uuid.New(), uuid.New()
	count := func() int {
		n := 0
		for _, c := range b.db.Calls() {
			if c.Function == "get_batch_progress" {
				n++
			}
		}
		return n
	}

	for range 3 {
		r := b.api(t, http.MethodGet, "/api/v1/batches/"+batch.String()+"?max_age=5", alice, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.JSONEq(t, `{"total": 3}`, string(r.Body))
	}
	require.Equal(t, 1, count())
	r := b.api(t, http.MethodGet, "/api/v1/batches/"+batch.String()+"?max_age=5", bob, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, 2, count())
	calls := b.db.Calls()
	requireIdentity(t, calls[len(calls)-1].Identity, bob)

	b.api(t, http.MethodGet, "/api/v1/batches/"+batch.String(), alice, "")
	b.api(t, http.MethodGet, "/api/v1/batches/"+batch.String(), alice, "")
	require.Equal(t, 4, count())

	other := uuid.New()
	b.db.fail("get_batch_progress", errors.New("boom"))
	b.api(t, http.MethodGet, "/api/v1/batches/"+other.String()+"?max_age=5", alice, "").requireError(t, http.StatusInternalServerError, handlers.CodeInternal)
	b.db.fail("get_batch_progress", nil)
	r = b.api(t, http.MethodGet, "/api/v1/batches/"+other.String()+"?max_age=5", alice, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, 6, count())

	for _, bad := range []string{"0", "11", "x", "-1"} {
		b.api(t, http.MethodGet, "/api/v1/batches/"+batch.String()+"?max_age="+bad, alice, "").requireError(t, http.StatusBadRequest, handlers.CodeValidation)
	}
}

// TestReadValidation: pages are bounded and filters checked before any read.
func TestReadValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user, batch := uuid.New(), uuid.New()
	for _, path := range []string{
		"/api/v1/batches?limit=0", "/api/v1/batches?limit=201", "/api/v1/batches?offset=-1", "/api/v1/approvals?limit=x",
		"/api/v1/batches/" + batch.String() + "/tasks?parent=nope",
		"/api/v1/batches/" + batch.String() + "/tasks?status=bogus",
	} {
		b.api(t, http.MethodGet, path, user, "").requireError(t, http.StatusBadRequest, handlers.CodeValidation)
	}
	b.api(t, http.MethodGet, "/api/v1/tasks/not-a-uuid", user, "").requireError(t, http.StatusBadRequest, handlers.CodeInvalidID)
	require.Equal(t, http.StatusUnauthorized, b.do(t, http.MethodGet, "/api/v1/keys", nil, nil).Status)
	require.Empty(t, b.db.Calls())
}

// TestImportPipeline: a bundle posted as JSON is parsed and imported as the
// caller; problems are listed (422) and prompt names cannot leave prompts/.
func TestImportPipeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.New()
	b.db.answer("import_pipeline", `{"config_id": "`+uuid.NewString()+`", "template_ids": ["a"], "root_template_id": "a", "deactivated": 0}`)
	orch := `{"_version": "1.0.0", "orchestratorName": "One", "steps": [{"id": "step_A", "name": "A", "label": "Draft", "stage_key": "draft", "cardinality": "1:1", "dependsOn": []}]}`

	r := b.api(t, http.MethodPost, "/api/v1/pipelines", user, `{"orchestration": `+orch+`, "prompts": {"draft.md": "Write about %%input_data%%"}}`)
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	calls := b.db.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, "import_pipeline", calls[0].Function)
	requireIdentity(t, calls[0].Identity, user)
	var args struct {
		Templates []struct {
			Template string `json:"template"`
		} `json:"p_templates"`
	}
	require.NoError(t, json.Unmarshal(calls[0].Args, &args))
	require.Len(t, args.Templates, 1)
	require.Contains(t, args.Templates[0].Template, "Write about")

	r = b.api(t, http.MethodPost, "/api/v1/pipelines", user, `{"orchestration": `+orch+`, "prompts": {}}`)
	r.requireError(t, http.StatusUnprocessableEntity, handlers.CodeUnprocessable)
	require.Contains(t, strings.ToLower(string(r.Body)), "prompt")
	for _, name := range []string{"../draft.md", "prompts/draft.md", ".hidden.md", "draft.txt"} {
		b.api(t, http.MethodPost, "/api/v1/pipelines", user, `{"orchestration": `+orch+`, "prompts": {"`+name+`": "x"}}`).
			requireError(t, http.StatusBadRequest, handlers.CodeValidation)
	}
	b.api(t, http.MethodPost, "/api/v1/pipelines", user, `{"orchestration": [1]}`).requireError(t, http.StatusBadRequest, handlers.CodeValidation)
	require.Len(t, b.db.Calls(), 1)
}
