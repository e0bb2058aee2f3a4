package model

import (
	"errors"
	"fmt"
	"time"
)

// Kind says what went wrong in a model call.
type Kind string

// Kinds of model errors. The string values are stable and may be stored (for
// example as api_key_usage_log.error_code).
const (
	KindRateLimited        Kind = "rate_limited"        // 429, per-minute quota of a project/model
	KindQuotaExhausted     Kind = "quota_exhausted"     // 429, per-day quota of a project/model
	KindInvalidKey         Kind = "invalid_key"         // 400 API_KEY_INVALID or 401
	KindPermissionDenied   Kind = "permission_denied"   // 403
	KindFailedPrecondition Kind = "failed_precondition" // 400 FAILED_PRECONDITION (billing, region)
	KindModelNotFound      Kind = "model_not_found"     // 404, typically a retired model id
	KindBadRequest         Kind = "bad_request"         // other 4xx
	KindServer             Kind = "server_error"        // 500, 503, 504 and other 5xx
	KindTimeout            Kind = "timeout"             // the per-call timeout expired
	KindConnection         Kind = "connection"          // the server could not be reached
	KindBlocked            Kind = "blocked"             // SAFETY, RECITATION, OTHER, blocked prompt
	KindMaxTokens          Kind = "max_tokens"          // finishReason MAX_TOKENS
	KindEmpty              Kind = "empty_response"      // no candidate text
	KindInvalidOutput      Kind = "invalid_output"      // not JSON, or does not match output_schema
	KindNoKey              Kind = "no_key"              // the owner has no usable key at all
)

// Retry says what the caller should do with a failed task.
type Retry int

const (
	// RetryNever fails the task now.
	RetryNever Retry = iota
	// RetryLater reschedules the task (after RetryAfter when it is set).
	RetryLater
	// RetryRegenerate asks the model again at once; the caller bounds the
	// number of regenerations.
	RetryRegenerate
)

// String returns never, later or regenerate.
func (r Retry) String() string {
	switch r {
	case RetryLater:
		return "later"
	case RetryRegenerate:
		return "regenerate"
	default:
		return "never"
	}
}

// Scope says whose fault an error is, which decides what the key pool does.
type Scope int

const (
	// ScopeNone: not the key's fault (server errors, timeouts, content).
	ScopeNone Scope = iota
	// ScopeProject: the Google project's quota for this model (429). Other
	// keys of the same project are blocked too.
	ScopeProject
	// ScopeKey: the key itself is invalid, forbidden or unusable.
	ScopeKey
)

// Error is a classified model failure. Its Message is safe to store in
// ai_tasks.error_message: it never contains an API key.
type Error struct {
	Kind  Kind
	Retry Retry
	Scope Scope
	// RetryAfter is the server's RetryInfo.retryDelay, or zero.
	RetryAfter time.Duration
	// Until is when a per-day quota resets (midnight Pacific), or zero.
	Until time.Time
	// StatusCode is the HTTP status, or zero when there was no response.
	StatusCode int
	// Message is a human-readable, key-free description.
	Message string
	err     error
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.err }

// KeyFault reports whether the key or its project caused the failure.
func (e *Error) KeyFault() bool { return e.Scope != ScopeNone }

// ErrNoKeyAvailable is matched (errors.Is) by every *NoKeyError.
var ErrNoKeyAvailable = errors.New("no API key available")

// NoKeyError says that no key can be used right now. Until is the earliest
// time one will be free; reschedule the task for then.
type NoKeyError struct {
	Until time.Time
	// Model is the model id that was asked for.
	Model string
	// Reason is the key-free message of the failure that used up the last free
	// key during this call, if any.
	Reason string
}

// Error describes when a key will be free.
func (e *NoKeyError) Error() string {
	msg := fmt.Sprintf("no API key available for model %s until %s", e.Model, e.Until.UTC().Format(time.RFC3339))
	if e.Reason != "" {
		msg += " (last error: " + e.Reason + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNoKeyAvailable) true.
func (e *NoKeyError) Is(target error) bool { return target == ErrNoKeyAvailable }

// newError builds an *Error.
func newError(kind Kind, retry Retry, scope Scope, status int, msg string, err error) *Error {
	return &Error{Kind: kind, Retry: retry, Scope: scope, StatusCode: status, Message: msg, err: err}
}
