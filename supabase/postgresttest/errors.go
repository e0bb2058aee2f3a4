package postgresttest

import (
	"net/http"
	"strconv"
	"strings"
)

// apiError is an error response: PostgREST's HTTP status and its
// {code, message, details, hint} body. The status is decided here, from
// PostgREST's own tables (src/library/PostgREST/Error.hs), and never taken
// from the client package: a test that compares the two catches a mismatch.
type apiError struct {
	status  int
	code    string
	message string
	details string
	hint    string
	// jwt marks JWT errors, which also get a WWW-Authenticate header.
	jwt bool
}

func (e *apiError) Error() string {
	return "postgresttest: " + strconv.Itoa(e.status) + " " + e.code + ": " + e.message
}

// pgrst is one of PostgREST's own errors (PGRSTxxx), with its status.
func pgrst(code, msg, details string) *apiError {
	return &apiError{status: pgrstStatus(code), code: code, message: msg, details: details}
}

// sqlError is a database error as PostgREST answers it.
func sqlError(sqlstate, msg, details, hint string, authed bool) *apiError {
	return &apiError{status: sqlStatus(sqlstate, msg, authed), code: sqlstate, message: msg, details: details, hint: hint}
}

// pgrstStatus is the status of PostgREST's own error codes: ApiRequestError,
// SchemaCacheError and JwtError in Error.hs, PGRST0xx for the connection.
func pgrstStatus(code string) int {
	switch code {
	case "PGRST000", "PGRST001", "PGRST002": // connection, internal, no schema cache
		return http.StatusServiceUnavailable
	case "PGRST003": // pool acquisition timeout
		return http.StatusGatewayTimeout
	case "PGRST101", "PGRST105", "PGRST117": // InvalidRpcMethod, InvalidFilters, UnsupportedMethod
		return http.StatusMethodNotAllowed
	case "PGRST103": // InvalidRange
		return http.StatusRequestedRangeNotSatisfiable
	case "PGRST106", "PGRST107", "PGRST116": // UnacceptableSchema, MediaTypeError, SingularityError
		return http.StatusNotAcceptable
	case "PGRST111", "PGRST112", "PGRST121", "PGRST300": // GUC headers/status, RAISE PGRST parse, JWT secret missing
		return http.StatusInternalServerError
	case "PGRST125", "PGRST126", "PGRST202", "PGRST205": // InvalidResourcePath, OpenAPIDisabled, NoRpc, TableNotFound
		return http.StatusNotFound
	case "PGRST201", "PGRST203": // AmbiguousRelBetween, AmbiguousRpc
		return http.StatusMultipleChoices
	case "PGRST301", "PGRST302", "PGRST303":
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// sqlStatus is Error.hs mapSQLtoHTTP: a SQLSTATE (and, for a few codes, its
// message) to the HTTP status. authed reports whether the request carried a
// JWT (42501 is 403 then, 401 otherwise).
func sqlStatus(c, msg string, authed bool) int {
	switch c {
	case "23503", "23505":
		return http.StatusConflict
	case "25006":
		return http.StatusMethodNotAllowed
	case "21000":
		// pg-safeupdate's "... requires a WHERE clause" is a client error;
		// any other cardinality violation (a subquery returning more than
		// one row) is the server's.
		if strings.HasSuffix(msg, "requires a WHERE clause") {
			return http.StatusBadRequest
		}
		return http.StatusInternalServerError
	case "22023":
		// The role a JWT names does not exist (PostgREST issue 3601).
		if strings.HasPrefix(msg, "role") && strings.HasSuffix(msg, "does not exist") {
			return http.StatusUnauthorized
		}
		return http.StatusBadRequest
	case "53400":
		return http.StatusInternalServerError
	case "57P01":
		return http.StatusServiceUnavailable
	case "P0001":
		return http.StatusBadRequest
	case "42883":
		if strings.HasPrefix(msg, "function xmlagg(") {
			return http.StatusNotAcceptable
		}
		return http.StatusNotFound
	case "42P01":
		return http.StatusNotFound
	case "42P17":
		return http.StatusInternalServerError
	case "42501":
		if authed {
			return http.StatusForbidden
		}
		return http.StatusUnauthorized
	}
	if rest, ok := strings.CutPrefix(c, "PT"); ok {
		// RAISE sqlstate 'PTxyz' answers HTTP xyz; anything unreadable is 500.
		if n, err := strconv.Atoi(rest); err == nil && n >= 100 && n <= 999 {
			return n
		}
		return http.StatusInternalServerError
	}
	if len(c) < 2 {
		return http.StatusBadRequest
	}
	switch c[:2] {
	case "08", "53":
		return http.StatusServiceUnavailable
	case "0L", "0P", "28":
		return http.StatusForbidden
	case "09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "P0", "XX":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}
