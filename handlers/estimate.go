package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// estimateHandler answers cost estimates before launch.
type estimateHandler struct {
	db  supabase.DB
	cfg *pipeline.EstimateConfig
}

// estimateLaunch answers POST /api/v1/batches/estimate: the body of a launch
// (POST /api/v1/batches), nothing written; 200 with the estimated tokens and
// cost per stage and in total (pipeline.CostEstimate).
func (h *estimateHandler) estimateLaunch(c echo.Context) error {
	id, _, err := caller(c)
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
	est, err := pipeline.EstimateLaunch(c.Request().Context(), h.db, id, h.cfg, req.TemplateID, req.Rows, req.GlobalContext)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, est)
}
