package postgresttest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
	"github.com/orchable/orchable/supabase/postgresttest"
)

const (
	testAPIKey = "sb_publishable_test"
	testKID    = "test-es256"
)

var testSecret = []byte("super-secret-jwt-token-with-at-least-32-characters-long") //nolint:gochecknoglobals // test constant

type testBundle struct {
	pool   *pgxpool.Pool
	url    string // <server>/rest/v1
	es256  *ecdsa.PrivateKey
	client *http.Client
}

// setup starts a test server over this package's database that accepts
// HS256 tokens signed with testSecret and ES256 tokens whose key an httptest
// JWKS serves.
func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with the server's Config adjusted by configure.
func setupWith(t *testing.T, configure func(*postgresttest.Config)) *testBundle {
	t.Helper()
	pool := dbtest.Pool(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := key.PublicKey.ECDH()
	require.NoError(t, err)
	raw := pub.Bytes() // 0x04 || X || Y
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "EC", "crv": "P-256", "kid": testKID, "alg": "ES256", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(raw[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(raw[33:]),
	}}})
	require.NoError(t, err)
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(jwksSrv.Close)
	cfg := &postgresttest.Config{
		JWTSecret: testSecret, JWKSURL: jwksSrv.URL + "/auth/v1/.well-known/jwks.json", APIKeys: []string{testAPIKey},
	}
	if configure != nil {
		configure(cfg)
	}
	url := postgresttest.Start(t, pool, cfg)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &testBundle{pool: pool, url: url + "/rest/v1", es256: key, client: &http.Client{Transport: tr}}
}

// userToken mints an HS256 Supabase access token for user.
func userToken(t *testing.T, user uuid.UUID) string {
	t.Helper()
	return hsToken(t, userClaims(user, time.Now().Add(5*time.Minute)))
}

func userClaims(user uuid.UUID, exp time.Time) jwt.MapClaims {
	c := jwt.MapClaims(dbtest.UserClaims(user))
	c["exp"] = exp.Unix()
	c["iat"] = time.Now().Add(-time.Minute).Unix()
	return c
}

func hsToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	require.NoError(t, err)
	return tok
}

func esToken(t *testing.T, key *ecdsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tk.Header["kid"] = kid
	tok, err := tk.SignedString(key)
	require.NoError(t, err)
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// pgError decodes PostgREST's error body.
func (r *response) pgError(t *testing.T) (code, message string) {
	t.Helper()
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(r.body, &e), string(r.body))
	return e.Code, e.Message
}

type req struct {
	method string
	path   string // after /rest/v1, with the query
	token  string
	prefer string
	accept string
	body   any // marshalled to JSON unless a string
	noKey  bool
	apikey string // instead of testAPIKey
}

func (b *testBundle) do(ctx context.Context, t *testing.T, r req) *response {
	t.Helper()
	var rd io.Reader
	switch v := r.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		data, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, b.url+r.path, rd)
	require.NoError(t, err)
	switch {
	case r.apikey != "":
		hr.Header.Set("apikey", r.apikey)
	case !r.noKey:
		hr.Header.Set("apikey", testAPIKey)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.prefer != "" {
		hr.Header.Set("Prefer", r.prefer)
	}
	if r.accept != "" {
		hr.Header.Set("Accept", r.accept)
	}
	if rd != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}
}

const singular = "application/vnd.pgrst.object+json"

// count returns the number of rows matching where (as the owner, no RLS).
func (b *testBundle) count(ctx context.Context, t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, "select count(*)::int "+sql, args...).Scan(&n))
	return n
}
