package rls

import (
	"strings"
)

// ParseBearer extracts the token from an Authorization header value of the form
// "Bearer <token>" (RFC 6750 §2.1; the scheme is case-insensitive). An empty header gives
// ErrMissingToken; anything else that is not a well-formed bearer credential gives
// ErrTokenMalformed. Both are returned as a 401 *apierror.Error. The token itself is only checked for
// its character set here; [Verifier.Verify] does the rest.
func ParseBearer(header string) (string, error) {
	if strings.TrimSpace(header) == "" {
		return "", tokenError(ErrMissingToken, nil)
	}
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", tokenError(ErrTokenMalformed, nil)
	}
	token := strings.Trim(header[len(scheme):], " ")
	if token == "" {
		return "", tokenError(ErrMissingToken, nil)
	}
	if !isB64Token(token) {
		return "", tokenError(ErrTokenMalformed, nil)
	}
	return token, nil
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := range len(body) {
		ch := body[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '-', ch == '.', ch == '_', ch == '~', ch == '+', ch == '/':
		default:
			return false
		}
	}
	return true
}
