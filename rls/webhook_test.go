package rls

import (
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/baseservice/baseservicetest"
)

// The reference vector from standard-webhooks (libraries/go/webhook_test.go).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

const testSharedSecret = "a-shared-webhook-secret-0123456789"

func vectorHeaders() http.Header {
	h := http.Header{}
	h.Set("webhook-id", vectorID)
	h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp))
	h.Set("webhook-signature", vectorSignature)
	return h
}

func newStandardVerifier(t *testing.T, clock *testClock, secret string) *WebhookVerifier {
	t.Helper()
	w, err := NewWebhookVerifier(clock.base(), &Config{WebhookSigningSecret: Secret(secret)})
	require.NoError(t, err)
	require.Equal(t, WebhookModeStandard, w.mode)
	return w
}

func vectorClock() *testClock {
	return &testClock{baseservicetest.NewFakeClock(time.Unix(vectorTimestamp, 0))}
}

func TestWebhookStandardVector(t *testing.T) {
	t.Parallel()
	w := newStandardVerifier(t, vectorClock(), vectorSecret)

	require.NoError(t, w.Verify(vectorHeaders(), []byte(vectorPayload)))

	key, err := decodeWebhookSecret(vectorSecret)
	require.NoError(t, err)
	require.Equal(t, vectorSignature, "v1,"+SignWebhook(key, vectorID, vectorTimestamp, []byte(vectorPayload)))
}

func TestWebhookStandardRejections(t *testing.T) {
	t.Parallel()
	otherSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-of-32-bytes-long!"))
	tests := []struct {
		name        string
		givenSecret string
		givenEdit   func(h http.Header) // nil: vector headers unchanged
		givenBody   string
		whenAdvance time.Duration
		expectErr   error
	}{
		{name: "Valid", givenSecret: vectorSecret},
		{name: "ValidSecretWithoutPrefix", givenSecret: strings.TrimPrefix(vectorSecret, "whsec_")},
		{name: "ValidAmongSeveralSignatures", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-signature", "v1a,abc v1,bm90LWl0 v1,%%% "+vectorSignature+" v2,x")
		}},
		{name: "ValidJustInsideTolerance", givenSecret: vectorSecret, whenAdvance: 5 * time.Minute},
		{name: "ValidClockBehindSender", givenSecret: vectorSecret, whenAdvance: -4 * time.Minute},
		{name: "WrongSecret", givenSecret: otherSecret, expectErr: ErrWebhookSignatureInvalid},
		{name: "TamperedBody", givenSecret: vectorSecret, givenBody: `{"test": 2432232315}`, expectErr: ErrWebhookSignatureInvalid},
		{name: "TamperedID", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Set("webhook-id", "msg_other") }, expectErr: ErrWebhookSignatureInvalid},
		{name: "TamperedTimestamp", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp+1))
		}, expectErr: ErrWebhookSignatureInvalid},
		{name: "OnlyV1aSignature", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-signature", strings.Replace(vectorSignature, "v1,", "v1a,", 1))
		}, expectErr: ErrWebhookSignatureInvalid},
		{name: "SignatureWithoutVersion", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-signature", strings.TrimPrefix(vectorSignature, "v1,"))
		}, expectErr: ErrWebhookSignatureInvalid},
		{name: "StaleTimestamp", givenSecret: vectorSecret, whenAdvance: 5*time.Minute + time.Second, expectErr: ErrWebhookTimestampExpired},
		{name: "FutureTimestamp", givenSecret: vectorSecret, whenAdvance: -5*time.Minute - time.Second, expectErr: ErrWebhookTimestampExpired},
		{name: "TimestampNotANumber", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Set("webhook-timestamp", "yesterday") }, expectErr: ErrWebhookTimestampInvalid},
		{name: "TimestampMilliseconds", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp*1000))
		}, expectErr: ErrWebhookTimestampExpired},
		{name: "MissingID", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Del("webhook-id") }, expectErr: ErrWebhookHeadersMissing},
		{name: "MissingTimestamp", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Del("webhook-timestamp") }, expectErr: ErrWebhookHeadersMissing},
		{name: "MissingSignature", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Del("webhook-signature") }, expectErr: ErrWebhookHeadersMissing},
		{name: "NoHeadersAtAll", givenSecret: vectorSecret, givenEdit: func(h http.Header) { clear(h) }, expectErr: ErrWebhookHeadersMissing},
		{name: "IDTooLong", givenSecret: vectorSecret, givenEdit: func(h http.Header) { h.Set("webhook-id", strings.Repeat("a", 257)) }, expectErr: ErrWebhookIDInvalid},
		{name: "SignatureHeaderTooLarge", givenSecret: vectorSecret, givenEdit: func(h http.Header) {
			h.Set("webhook-signature", strings.Repeat("v1,AAAA ", 1000)+vectorSignature)
		}, expectErr: ErrWebhookSignatureTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := vectorClock()
			clock.Advance(tt.whenAdvance)
			w := newStandardVerifier(t, clock, tt.givenSecret)
			h := vectorHeaders()
			if tt.givenEdit != nil {
				tt.givenEdit(h)
			}
			body := vectorPayload
			if tt.givenBody != "" {
				body = tt.givenBody
			}

			err := w.Verify(h, []byte(body))

			if tt.expectErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.expectErr)
			var rerr *apierror.Error
			require.ErrorAs(t, err, &rerr)
			require.Equal(t, http.StatusUnauthorized, rerr.StatusCode())
			require.Equal(t, CodeInvalidWebhook, rerr.Code)
		})
	}
}

