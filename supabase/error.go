package supabase

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Sentinels that *Error matches with errors.Is. An error may match several
// (a 0-row singular read is both ErrNotFound and ErrNotSingular).
var (
	// ErrNotFound: no row where exactly one was expected (PGRST116 with 0
	// rows), or a 404 without a more precise code.
	ErrNotFound = errors.New("supabase: not found")
	// ErrNotSingular: a singular request did not yield exactly one row
	// (PGRST116, 406); the transaction was rolled back.
	ErrNotSingular = errors.New("supabase: not exactly one row")
	// ErrUndefined: the function, table or column does not exist (42883,
	// 42P01, 42703, PGRST202, PGRST204, PGRST205).
	ErrUndefined = errors.New("supabase: undefined function, table or column")
	// ErrConflict: unique or foreign key violation (23505, 23503; 409).
	ErrConflict = errors.New("supabase: conflict")
	// ErrForbidden: insufficient privilege or an RLS check failed (42501 as
	// 403, or as 401 for anon; 0L*, 0P*, 28*; any 403).
	ErrForbidden = errors.New("supabase: forbidden")
	// ErrJWT: the token was rejected (PGRST300-303, 401 without code).
	ErrJWT = errors.New("supabase: invalid token")
	// ErrBadRequest: the request or its data was invalid (any 400: RAISE
	// P0001, 22*, 23502, 23514, PGRST1xx/2xx …).
	ErrBadRequest = errors.New("supabase: bad request")
	// ErrSerialization: serialization failure or deadlock (40001, 40P01);
	// the transaction was rolled back and may be retried.
	ErrSerialization = errors.New("supabase: serialization failure")
	// ErrTimeout: the statement was cancelled by statement_timeout (57014).
	ErrTimeout = errors.New("supabase: statement timeout")
	// ErrUnavailable: the database or gateway is unreachable or overloaded
	// (502/503/504, PGRST000-003, 08*, 53*, connection errors).
	ErrUnavailable = errors.New("supabase: unavailable")
	// ErrResponseTooLarge: a successful response body exceeded
	// Config.MaxResponseBytes (Client only). It is not an *Error and is not
	// retried: narrow the query (columns, limit) or raise the cap.
	ErrResponseTooLarge = errors.New("supabase: response too large")
)

// Error is a failed call, in PostgREST's terms: the HTTP status and the
// {code, message, details, hint} body. Code is the SQLSTATE or PGRSTxxx code
// (empty for gateway errors). It implements StatusCode() so an Echo error
// handler can pick the status up with errors.As, but its Message may contain
// database details: do not show it to other tenants.
//
// It is deliberately not the HTTP API's error type (apierror.Error): it is
// the data path's error in PostgREST's own terms, for callers that never
// serve HTTP (the engine, the commands), and its code is the database's.
// handlers.HTTPErrorHandler maps it to an API error with a stable code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details string `json:"details,omitempty"`
	Hint    string `json:"hint,omitempty"`

	rows int   // for PGRST116: rows the result had (-1 unknown)
	err  error // underlying cause (network or driver error), if any
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("supabase: ")
	if e.Status != 0 {
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteByte(' ')
	}
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Details != "" {
		b.WriteString(" (")
		b.WriteString(e.Details)
		b.WriteByte(')')
	}
	return b.String()
}

// StatusCode returns the HTTP status PostgREST gave or would give.
func (e *Error) StatusCode() int { return e.Status }

// Unwrap returns the underlying network or driver error, if any.
func (e *Error) Unwrap() error { return e.err }

// Is matches the package sentinels by code and status.
func (e *Error) Is(target error) bool {
	c := e.Code
	switch target {
	case ErrNotFound:
		if c == codeNotSingular {
			return e.rows == 0
		}
		return e.Status == http.StatusNotFound && !isUndefinedCode(c)
	case ErrNotSingular:
		return c == codeNotSingular
	case ErrUndefined:
		return isUndefinedCode(c)
	case ErrConflict:
		return c == "23505" || c == "23503" || e.Status == http.StatusConflict
	case ErrForbidden:
		return c == "42501" || strings.HasPrefix(c, "0L") || strings.HasPrefix(c, "0P") ||
			strings.HasPrefix(c, "28") || e.Status == http.StatusForbidden
	case ErrJWT:
		return c == "PGRST300" || c == "PGRST301" || c == "PGRST302" || c == "PGRST303" ||
			(e.Status == http.StatusUnauthorized && c == "")
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrSerialization:
		return c == "40001" || c == "40P01"
	case ErrTimeout:
		return c == "57014"
	case ErrUnavailable:
		// 57P01-57P03: the server is shutting down, crashed or starting up
		// (a restart, a failover). PostgREST answers 500 for the last two,
		// but the call may succeed once the server is back.
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway ||
			e.Status == http.StatusGatewayTimeout ||
			c == "PGRST000" || c == "PGRST001" || c == "PGRST002" || c == "PGRST003" ||
			c == "57P01" || c == "57P02" || c == "57P03"
	}
	return false
}

