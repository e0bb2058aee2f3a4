package rls

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

func newUserRouter(t *testing.T, v *Verifier, extra ...echo.MiddlewareFunc) *echo.Echo {
	t.Helper()
	e := echo.New()
	e.HTTPErrorHandler = renderError
	g := e.Group("/v1", append([]echo.MiddlewareFunc{v.Middleware()}, extra...)...)
	g.GET("/me", func(c echo.Context) error {
		claims, ok := ClaimsFromContext(c.Request().Context())
		if !ok {
			return echo.ErrInternalServerError
		}
		token, ok := TokenFromContext(c.Request().Context())
		if !ok || token == "" {
			return echo.ErrInternalServerError
		}
		return c.JSON(http.StatusOK, map[string]string{"user_id": claims.UserID.String(), "role": claims.Role})
	})
	return e
}

func get(e *echo.Echo, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	if authorization != "" {
		req.Header.Set(echo.HeaderAuthorization, authorization)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestVerifierMiddleware(t *testing.T) {
	t.Parallel()
	b := setupVerifier(t)
	e := newUserRouter(t, b.verifier)
	valid := b.es.sign(t, b.claims())
	expired := b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["exp"] = b.clock.Now().Add(-time.Hour).Unix() }))

	tests := []struct {
		name               string
		givenAuthorization string
		expectStatus       int
		expectBody         string
		expectChallenge    string
	}{
		{
			name: "Valid", givenAuthorization: "Bearer " + valid, expectStatus: http.StatusOK,
			expectBody: `{"user_id":"` + b.userID.String() + `","role":"authenticated"}`,
		},
		{
			name: "LowercaseScheme", givenAuthorization: "bearer " + valid, expectStatus: http.StatusOK,
			expectBody: `{"user_id":"` + b.userID.String() + `","role":"authenticated"}`,
		},
		{
			name: "Missing", expectStatus: http.StatusUnauthorized, expectChallenge: "Bearer",
			expectBody: `{"code":"missing_token","message":"missing bearer token"}`,
		},
		{
			name: "BasicScheme", givenAuthorization: "Basic dXNlcjpwYXNz", expectStatus: http.StatusUnauthorized,
			expectChallenge: `Bearer error="invalid_token", error_description="malformed token"`,
			expectBody:      `{"code":"invalid_token","message":"malformed token"}`,
		},
		{
			name: "Expired", givenAuthorization: "Bearer " + expired, expectStatus: http.StatusUnauthorized,
			expectChallenge: `Bearer error="invalid_token", error_description="token expired"`,
			expectBody:      `{"code":"invalid_token","message":"token expired"}`,
		},
		{
			name: "Garbage", givenAuthorization: "Bearer not-a-jwt", expectStatus: http.StatusUnauthorized,
			expectBody: `{"code":"invalid_token","message":"malformed token"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := get(e, tt.givenAuthorization)
			require.Equal(t, tt.expectStatus, rec.Code)
			require.JSONEq(t, tt.expectBody, rec.Body.String())
			if tt.expectChallenge != "" {
				require.Equal(t, tt.expectChallenge, rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestRequireRole(t *testing.T) {
	t.Parallel()
	b := setupVerifier(t)
	valid := "Bearer " + b.es.sign(t, b.claims())

	rec := get(newUserRouter(t, b.verifier, RequireRole("authenticated")), valid)
	require.Equal(t, http.StatusOK, rec.Code)

	rec = get(newUserRouter(t, b.verifier, RequireRole("service_role")), valid)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.JSONEq(t, `{"code":"insufficient_role","message":"role not allowed"}`, rec.Body.String())
}