func TestWebhookStandardReplay(t *testing.T) {
	t.Parallel()
	clock := vectorClock()
	w := newStandardVerifier(t, clock, vectorSecret)
	require.NoError(t, w.Verify(vectorHeaders(), []byte(vectorPayload)))

	clock.Advance(4 * time.Minute)
	err := w.Verify(vectorHeaders(), []byte(vectorPayload))
	require.ErrorIs(t, err, ErrWebhookReplayed)
	var rerr *apierror.Error
	require.ErrorAs(t, err, &rerr)
	require.Equal(t, http.StatusConflict, rerr.StatusCode())

	clock.Advance(2 * time.Minute) // the id has left the window: the timestamp check rejects it now
	require.ErrorIs(t, w.Verify(vectorHeaders(), []byte(vectorPayload)), ErrWebhookTimestampExpired)
}

func TestReplayCacheIsBounded(t *testing.T) {
	t.Parallel()
	now := testNow()
	c := newReplayCache(3)
	for _, id := range []string{"a", "b", "c"} {
		require.True(t, c.add(id, now.Add(time.Minute), now))
	}
	require.False(t, c.add("b", now.Add(time.Minute), now))
	require.True(t, c.add("d", now.Add(time.Minute), now)) // evicts "a", the oldest
	require.Equal(t, 3, c.len())
	require.True(t, c.add("a", now.Add(time.Minute), now))
	require.False(t, c.add("d", now.Add(time.Minute), now))

	later := now.Add(2 * time.Minute) // everything expired
	require.True(t, c.add("d", later.Add(time.Minute), later))
	require.Equal(t, 1, c.len())

	big := newReplayCache(100)
	for i := range 1000 {
		require.True(t, big.add(strconv.Itoa(i), now.Add(time.Minute), now))
	}
	require.Equal(t, 100, big.len())
	require.LessOrEqual(t, len(big.seen), 100)
}

func TestWebhookSharedSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenHeader  string
		givenHeaders map[string][]string
		expectErr    error
	}{
		{name: "Valid", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {testSharedSecret}}},
		{name: "ValidLowercaseHeader", givenHeaders: map[string][]string{"x-supabase-webhook-source": {testSharedSecret}}},
		{name: "ValidCustomHeader", givenHeader: "X-Webhook-Secret", givenHeaders: map[string][]string{"X-Webhook-Secret": {testSharedSecret}}},
		{name: "Missing", givenHeaders: map[string][]string{}, expectErr: ErrWebhookSecretMissing},
		{name: "Empty", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {""}}, expectErr: ErrWebhookSecretMissing},
		{name: "Wrong", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {"nope"}}, expectErr: ErrWebhookSecretMismatch},
		{name: "Prefix", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {testSharedSecret[:20]}}, expectErr: ErrWebhookSecretMismatch},
		{name: "Repeated", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {testSharedSecret, "x"}}, expectErr: ErrWebhookSecretMismatch},
		{name: "WrongHeaderName", givenHeader: "X-Webhook-Secret", givenHeaders: map[string][]string{"X-Supabase-Webhook-Source": {testSharedSecret}}, expectErr: ErrWebhookSecretMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := NewWebhookVerifier(newTestClock().base(), &Config{WebhookSecret: testSharedSecret, WebhookSecretHeader: tt.givenHeader})
			require.NoError(t, err)
			h := http.Header{}
			for k, vs := range tt.givenHeaders {
				for _, v := range vs {
					h.Add(k, v)
				}
			}

			err = w.Verify(h, nil)

			if tt.expectErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.expectErr)
		})
	}
}

func TestNewWebhookVerifierConfig(t *testing.T) {
	t.Parallel()
	_, err := NewWebhookVerifier(nil, &Config{})
	require.ErrorContains(t, err, "WebhookSecret must be at least")
	_, err = NewWebhookVerifier(nil, &Config{WebhookSigningSecret: "whsec_!!!"})
	require.ErrorContains(t, err, "WebhookSigningSecret")
	_, err = NewWebhookVerifier(nil, &Config{WebhookSigningSecret: Secret("whsec_" + base64.StdEncoding.EncodeToString([]byte("short")))})
	require.ErrorContains(t, err, "at least 24 bytes")
	_, err = NewWebhookVerifier(nil, &Config{WebhookMode: WebhookModeStandard, WebhookSecret: testSharedSecret})
	require.ErrorContains(t, err, "WebhookSigningSecret")
	require.NotContains(t, err.Error(), testSharedSecret)
}

