package handlers

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase"
)

// DefaultMaxBodyBytes caps user API request bodies when Deps.MaxBodyBytes is
// zero: 8 MiB, room for a 10,000-row launch of small rows.
const DefaultMaxBodyBytes = 8 << 20

// MaxLaunchRows is the most input rows one launch may carry.
const MaxLaunchRows = 10_000

// Waker starts work at once instead of waiting for the next sweep. The
// dispatcher (Notify) and the sweeper (Kick) satisfy it through a small
// adapter in main. Both methods must return immediately.
type Waker interface {
	// Notify says that userID may have due work. It returns false when the
	// hint was dropped (dispatcher full or stopping).
	Notify(userID uuid.UUID) bool
	// Kick asks for a sweep across all users now (coalesced).
	Kick()
}

// Deps are what the handlers need, built in main.
type Deps struct {
	// DB is the data path; every user call goes through it as the caller.
	DB supabase.DB
	// UserAuth verifies the caller's Supabase JWT: (*rls.Verifier).Middleware().
	UserAuth echo.MiddlewareFunc
	// WebhookAuth authenticates Supabase webhooks and caps their body:
	// (*rls.WebhookVerifier).Middleware().
	WebhookAuth echo.MiddlewareFunc
	// Wake is told about new work (webhooks, launches, retries, approvals).
	Wake Waker
	// Ready checks the database and the configuration for GET /readyz; a
	// non-nil error makes it answer 503 "not ready". The error's text is
	// logged (warn), never returned, so it may name hosts and databases but
	// must not contain secrets.
	Ready func(ctx context.Context) error
	// Metrics is served at GET /metrics. Nil means NewMetrics().
	Metrics *Metrics
	// MetricsToken, when not empty, is the bearer token GET /metrics
	// requires (METRICS_TOKEN); without it /metrics answers 401.
	MetricsToken string
	// Logger receives request logs and 5xx errors. Nil discards them.
	Logger *slog.Logger
	// AllowAnonymousLaunch lets anonymous sign-ins (is_anonymous true in
	// the token) launch, resume, retry, approve and reject. Default false:
	// those calls answer 403 anonymous_not_allowed; reads, pause and cancel
	// stay open to them.
	AllowAnonymousLaunch bool
	// Estimate configures POST /api/v1/batches/estimate (prices, default
	// model). Nil uses the defaults.
	Estimate *pipeline.EstimateConfig
	// MaxBodyBytes caps user API request bodies (413 beyond). Default
	// DefaultMaxBodyBytes. Webhook bodies are capped by WebhookAuth.
	MaxBodyBytes int64
}

// Register installs the error handler and the common middleware (request id,
// request log, panic recovery) on e, and lists every route. It panics if a
// required dependency is missing (a programmer error in main).
func Register(e *echo.Echo, d *Deps) {
	switch {
	case d == nil:
		panic("handlers: Register needs Deps")
	case d.DB == nil:
		panic("handlers: Deps.DB is nil")
	case d.UserAuth == nil:
		panic("handlers: Deps.UserAuth is nil")
	case d.WebhookAuth == nil:
		panic("handlers: Deps.WebhookAuth is nil")
	case d.Wake == nil:
		panic("handlers: Deps.Wake is nil")
	case d.Ready == nil:
		panic("handlers: Deps.Ready is nil")
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics := d.Metrics
	if metrics == nil {
		metrics = NewMetrics()
	}
	maxBody := d.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}

	e.HTTPErrorHandler = HTTPErrorHandler(logger)
	e.Use(middleware.RequestID(), requestLogger(logger), middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true, // the panicking goroutine only
		// Hand the panic and its stack to HTTPErrorHandler, which logs it once as a 500.
		LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
			return fmt.Errorf("panic: %w\n%s", err, stack)
		},
	}))

	ops := &opsHandler{ready: d.Ready, metrics: metrics.Handler(), metricsToken: d.MetricsToken}
	e.GET("/healthz", ops.healthz)
	e.GET("/readyz", ops.readyz)
	e.GET("/metrics", ops.metricsHandler)

	wh := &webhookHandler{wake: d.Wake, metrics: metrics}
	e.POST("/webhooks/supabase", wh.handle, wh.observe, d.WebhookAuth)

	api := &apiHandler{db: d.DB, wake: d.Wake, progress: newProgressCache()}
	auth := []echo.MiddlewareFunc{d.UserAuth, middleware.BodyLimit(strconv.FormatInt(maxBody, 10) + "B")}
	// Routes that start model work: anonymous sign-ins only when allowed.
	starts := append(slices.Clone(auth), denyAnonymous(d.AllowAnonymousLaunch))
	e.POST("/api/v1/batches", api.launchBatch, starts...)
	est := &estimateHandler{db: d.DB, cfg: cmp.Or(d.Estimate, &pipeline.EstimateConfig{})}
	e.POST("/api/v1/batches/estimate", est.estimateLaunch, auth...)
	e.GET("/api/v1/batches/:id", api.batchProgress, auth...)
	e.POST("/api/v1/batches/:id/pause", api.pauseBatch, auth...)
	e.POST("/api/v1/batches/:id/resume", api.resumeBatch, starts...)
	e.POST("/api/v1/batches/:id/cancel", api.cancelBatch, auth...)
	e.POST("/api/v1/batches/:id/retry-failed", api.retryFailedInBatch, starts...)
	e.POST("/api/v1/tasks/:id/approve", api.approveTask, starts...)
	e.POST("/api/v1/tasks/:id/reject", api.rejectTask, starts...)
	e.POST("/api/v1/tasks/:id/retry", api.retryTask, starts...)
	// Reads (bounded pages, the caller's own rows) and imports, for the console.
	e.GET("/api/v1/batches", api.listBatches, auth...)
	e.GET("/api/v1/batches/:id/tasks", api.batchTasks, auth...)
	e.GET("/api/v1/batches/:id/pipeline", api.batchPipeline, auth...)
	e.GET("/api/v1/tasks/:id", api.getTask, auth...)
	e.GET("/api/v1/approvals", api.approvalQueue, auth...)
	e.GET("/api/v1/pipelines", api.listPipelines, auth...)
	e.POST("/api/v1/pipelines", api.importPipeline, auth...)
	e.GET("/api/v1/keys", api.listKeys, auth...)
}

// requestLogger logs one line per request: method, route, path, status,
// latency and request id. A request whose failure HTTPErrorHandler logged
// (every 5xx returned as an error) is not logged again here: that line,
// with the error, is the request's one line. It never logs headers, bodies
// or query strings (a token could be in any of them).
func requestLogger(logger *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		HandleError:  true,
		LogMethod:    true,
		LogURIPath:   true,
		LogRoutePath: true,
		LogStatus:    true,
		LogLatency:   true,
		LogRequestID: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			if logged, _ := c.Get(errorLoggedKey).(bool); logged {
				return nil
			}
			level := slog.LevelInfo
			switch {
			case v.Status >= http.StatusInternalServerError:
				level = slog.LevelError
			case v.Status >= http.StatusBadRequest:
				level = slog.LevelWarn
			case v.RoutePath == "/healthz" || v.RoutePath == "/readyz" || v.RoutePath == "/metrics":
				level = slog.LevelDebug
			}
			logger.LogAttrs(c.Request().Context(), level, "handlers: request",
				slog.String("method", v.Method),
				slog.String("route", v.RoutePath),
				slog.String("path", v.URIPath),
				slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency),
				slog.String("request_id", v.RequestID))
			return nil
		},
	})
}
