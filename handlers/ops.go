package handlers

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
)

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

type opsHandler struct {
	ready        func(ctx context.Context) error
	metrics      http.Handler
	metricsToken string
}

type statusResponse struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process runs (liveness).
func (h *opsHandler) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, statusResponse{Status: "ok"})
}

// readyz answers 200 when the database and the configuration are usable,
// otherwise 503 not_ready with a generic message. The endpoint is public, and
// the reason (a driver error names the database host, user and name) is only
// logged, at warn level, by the error handler.
func (h *opsHandler) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return apierror.New(http.StatusServiceUnavailable, CodeNotReady, "not ready", err)
	}
	return c.JSON(http.StatusOK, statusResponse{Status: "ready"})
}

// metricsHandler serves the Prometheus text format; with a metrics token
// only to a caller presenting it as a bearer token (constant-time compare).
func (h *opsHandler) metricsHandler(c echo.Context) error {
	if h.metricsToken != "" {
		auth := c.Request().Header.Get(echo.HeaderAuthorization)
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(h.metricsToken)) != 1 {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="metrics"`)
			return apierror.New(http.StatusUnauthorized, CodeUnauthorized, "metrics need the operator's bearer token", nil)
		}
	}
	h.metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}
