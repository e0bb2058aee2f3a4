package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/rls"
)

// TestAnonymousSignIns: an anonymous sign-in (role authenticated,
// is_anonymous true) gets 403 anonymous_not_allowed on every call that
// starts work unless the service allows it, and never reaches the
// database; reads, pause and cancel stay open; a full account is not
// affected.
func TestAnonymousSignIns(t *testing.T) {
	t.Parallel()
	starts := []string{
		"/api/v1/batches", "/api/v1/batches/%s/resume", "/api/v1/batches/%s/retry-failed",
		"/api/v1/tasks/%s/approve", "/api/v1/tasks/%s/reject", "/api/v1/tasks/%s/retry",
	}
	for _, tt := range []struct {
		name         string
		givenAllow   bool
		givenAnon    bool
		expectDenied bool
	}{
		{name: "AnonymousDeniedByDefault", givenAnon: true, expectDenied: true},
		{name: "AnonymousAllowed", givenAllow: true, givenAnon: true},
		{name: "AccountUnaffected", givenAnon: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, db := anonymousRouter(t, tt.givenAllow)
			user := uuid.New()
			bearer := "Bearer " + tokenWith(t, user, tt.givenAnon)
			call := func(method, path, body string) int {
				req, err := http.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Authorization", bearer)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if tt.expectDenied && rec.Code == http.StatusForbidden {
					require.Contains(t, rec.Body.String(), `"code":"anonymous_not_allowed"`)
				}
				return rec.Code
			}
			id := uuid.NewString()
			for _, p := range starts {
				path := strings.ReplaceAll(p, "%s", id)
				body := ""
				if path == "/api/v1/batches" {
					body = `{"template_id":"t","rows":[{}]}`
				}
				status := call(http.MethodPost, path, body)
				if tt.expectDenied {
					require.Equal(t, http.StatusForbidden, status, path)
				} else {
					require.NotEqual(t, http.StatusForbidden, status, path)
				}
			}
			if tt.expectDenied {
				require.Empty(t, db.Calls(), "a denied call never reaches the database")
			}
			// Stopping work and reading stay open.
			for _, p := range []string{"/api/v1/batches/%s/pause", "/api/v1/batches/%s/cancel"} {
				require.NotEqual(t, http.StatusForbidden, call(http.MethodPost, strings.ReplaceAll(p, "%s", id), ""))
			}
			require.NotEqual(t, http.StatusForbidden, call(http.MethodGet, "/api/v1/batches/"+id, ""))
		})
	}
}

func anonymousRouter(t *testing.T, allow bool) (*echo.Echo, *fakeDB) {
	t.Helper()
	cfg := &rls.Config{
		SupabaseURL: testSupabaseURL, JWTSecret: testJWTSecret, JWKSDisabled: true,
		WebhookMode: rls.WebhookModeSharedSecret, WebhookSecret: testWebhookSecret,
	}
	verifier, err := rls.NewVerifier(t.Context(), nil, cfg)
	require.NoError(t, err)
	t.Cleanup(verifier.Close)
	wv, err := rls.NewWebhookVerifier(nil, cfg)
	require.NoError(t, err)
	e, db := echo.New(), newFakeDB()
	handlers.Register(e, &handlers.Deps{
		DB: db, UserAuth: verifier.Middleware(), WebhookAuth: wv.Middleware(), Wake: &fakeWaker{accept: true},
		Ready: func(context.Context) error { return nil }, AllowAnonymousLaunch: allow,
	})
	return e, db
}

// tokenWith signs a user token; anonymous marks an anonymous sign-in.
func tokenWith(t *testing.T, sub uuid.UUID, anonymous bool) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": testSupabaseURL + "/auth/v1", "aud": "authenticated", "role": "authenticated",
		"sub": sub.String(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "is_anonymous": anonymous,
	}).SignedString([]byte(testJWTSecret))
	require.NoError(t, err)
	return s
}
