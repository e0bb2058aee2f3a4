package handlers

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/supabase"
)

// Stable error codes of the HTTP API (the "code" of an error body). rls adds
// its own (missing_token, invalid_token, invalid_webhook, webhook_replayed,
// payload_too_large).
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidID        = "invalid_id"
	CodeMalformedJSON    = "malformed_json"
	CodeValidation       = "validation_failed"
	CodeWrongTable       = "wrong_table"
	CodeUnknownType      = "unknown_type"
	CodeMissingID        = "missing_id"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodePayloadTooLarge  = "payload_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeUnprocessable    = "unprocessable"
	CodeTooManyRequests  = "too_many_requests"
	CodeRequestFailed    = "request_failed"
	CodeNotReady         = "not_ready"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal_error"
)

func badRequest(code, message string, cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, code, message, cause)
}

// body is what every error response carries.
type body struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// HTTPErrorHandler returns the one Echo error handler of the service. It
// renders every error as {"code","message"}:
//
//   - *apierror.Error (returned by handlers and by the rls middleware): its
//     status, code and message, and its headers (WWW-Authenticate);
//   - *supabase.Error: 4xx keep PostgREST's status with a stable code and
//     PostgREST's message (the caller's own request, so the caller may see
//     it); unavailable/timeout/serialization give 503 "unavailable"; an
//     undefined function or any other failure is our fault and gives 500;
//   - *echo.HTTPError (unknown route, 405, 413 from the body limit, a 503
//     "switched off" answer): its status and message (5xx other than 503
//     get the generic message);
//   - anything else: 500.
//
// Responses with a 5xx status carry a generic message plus "request_id", and
// the internal error is logged here, once: at error level, or warn for
// not_ready, which readiness probes repeat while a dependency is down. That
// line (method, route, status, request_id, error) is the request's only log
// line: the request logger skips a request this handler logged. Tokens never
// reach the log: the errors of rls never contain them.
func HTTPErrorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, b, header := render(err)
		if status >= http.StatusInternalServerError {
			b.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
			level := slog.LevelError
			if ae, ok := errors.AsType[*apierror.Error](err); ok && ae.Code == CodeNotReady {
				// Failed readiness probes repeat while a dependency is down.
				level = slog.LevelWarn
			}
			c.Set(errorLoggedKey, true)
			logger.Log(c.Request().Context(), level, "handlers: request failed",
				slog.String("method", c.Request().Method),
				slog.String("path", c.Path()),
				slog.Int("status", status),
				slog.String("request_id", b.RequestID),
				slog.String("error", err.Error()))
		}
		for name, values := range header {
			for _, v := range values {
				c.Response().Header().Add(name, v)
			}
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(status)
		} else {
			werr = c.JSON(status, b)
		}
		if werr != nil {
			logger.WarnContext(c.Request().Context(), "handlers: writing error response failed", slog.String("error", werr.Error()))
		}
	}
}

// errorLoggedKey marks (in the echo.Context) a request whose failure
// HTTPErrorHandler has logged, so requestLogger does not log it again.
const errorLoggedKey = "orchable.error_logged"

const genericMessage = "internal error; quote the request_id when reporting it"

// render maps err to a status, a body and extra headers.
func render(err error) (int, body, http.Header) {
	if ae, ok := errors.AsType[*apierror.Error](err); ok {
		return ae.Status, body{Code: ae.Code, Message: ae.Message}, ae.Header
	}
	if se, ok := errors.AsType[*supabase.Error](err); ok {
		return renderSupabase(se)
	}
	if ee, ok := errors.AsType[*echo.HTTPError](err); ok {
		if ee.Code == http.StatusServiceUnavailable {
			// Our own "this part is switched off" answers (see main); the message is safe.
			msg, _ := ee.Message.(string)
			return ee.Code, body{Code: CodeUnavailable, Message: cmp.Or(msg, http.StatusText(ee.Code))}, nil
		}
		if ee.Code >= http.StatusInternalServerError {
			return ee.Code, body{Code: CodeInternal, Message: genericMessage}, nil
		}
		msg := http.StatusText(ee.Code)
		if s, isString := ee.Message.(string); isString && s != "" {
			msg = s
		}
		return ee.Code, body{Code: codeForStatus(ee.Code), Message: msg}, nil
	}
	return http.StatusInternalServerError, body{Code: CodeInternal, Message: genericMessage}, nil
}

func renderSupabase(se *supabase.Error) (int, body, http.Header) {
	switch {
	case errors.Is(se, supabase.ErrUnavailable), errors.Is(se, supabase.ErrTimeout), errors.Is(se, supabase.ErrSerialization):
		return http.StatusServiceUnavailable, body{Code: CodeUnavailable, Message: "the database is unavailable; try again"},
			http.Header{"Retry-After": []string{"1"}}
	case errors.Is(se, supabase.ErrUndefined):
		// A missing function or column is a deployment fault, not the caller's.
		return http.StatusInternalServerError, body{Code: CodeInternal, Message: genericMessage}, nil
	}
	status := se.StatusCode()
	if status < http.StatusBadRequest || status >= http.StatusInternalServerError {
		return http.StatusInternalServerError, body{Code: CodeInternal, Message: genericMessage}, nil
	}
	if status == http.StatusNotAcceptable { // PGRST116: a singular read found no row
		status = http.StatusNotFound
	}
	msg := se.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	return status, body{Code: codeForStatus(status), Message: msg}, nil
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodePayloadTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMedia
	case http.StatusUnprocessableEntity:
		return CodeUnprocessable
	case http.StatusTooManyRequests:
		return CodeTooManyRequests
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	default:
		return CodeRequestFailed
	}
}
