package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"path"
	"strings"
	"testing/fstest"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/pipeline"
)

// importRequest is the body of POST /api/v1/pipelines: a bundle as JSON,
// its orchestration.json and its prompts by file name.
type importRequest struct {
	Orchestration json.RawMessage   `json:"orchestration"`
	Prompts       map[string]string `json:"prompts"`
}

// maxPrompts bounds the prompt files of one bundle.
const maxPrompts = 200

// importPipeline imports a bundle as the caller's pipeline
// (import_pipeline, as the caller): 201 with the config and template ids,
// 422 listing the bundle's problems.
func (h *apiHandler) importPipeline(c echo.Context) error {
	id, _, err := caller(c)
	if err != nil {
		return err
	}
	var req importRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	if !isObject(req.Orchestration) {
		return badRequest(CodeValidation, "orchestration must be the bundle's orchestration.json object", nil)
	}
	if len(req.Prompts) > maxPrompts {
		return badRequest(CodeValidation, "too many prompt files", nil)
	}
	fsys := fstest.MapFS{pipeline.BundleFile: {Data: req.Orchestration}}
	for name, text := range req.Prompts {
		if name != path.Base(name) || !strings.HasSuffix(name, ".md") || strings.HasPrefix(name, ".") {
			return badRequest(CodeValidation, "prompt file names must be plain *.md names", nil)
		}
		fsys["prompts/"+name] = &fstest.MapFile{Data: []byte(text)}
	}
	bundle, err := pipeline.ParseBundle(fsys, "bundle")
	if err != nil {
		if be, ok := errors.AsType[*pipeline.BundleError](err); ok {
			return apierror.New(http.StatusUnprocessableEntity, CodeUnprocessable, strings.Join(be.Problems, "; "), err)
		}
		return badRequest(CodeValidation, "the bundle could not be read", err)
	}
	res, err := pipeline.Import(c.Request().Context(), h.db, id, bundle)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, res)
}
