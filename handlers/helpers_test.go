package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

const (
	testSupabaseURL   = "http://sb.test"
	testJWTSecret     = "test-jwt-secret-with-at-least-32-characters"
	testWebhookSecret = "test-webhook-secret"
	testWebhookHeader = rls.DefaultWebhookSecretHeader
	testWebhookMax    = 4096
	testAPIMaxBody    = 64 << 10
)

// rpcCall is one call the fake database received.
type rpcCall struct {
	Function string
	Identity supabase.Identity
	Args     json.RawMessage
}

// fakeDB is a hand-written supabase.DB: it records RPCs and answers each
// function with a canned result or error.
type fakeDB struct {
	mu      sync.Mutex
	calls   []rpcCall
	results map[string]string
	errs    map[string]error
}

func newFakeDB() *fakeDB {
	return &fakeDB{results: map[string]string{}, errs: map[string]error{}}
}

func (f *fakeDB) answer(fn, result string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[fn] = result
}

func (f *fakeDB) fail(fn string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[fn] = err
}

func (f *fakeDB) RPC(_ context.Context, id supabase.Identity, fn string, args any, out any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, rpcCall{Function: fn, Identity: id, Args: raw})
	if err := f.errs[fn]; err != nil {
		return err
	}
	res, ok := f.results[fn]
	if !ok {
		res = "null"
	}
	if out == nil || res == "null" {
		return nil
	}
	return json.Unmarshal([]byte(res), out)
}

func (f *fakeDB) Select(context.Context, supabase.Identity, string, supabase.Query, any) error {
	return errors.New("fakeDB: Select is not used by handlers")
}

func (f *fakeDB) Calls() []rpcCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rpcCall(nil), f.calls...)
}

// fakeWaker records wake-ups.
type fakeWaker struct {
	mu       sync.Mutex
	notified []uuid.UUID
	kicks    int
	accept   bool
	panics   bool
}

func (w *fakeWaker) Notify(userID uuid.UUID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notified = append(w.notified, userID)
	if w.panics {
		panic("fakeWaker: told to panic")
	}
	return w.accept
}

func (w *fakeWaker) Kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kicks++
}

func (w *fakeWaker) snapshot() ([]uuid.UUID, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uuid.UUID(nil), w.notified...), w.kicks
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testBundle struct {
	e        *echo.Echo
	db       *fakeDB
	wake     *fakeWaker
	metrics  *handlers.Metrics
	logs     *syncBuffer
	readyErr error
	readyMu  sync.Mutex
}

func (b *testBundle) setReady(err error) {
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	b.readyErr = err
}

// setup builds the real router with real rls middleware (HS256 verifier,
// shared-secret webhooks) over a fake database and waker.
func setup(t testing.TB) *testBundle {
	t.Helper()
	cfg := &rls.Config{
		SupabaseURL:         testSupabaseURL,
		JWTSecret:           testJWTSecret,
		JWKSDisabled:        true,
		WebhookMode:         rls.WebhookModeSharedSecret,
		WebhookSecret:       testWebhookSecret,
		WebhookMaxBodyBytes: testWebhookMax,
	}
	verifier, err := rls.NewVerifier(t.Context(), nil, cfg)
	require.NoError(t, err)
	t.Cleanup(verifier.Close)
	webhooks, err := rls.NewWebhookVerifier(nil, cfg)
	require.NoError(t, err)

	b := &testBundle{
		e:       echo.New(),
		db:      newFakeDB(),
		wake:    &fakeWaker{accept: true},
		metrics: handlers.NewMetrics(),
		logs:    &syncBuffer{},
	}
	handlers.Register(b.e, &handlers.Deps{
		DB:          b.db,
		UserAuth:    verifier.Middleware(),
		WebhookAuth: webhooks.Middleware(),
		Wake:        b.wake,
		Ready: func(context.Context) error {
			b.readyMu.Lock()
			defer b.readyMu.Unlock()
			return b.readyErr
		},
		Metrics:      b.metrics,
		Logger:       slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxBodyBytes: testAPIMaxBody,
	})
	return b
}

// token signs a user token the verifier accepts.
func token(t testing.TB, sub uuid.UUID) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":  testSupabaseURL + "/auth/v1",
		"aud":  "authenticated",
		"role": "authenticated",
		"sub":  sub.String(),
		"iat":  now.Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}).SignedString([]byte(testJWTSecret))
	require.NoError(t, err)
	return s
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// requireError checks the status and the {"code","message"} body.
func (r *response) requireError(t testing.TB, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	m := r.json(t)
	require.Equal(t, code, m["code"], "body: %s", r.Body)
	require.NotEmpty(t, m["message"])
}

func (b *testBundle) do(t testing.TB, method, path string, header http.Header, body io.Reader) *response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, body)
	maps.Copy(req.Header, header)
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, req)
	return &response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// api calls the user API as user (uuid.Nil: without a token).
func (b *testBundle) api(t testing.TB, method, path string, user uuid.UUID, body string) *response {
	t.Helper()
	h := http.Header{"Content-Type": []string{"application/json"}}
	if user != uuid.Nil {
		h.Set("Authorization", "Bearer "+token(t, user))
	}
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return b.do(t, method, path, h, r)
}

// webhook posts a webhook body with the shared secret.
func (b *testBundle) webhook(t testing.TB, body string) *response {
	t.Helper()
	h := http.Header{"Content-Type": []string{"application/json"}}
	h.Set(testWebhookHeader, testWebhookSecret)
	return b.do(t, http.MethodPost, "/webhooks/supabase", h, strings.NewReader(body))
}
