package rls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/baseservice/baseservicetest"
)

// testNow is the fixed time every test clock starts at.
func testNow() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }

// testClock is the fake clock of the rls tests, started at testNow.
type testClock struct{ *baseservicetest.FakeClock }

func newTestClock() *testClock { return &testClock{baseservicetest.NewFakeClock(testNow())} }

// base is an archetype with the test clock.
func (c *testClock) base() *baseservice.Archetype { return c.Archetype(nil) }

// testKey is a signing key pair with its kid and algorithm.
type testKey struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newES256Key(t *testing.T, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return testKey{kid: kid, method: jwt.SigningMethodES256, priv: k}
}

func newRS256Key(t *testing.T, kid string) testKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return testKey{kid: kid, method: jwt.SigningMethodRS256, priv: k}
}

// jwk returns the public JWK as Supabase publishes it (kid, alg, use, key_ops).
func (k testKey) jwk(t *testing.T) jwkset.JWKMarshal {
	t.Helper()
	return k.jwkWithALG(t, jwkset.ALG(k.method.Alg()))
}

func (k testKey) jwkWithALG(t *testing.T, alg jwkset.ALG) jwkset.JWKMarshal {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		KID: k.kid, ALG: alg, USE: jwkset.UseSig, KEYOPS: []jwkset.KEYOPS{jwkset.KeyOpsVerify},
	}})
	require.NoError(t, err)
	return j.Marshal()
}

// publicPEM returns the PEM of the public key, the bytes an algorithm-confusion attack signs with.
func (k testKey) publicPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (k testKey) sign(t *testing.T, claims jwt.Claims) string {
	t.Helper()
	return signWith(t, k.method, k.priv, k.kid, claims)
}

func signWith(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// userClaims returns the claims of a valid Supabase user token issued at now.
func userClaims(issuer string, now time.Time, sub uuid.UUID) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":          issuer,
		"sub":          sub.String(),
		"aud":          "authenticated",
		"exp":          now.Add(time.Hour).Unix(),
		"iat":          now.Unix(),
		"role":         "authenticated",
		"aal":          "aal1",
		"session_id":   uuid.NewString(),
		"email":        "user@example.com",
		"phone":        "",
		"is_anonymous": false,
		"app_metadata": map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{
			"name": "Test User",
		},
	}
}

// jwksServer is a JWKS endpoint whose key set a test can change, and which reports each request.
type jwksServer struct {
	*httptest.Server

	mu   sync.Mutex
	keys []jwkset.JWKMarshal
	hits atomic.Int64
	hit  chan int64
}

func newJWKSServer(t *testing.T, keys ...jwkset.JWKMarshal) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys, hit: make(chan int64, 1024)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/v1/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		body, err := json.Marshal(jwkset.JWKSMarshal{Keys: s.keys})
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n := s.hits.Add(1)
		select {
		case s.hit <- n:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(keys ...jwkset.JWKMarshal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// waitForHit waits until the server has answered at least n requests.
func (s *jwksServer) waitForHit(t *testing.T, n int64) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for s.hits.Load() < n {
		select {
		case <-s.hit:
		case <-timeout:
			require.FailNow(t, "timed out waiting for JWKS request", "want %d, have %d", n, s.hits.Load())
		}
	}
}
