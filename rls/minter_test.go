package rls

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

type minterBundle struct {
	clock    *testClock
	key      testKey
	jwks     *jwksServer
	cfg      *Config
	minter   *Minter
	verifier *Verifier
}

func setupMinter(t *testing.T) *minterBundle {
	t.Helper()
	b := &minterBundle{clock: newTestClock(), key: newES256Key(t, "imported-es256")}
	b.jwks = newJWKSServer(t, b.key.jwk(t))
	b.cfg = &Config{SupabaseURL: b.jwks.URL, SigningKey: Secret(b.key.privatePEM(t)), SigningKeyID: b.key.kid}
	var err error
	b.minter, err = NewMinter(b.clock.base(), b.cfg)
	require.NoError(t, err)
	b.verifier = newTestVerifier(t, b.clock, b.cfg)
	return b
}

func (k testKey) privatePEM(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func (k testKey) privateJWK(t *testing.T) string {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k.priv, jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
		Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
	})
	require.NoError(t, err)
	raw, err := json.Marshal(j.Marshal())
	require.NoError(t, err)
	return string(raw)
}

func TestMinterTokensVerify(t *testing.T) {
	t.Parallel()
	b := setupMinter(t)
	userID := uuid.New()

	tok, err := b.minter.Mint(userID)
	require.NoError(t, err)

	claims, err := b.verifier.Verify(t.Context(), tok.JWT)
	require.NoError(t, err)
	require.Equal(t, userID, claims.UserID)
	require.Equal(t, "authenticated", claims.Role)
	require.Equal(t, b.jwks.URL+"/auth/v1", claims.Issuer)
	require.Equal(t, jwt.ClaimStrings{"authenticated"}, claims.Audience)
	require.WithinDuration(t, b.clock.Now().Add(DefaultTokenTTL), claims.ExpiresAt.Time, 0)
	require.WithinDuration(t, b.clock.Now(), claims.IssuedAt.Time, 0)
	require.WithinDuration(t, b.clock.Now().Add(2*time.Minute), tok.ExpiresAt, 0)
	require.Equal(t, "ES256", b.minter.Algorithm())

	parsed, _, err := jwt.NewParser().ParseUnverified(tok.JWT, jwt.MapClaims{})
	require.NoError(t, err)
	require.Equal(t, "imported-es256", parsed.Header["kid"])
	require.Equal(t, "ES256", parsed.Header["alg"])

	var fromJSON map[string]any
	require.NoError(t, json.Unmarshal(tok.ClaimsJSON, &fromJSON))
	require.Equal(t, userID.String(), fromJSON["sub"])
	require.Equal(t, "authenticated", fromJSON["role"])
	require.Equal(t, "authenticated", fromJSON["aud"])
	require.Equal(t, false, fromJSON["is_anonymous"])
	require.InDelta(t, float64(tok.ExpiresAt.Unix()), fromJSON["exp"], 0)
}

