package console_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/console"
)

func get(t *testing.T, e *echo.Echo, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// TestServe: the pages and modules come from the binary with a strict CSP;
// config.json names only public settings; without EnableDevSignIn there is
// no dev session route.
func TestServe(t *testing.T) {
	t.Parallel()
	e := echo.New()
	console.Register(e, &console.Config{SupabaseURL: "https://proj.supabase.co/", AnonKey: "sb_publishable_x"})

	rec := get(t, e, http.MethodGet, "/console")
	require.Equal(t, http.StatusFound, rec.Code)
	require.Equal(t, "/console/", rec.Header().Get("Location"))

	for path, want := range map[string]string{"/console/": "<title>orchable console</title>", "/console/app.js": "import", "/console/style.css": ":root"} {
		rec = get(t, e, http.MethodGet, path)
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.Contains(t, rec.Body.String(), want, path)
		csp := rec.Header().Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self';")
		require.Contains(t, csp, "connect-src 'self' https://proj.supabase.co;")
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	}
	require.True(t, strings.HasPrefix(get(t, e, http.MethodGet, "/console/app.js").Header().Get("Content-Type"), "text/javascript"))

	rec = get(t, e, http.MethodGet, "/console/config.json")
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"supabase_url": "https://proj.supabase.co", "anon_key": "sb_publishable_x", "dev_sign_in": false}`, rec.Body.String())

	require.NotEqual(t, http.StatusOK, get(t, e, http.MethodPost, "/console/dev/session").Code)
	require.Equal(t, http.StatusNotFound, get(t, e, http.MethodGet, "/console/nope.js").Code)
}

// TestDevSignIn: only when enabled, the dev route answers the session.
func TestDevSignIn(t *testing.T) {
	t.Parallel()
	e := echo.New()
	c := console.Register(e, &console.Config{SupabaseURL: "http://127.0.0.1:54321"})
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.EnableDevSignIn(func() (console.Session, error) {
		return console.Session{AccessToken: "tok", ExpiresAt: exp, UserID: "u", Email: "dev@orchable.local"}, nil
	})
	rec := get(t, e, http.MethodPost, "/console/dev/session")
	require.Equal(t, http.StatusOK, rec.Code)
	var s console.Session
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &s))
	require.Equal(t, "tok", s.AccessToken)
	require.True(t, s.ExpiresAt.Equal(exp))
	require.Contains(t, get(t, e, http.MethodGet, "/console/config.json").Body.String(), `"dev_sign_in":true`)

	e2 := echo.New()
	console.Register(e2, &console.Config{DevSessionFunc: func() (console.Session, error) { return console.Session{}, errors.New("no") }})
	require.Equal(t, http.StatusInternalServerError, get(t, e2, http.MethodPost, "/console/dev/session").Code)
}
