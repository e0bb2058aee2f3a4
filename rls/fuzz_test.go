package rls

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/apierror"
)

// FuzzParseBearer feeds arbitrary Authorization headers through ParseBearer and, when a token
// comes out, through Verify: nothing may panic, every failure must be a 401 *apierror.Error, and the error
// must never echo the token.
func FuzzParseBearer(f *testing.F) {
	clock := newTestClock()
	v, err := NewVerifier(f.Context(), clock.base(), &Config{
		SupabaseURL: "https://ref.supabase.co", JWTSecret: testJWTSecret, JWKSDisabled: true,
	})
	require.NoError(f, err)
	f.Cleanup(v.Close)
	valid, err := jwt.NewWithClaims(jwt.SigningMethodHS256, userClaims("https://ref.supabase.co/auth/v1", clock.Now(), uuid.New())).
		SignedString([]byte(testJWTSecret))
	require.NoError(f, err)
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		"", " ", "Bearer", "Bearer ", "Bearer  ", "bearer x", "BEARER a.b.c", "Basic dXNlcjpwYXNz",
		"Bearer " + valid, "bearer   " + valid + "  ", "Bearer " + valid + "=", "Bearer " + valid + ".x",
		"Bearer " + parts[0] + "." + parts[1] + ".", "Bearer " + parts[0] + "..", "Bearer ..", "Bearer ....",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer eyJhbGciOiJIUzI1NiJ9.bnVsbA.AAAA",
		"Bearer a\x00b", "Bearer tok\ten", "Bearer ~+/=", "Bearer ===", "Bearer é.é.é",
		"Bearer " + strings.Repeat("A", 17<<10),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, err := ParseBearer(header)
		if err != nil {
			requireUnauthorized(t, err)
			return
		}
		require.NotEmpty(t, token)
		require.True(t, isB64Token(token))
		require.Contains(t, header, token)

		claims, err := v.Verify(t.Context(), token)
		if err != nil {
			requireUnauthorized(t, err)
			if len(token) >= 32 {
				require.NotContains(t, err.Error(), token)
			}
			return
		}
		require.NotEqual(t, uuid.Nil, claims.UserID)
		require.Equal(t, RoleAuthenticated, claims.Role)
	})
}

func requireUnauthorized(t *testing.T, err error) {
	t.Helper()
	var rerr *apierror.Error
	require.ErrorAs(t, err, &rerr, "want *rls.Error, got %T", err)
	require.Equal(t, http.StatusUnauthorized, rerr.StatusCode())
	require.NotEmpty(t, rerr.Message)
	require.NotEmpty(t, rerr.Header.Get("WWW-Authenticate"))
}

// FuzzWebhookSignatureHeader feeds arbitrary webhook-signature, webhook-id and webhook-timestamp
// headers to a Standard Webhooks verifier: nothing may panic, a failure is always an *apierror.Error, and a
// header only verifies if it holds the right signature.
func FuzzWebhookSignatureHeader(f *testing.F) {
	key, err := decodeWebhookSecret(vectorSecret)
	require.NoError(f, err)
	for _, seed := range []struct {
		sig, id, ts string
		body        []byte
	}{
		{vectorSignature, vectorID, strconv.Itoa(vectorTimestamp), []byte(vectorPayload)},
		{"v1a,abc " + vectorSignature, vectorID, strconv.Itoa(vectorTimestamp), []byte(vectorPayload)},
		{"v1,", vectorID, strconv.Itoa(vectorTimestamp), nil},
		{",,, v1,,, v1", "a", "1614265330", []byte("{}")},
		{"v1,====", "msg", "+1614265330", []byte("x")},
		{"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", vectorID, "1614265330.0", []byte(vectorPayload)},
		{strings.Repeat("v1,AAAA ", 600), "id", "-1", nil},
		{"\tv1,x\nv1,y", "id with space", "99999999999999999999", []byte{0xff}},
	} {
		f.Add(seed.sig, seed.id, seed.ts, seed.body)
	}
	f.Fuzz(func(t *testing.T, sig, id, ts string, body []byte) {
		clock := vectorClock()
		w, err := NewWebhookVerifier(clock.base(), &Config{WebhookSigningSecret: vectorSecret, WebhookReplayCacheSize: 4})
		require.NoError(t, err)
		h := http.Header{}
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(HeaderWebhookSignature, sig)

		err = w.Verify(h, body)
		if err != nil {
			var rerr *apierror.Error
			require.ErrorAs(t, err, &rerr, "want *rls.Error, got %T", err)
			require.Contains(t, []int{http.StatusUnauthorized, http.StatusConflict}, rerr.StatusCode())
		} else {
			n, perr := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
			require.NoError(t, perr)
			require.True(t, matchesSignature(SignWebhook(key, h.Get(HeaderWebhookID), n, body), h.Get(HeaderWebhookSignature)))
		}

		// Appending the right signature must make any well-formed delivery verify.
		n, perr := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
		if perr != nil || n != vectorTimestamp || err == nil {
			return
		}
		good := h.Get(HeaderWebhookSignature) + " v1," + SignWebhook(key, h.Get(HeaderWebhookID), n, body)
		h.Set(HeaderWebhookSignature, good)
		err2 := w.Verify(h, body)
		hid := h.Get(HeaderWebhookID)
		if hid == "" || len(hid) > maxWebhookIDBytes || strings.ContainsAny(hid, ". \t") || len(good) > maxWebhookSignatureBytes {
			require.Error(t, err2)
			return
		}
		require.NoError(t, err2)
	})
}