func TestMinterKeyFormats(t *testing.T) {
	t.Parallel()
	key := newES256Key(t, "kid-from-jwk")
	srv := newJWKSServer(t, key.jwk(t))
	clock := newTestClock()
	verifier := newTestVerifier(t, clock, &Config{SupabaseURL: srv.URL, JWTSecret: testJWTSecret})
	rsa := newRS256Key(t, "rsa")
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsa.priv)
	require.NoError(t, err)
	ecDER, err := x509.MarshalECPrivateKey(key.priv.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	sec1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))

	tests := []struct {
		name          string
		givenKey      Secret
		givenKID      string
		givenSecret   Secret
		expectAlg     string
		expectInError string
	}{
		{name: "PKCS8PEM", givenKey: Secret(key.privatePEM(t)), givenKID: key.kid, expectAlg: "ES256"},
		{name: "SEC1PEM", givenKey: Secret(sec1PEM), givenKID: key.kid, expectAlg: "ES256"},
		{name: "PEMWithEscapedNewlines", givenKey: Secret(strings.ReplaceAll(key.privatePEM(t), "\n", `\n`)), givenKID: key.kid, expectAlg: "ES256"},
		{name: "PrivateJWK", givenKey: Secret(key.privateJWK(t)), expectAlg: "ES256"},
		{name: "PrivateJWKArray", givenKey: Secret("[" + key.privateJWK(t) + "]"), expectAlg: "ES256"},
		{name: "LegacySecret", givenSecret: testJWTSecret, expectAlg: "HS256"},
		{name: "SigningKeyWinsOverSecret", givenKey: Secret(key.privateJWK(t)), givenSecret: testJWTSecret, expectAlg: "ES256"},
		{name: "NoKey", expectInError: "needs SigningKey"},
		{name: "PEMWithoutKID", givenKey: Secret(key.privatePEM(t)), expectInError: "SigningKeyID is required"},
		{name: "KIDMismatch", givenKey: Secret(key.privateJWK(t)), givenKID: "other", expectInError: "differs"},
		{name: "RSAKey", givenKey: Secret(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})), givenKID: "rsa", expectInError: "not an ES256"},
		{name: "PublicKeyPEM", givenKey: Secret(key.publicPEM(t)), givenKID: "x", expectInError: "not a private key"},
		{name: "Garbage", givenKey: "hello", givenKID: "x", expectInError: "neither a PEM block nor a JWK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMinter(clock.base(), &Config{
				SupabaseURL: srv.URL, SigningKey: tt.givenKey, SigningKeyID: tt.givenKID, JWTSecret: tt.givenSecret,
			})
			if tt.expectInError != "" {
				require.ErrorContains(t, err, tt.expectInError)
				require.NotContains(t, err.Error(), "PRIVATE")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.expectAlg, m.Algorithm())
			userID := uuid.New()
			tok, err := m.Mint(userID)
			require.NoError(t, err)
			claims, err := verifier.Verify(t.Context(), tok.JWT)
			require.NoError(t, err)
			require.Equal(t, userID, claims.UserID)
		})
	}
}

func TestMinterCache(t *testing.T) {
	t.Parallel()
	b := setupMinter(t)
	alice, bob := uuid.New(), uuid.New()

	first, err := b.minter.Mint(alice)
	require.NoError(t, err)
	forBob, err := b.minter.Mint(bob)
	require.NoError(t, err)
	require.NotEqual(t, first.JWT, forBob.JWT)

	b.clock.Advance(89 * time.Second) // 31 s left: still reused
	again, err := b.minter.Mint(alice)
	require.NoError(t, err)
	require.Equal(t, first.JWT, again.JWT)

	b.clock.Advance(time.Second) // 30 s left: replaced
	fresh, err := b.minter.Mint(alice)
	require.NoError(t, err)
	require.NotEqual(t, first.JWT, fresh.JWT)
	require.WithinDuration(t, b.clock.Now().Add(2*time.Minute), fresh.ExpiresAt, 0)
	_, err = b.verifier.Verify(t.Context(), fresh.JWT)
	require.NoError(t, err)
}

func TestMinterConcurrent(t *testing.T) {
	t.Parallel()
	b := setupMinter(t)
	users := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	var wg sync.WaitGroup
	tokens := make([]UserToken, 60)
	errs := make([]error, len(tokens))
	for i := range tokens {
		wg.Go(func() {
			if i%10 == 0 {
				b.clock.Advance(10 * time.Second)
			}
			tokens[i], errs[i] = b.minter.Mint(users[i%len(users)])
		})
	}
	wg.Wait()
	for i, tok := range tokens {
		require.NoError(t, errs[i])
		require.Equal(t, users[i%len(users)], tok.Claims.UserID)
		_, err := b.verifier.Verify(t.Context(), tok.JWT)
		require.NoError(t, err)
	}
}

func TestMinterTTL(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	m, err := NewMinter(clock.base(), &Config{SupabaseURL: "https://ref.supabase.co", JWTSecret: testJWTSecret, TokenTTL: 10 * time.Minute})
	require.NoError(t, err)
	tok, err := m.Mint(uuid.New())
	require.NoError(t, err)
	require.WithinDuration(t, clock.Now().Add(10*time.Minute), tok.ExpiresAt, 0)

	_, err = NewMinter(clock.base(), &Config{SupabaseURL: "https://ref.supabase.co", JWTSecret: testJWTSecret, TokenTTL: 11 * time.Minute})
	require.ErrorContains(t, err, "TokenTTL")

	_, err = m.Mint(uuid.Nil)
	require.Error(t, err)
}
