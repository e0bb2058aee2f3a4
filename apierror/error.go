// Package apierror is the one error type of the HTTP API (STYLE rule 23):
// the status, a stable snake_case code and a message safe to show to the
// caller, plus headers the response must carry and the wrapped cause (for
// the log, never for the caller). Middleware (rls) and handlers return it;
// handlers.HTTPErrorHandler renders it as {"code","message"}. The codes are
// declared by the packages that use them (handlers.Code…, rls.Code…).
//
// Data-path failures are not of this type: supabase.Error is PostgREST's own
// error ({code, message, details, hint}, with SQLSTATE or PGRST codes and
// messages that may carry database details), which the error handler maps
// to an API error of this shape.
package apierror

import (
	"fmt"
	"net/http"
	"strings"
)

// Error is an HTTP API error. It describes the response completely, so
// middleware and handlers return it instead of writing a body.
type Error struct {
	// Status is the HTTP status.
	Status int `json:"-"`
	// Code is a stable snake_case code (a Code constant of the package that
	// returns it).
	Code string `json:"code"`
	// Message is a short reason that is safe to show to the caller.
	Message string `json:"message"`
	// Header holds response headers the error handler must set, e.g.
	// WWW-Authenticate on a 401. May be nil.
	Header http.Header `json:"-"`

	err error
}

// New returns an *Error; cause (may be nil) is kept for errors.Is/As and
// the log, never shown to the caller.
func New(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, err: cause}
}

// Error implements error, for logs: the code, the status, the message and
// the cause (when the cause's text begins with the message, as rls's
// reasons do, the message is not repeated).
func (e *Error) Error() string {
	head := fmt.Sprintf("%s (%d)", e.Code, e.Status)
	if e.err == nil {
		return head + ": " + e.Message
	}
	cause := e.err.Error()
	if strings.HasPrefix(cause, e.Message) {
		return head + ": " + cause
	}
	return head + ": " + e.Message + ": " + cause
}

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.err }

// StatusCode returns the HTTP status, so Echo's error handling and
// errors.As pick it up.
func (e *Error) StatusCode() int { return e.Status }