// transient reports whether repeating the call may succeed.
func transient(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrSerialization)
}

const codeNotSingular = "PGRST116"

func isUndefinedCode(c string) bool {
	switch c {
	case "42883", "42P01", "42703", "PGRST202", "PGRST204", "PGRST205":
		return true
	}
	return false
}

// statusFor maps a SQLSTATE (and, for a few codes, the message) to the HTTP
// status PostgREST answers with (src/library/PostgREST/Error.hs
// mapSQLtoHTTP; v14). authenticated reports whether the request carried a
// JWT: 42501 is 403 then, 401 otherwise. The PostgREST test server keeps its
// own copy, so a test comparing the two finds a mismatch.
func statusFor(sqlstate, message string, authenticated bool) int {
	switch sqlstate {
	case "23503", "23505":
		return http.StatusConflict
	case "25006":
		return http.StatusMethodNotAllowed
	case "21000":
		if strings.HasSuffix(message, "requires a WHERE clause") {
			return http.StatusBadRequest // pg-safeupdate
		}
		return http.StatusInternalServerError
	case "22023":
		if strings.HasPrefix(message, "role") && strings.HasSuffix(message, "does not exist") {
			return http.StatusUnauthorized // the JWT's role does not exist
		}
		return http.StatusBadRequest
	case "53400":
		return http.StatusInternalServerError
	case "57P01":
		return http.StatusServiceUnavailable
	case "P0001":
		return http.StatusBadRequest
	case "42883":
		if strings.HasPrefix(message, "function xmlagg(") {
			return http.StatusNotAcceptable
		}
		return http.StatusNotFound
	case "42P01":
		return http.StatusNotFound
	case "42P17":
		return http.StatusInternalServerError
	case "42501":
		if authenticated {
			return http.StatusForbidden
		}
		return http.StatusUnauthorized
	case "PT402":
		return http.StatusPaymentRequired
	}
	if rest, ok := strings.CutPrefix(sqlstate, "PT"); ok {
		// RAISE sqlstate 'PTxyz' gives HTTP xyz; anything unreadable is 500.
		if n, err := strconv.Atoi(rest); err == nil && n >= 100 && n <= 999 {
			return n
		}
		return http.StatusInternalServerError
	}
	if len(sqlstate) < 2 {
		return http.StatusBadRequest
	}
	switch sqlstate[:2] {
	case "08", "53":
		return http.StatusServiceUnavailable
	case "09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "XX", "P0":
		return http.StatusInternalServerError
	case "0L", "0P", "28":
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// pgrstStatus maps PostgREST's own codes to their HTTP status
// (src/library/PostgREST/Error.hs, the ErrorHeaders instances).
func pgrstStatus(code string) int {
	switch code {
	case "PGRST000", "PGRST001", "PGRST002":
		return http.StatusServiceUnavailable
	case "PGRST003":
		return http.StatusGatewayTimeout
	case "PGRST101", "PGRST105", "PGRST117":
		return http.StatusMethodNotAllowed
	case "PGRST103":
		return http.StatusRequestedRangeNotSatisfiable
	case "PGRST106", "PGRST107", codeNotSingular:
		return http.StatusNotAcceptable
	case "PGRST201", "PGRST203":
		return http.StatusMultipleChoices
	case "PGRST125", "PGRST126", "PGRST202", "PGRST205":
		return http.StatusNotFound
	case "PGRST111", "PGRST112", "PGRST121", "PGRST300":
		return http.StatusInternalServerError
	case "PGRST301", "PGRST302", "PGRST303":
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// NewError builds an *Error with PostgREST's status for code (a SQLSTATE or
// a PGRSTxxx code). Test servers and fakes use it to answer like PostgREST.
func NewError(code, message, details, hint string, authenticated bool) *Error {
	e := &Error{Code: code, Message: message, Details: details, Hint: hint, rows: -1}
	if strings.HasPrefix(code, "PGRST") {
		e.Status = pgrstStatus(code)
	} else {
		e.Status = statusFor(code, message, authenticated)
	}
	if code == codeNotSingular {
		e.rows = rowsFromDetails(details)
	}
	return e
}

// notSingular is PostgREST's 406 for a singular request that got n rows
// (src/PostgREST/Error.hs, "singularityError").
func notSingular(n int) *Error {
	return NewError(codeNotSingular, "Cannot coerce the result to a single JSON object",
		fmt.Sprintf("The result contains %d rows", n), "", true)
}

// rowsFromDetails parses PGRST116's "The result contains N rows" once, when
// the error is built, so Is never compares strings.
func rowsFromDetails(d string) int {
	var n int
	if _, err := fmt.Sscanf(d, "The result contains %d rows", &n); err != nil {
		return -1
	}
	return n
}

func badRequest(code, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: msg, rows: -1}
}

// unavailable wraps a connection-level failure.
func unavailable(op string, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Message: op + ": " + err.Error(), rows: -1, err: err}
}