// renderError renders an *apierror.Error as handlers.HTTPErrorHandler does: its headers, its
// status and {"code","message"}.
func renderError(err error, c echo.Context) {
	if rerr, ok := errors.AsType[*apierror.Error](err); ok {
		for name, values := range rerr.Header {
			for _, v := range values {
				c.Response().Header().Add(name, v)
			}
		}
		_ = c.JSON(rerr.StatusCode(), rerr)
		return
	}
	_ = c.JSON(http.StatusInternalServerError, map[string]string{"code": "internal", "message": "internal error"})
}

type webhookRouter struct {
	e       *echo.Echo
	gotBody chan string
	gotID   chan string
}

func newWebhookRouter(t *testing.T, w *WebhookVerifier) *webhookRouter {
	t.Helper()
	r := &webhookRouter{e: echo.New(), gotBody: make(chan string, 1), gotID: make(chan string, 1)}
	r.e.HTTPErrorHandler = renderError
	r.e.POST("/webhooks/supabase", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		r.gotBody <- string(body)
		id, _ := WebhookIDFromContext(c.Request().Context())
		r.gotID <- id
		return c.NoContent(http.StatusAccepted)
	}, w.Middleware())
	return r
}

func (r *webhookRouter) post(h http.Header, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/supabase", strings.NewReader(body))
	maps.Copy(req.Header, h)
	rec := httptest.NewRecorder()
	r.e.ServeHTTP(rec, req)
	return rec
}

func TestWebhookMiddlewareStandard(t *testing.T) {
	t.Parallel()
	w := newStandardVerifier(t, vectorClock(), vectorSecret)
	r := newWebhookRouter(t, w)

	rec := r.post(vectorHeaders(), vectorPayload)
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, vectorPayload, <-r.gotBody, "the handler sees the body unchanged")
	require.Equal(t, vectorID, <-r.gotID)

	rec = r.post(vectorHeaders(), vectorPayload)
	require.Equal(t, http.StatusConflict, rec.Code)
	require.JSONEq(t, `{"code":"webhook_replayed","message":"webhook-id already seen"}`, rec.Body.String())

	rec = r.post(http.Header{}, vectorPayload)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.JSONEq(t, `{"code":"invalid_webhook","message":"missing webhook-id, webhook-timestamp or webhook-signature"}`, rec.Body.String())
}

func TestWebhookMiddlewareBodyLimit(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	w, err := NewWebhookVerifier(clock.base(), &Config{WebhookSigningSecret: vectorSecret, WebhookMaxBodyBytes: 64})
	require.NoError(t, err)
	r := newWebhookRouter(t, w)
	key, err := decodeWebhookSecret(vectorSecret)
	require.NoError(t, err)
	signed := func(id, body string) http.Header {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", strconv.FormatInt(clock.Now().Unix(), 10))
		h.Set("webhook-signature", "v1,"+SignWebhook(key, id, clock.Now().Unix(), []byte(body)))
		return h
	}

	atLimit := `{"type":"INSERT","table":"ai_tasks","record":{"id":"` + strings.Repeat("x", 64-55) + `"}}`
	require.Len(t, atLimit, 64)
	rec := r.post(signed("msg_1", atLimit), atLimit)
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, atLimit, <-r.gotBody)
	<-r.gotID

	tooBig := atLimit + " "
	rec = r.post(signed("msg_2", tooBig), tooBig)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	require.JSONEq(t, `{"code":"payload_too_large","message":"webhook payload too large"}`, rec.Body.String())

	// Without Content-Length (chunked), the cap still holds.
	req := httptest.NewRequest(http.MethodPost, "/webhooks/supabase", io.MultiReader(strings.NewReader(tooBig)))
	req.ContentLength = -1
	maps.Copy(req.Header, signed("msg_3", tooBig))
	rec = httptest.NewRecorder()
	r.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
}

func TestWebhookMiddlewareSharedSecret(t *testing.T) {
	t.Parallel()
	w, err := NewWebhookVerifier(newTestClock().base(), &Config{WebhookSecret: testSharedSecret})
	require.NoError(t, err)
	r := newWebhookRouter(t, w)
	body := `{"type":"INSERT","table":"ai_tasks","schema":"public","record":{},"old_record":null}`

	rec := r.post(http.Header{"X-Supabase-Webhook-Source": {testSharedSecret}}, body)
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, body, <-r.gotBody)
	require.Empty(t, <-r.gotID)

	rec = r.post(http.Header{"X-Supabase-Webhook-Source": {"wrong"}}, body)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.JSONEq(t, `{"code":"invalid_webhook","message":"wrong webhook secret"}`, rec.Body.String())
	require.NotContains(t, rec.Body.String(), testSharedSecret)
}
