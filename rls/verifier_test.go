package rls

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/apierror"
)

const testJWTSecret = "super-secret-jwt-token-with-at-least-32-characters-long"

type verifierBundle struct {
	clock    *testClock
	jwks     *jwksServer
	issuer   string
	es       testKey // in the project's JWKS
	rs       testKey // in the project's JWKS
	esNoALG  testKey // in the project's JWKS, published without "alg"
	userID   uuid.UUID
	verifier *Verifier // JWKS + HS256
	jwksOnly *Verifier // JWKS, no HS256 secret
}

func setupVerifier(t *testing.T) *verifierBundle {
	t.Helper()
	b := &verifierBundle{
		clock:   newTestClock(),
		es:      newES256Key(t, "es-key-1"),
		rs:      newRS256Key(t, "rs-key-1"),
		esNoALG: newES256Key(t, "es-key-noalg"),
		userID:  uuid.New(),
	}
	b.jwks = newJWKSServer(t, b.es.jwk(t), b.rs.jwk(t), b.esNoALG.jwkWithALG(t, ""))
	b.issuer = b.jwks.URL + "/auth/v1"
	b.verifier = newTestVerifier(t, b.clock, &Config{SupabaseURL: b.jwks.URL, JWTSecret: testJWTSecret})
	b.jwksOnly = newTestVerifier(t, b.clock, &Config{SupabaseURL: b.jwks.URL})
	return b
}

func newTestVerifier(t *testing.T, clock *testClock, cfg *Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(t.Context(), clock.base(), cfg)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

func (b *verifierBundle) claims() jwt.MapClaims { return userClaims(b.issuer, b.clock.Now(), b.userID) }

func (b *verifierBundle) claimsWith(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := b.claims()
	edit(c)
	return c
}

// segment base64url-encodes s as a JWT segment.
func segment(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestVerifierSecurityCorpus is the JWT test corpus: every forged, expired or misdirected token
// must be rejected with its specific reason, and genuine tokens of each algorithm accepted.
func TestVerifierSecurityCorpus(t *testing.T) {
	t.Parallel()
	b := setupVerifier(t)
	now := b.clock.Now()
	attacker := newES256Key(t, b.es.kid) // same kid as the project's key, different key
	attackerRS := newRS256Key(t, b.rs.kid)
	otherProject := newES256Key(t, "other-project-key")
	otherJWKS := newJWKSServer(t, otherProject.jwk(t))
	valid := b.es.sign(t, b.claims())
	parts := strings.Split(valid, ".")

	tests := []struct {
		name         string
		givenToken   func(t *testing.T) string
		whenJWKSOnly bool
		expectErr    error // nil means accepted
	}{
		// Accepted.
		{name: "ValidES256", givenToken: func(t *testing.T) string { t.Helper(); return valid }},
		{name: "ValidRS256", givenToken: func(t *testing.T) string { t.Helper(); return b.rs.sign(t, b.claims()) }},
		{name: "ValidHS256", givenToken: func(t *testing.T) string {
			t.Helper()
			t.Helper()
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", b.claims())
		}},
		{name: "ValidHS256WithKid", givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "legacy-kid", b.claims())
		}},
		{name: "ValidKeyWithoutALGInJWKS", givenToken: func(t *testing.T) string { t.Helper(); return b.esNoALG.sign(t, b.claims()) }},
		{name: "ValidAnonymousSignIn", givenToken: func(t *testing.T) string {
			t.Helper()
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["is_anonymous"] = true; delete(c, "email") }))
		}},
		{name: "ValidAudienceArray", givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["aud"] = []string{"other", "authenticated"} }))
		}},
		{name: "ValidExpiredWithinLeeway", givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["exp"] = now.Add(-29 * time.Second).Unix() }))
		}},
		{name: "ValidNotBeforeWithinLeeway", givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["nbf"] = now.Add(29 * time.Second).Unix() }))
		}},

		// Algorithm attacks.
		{name: "AlgNone", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, b.es.kid, b.claims())
		}},
		{name: "AlgNoneMixedCase", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return segment(`{"alg":"nOnE","typ":"JWT"}`) + "." + parts[1] + "."
		}},
		{name: "AlgMissing", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return segment(`{"typ":"JWT","kid":"es-key-1"}`) + "." + parts[1] + "." + parts[2]
		}},
		{name: "AlgConfusionHS256WithESPublicKey", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, b.es.publicPEM(t), b.es.kid, b.claims())
		}},
		{name: "AlgConfusionHS256WithRSPublicKey", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, b.rs.publicPEM(t), b.rs.kid, b.claims())
		}},
		{name: "AlgConfusionHS256WithoutSecretConfigured", whenJWKSOnly: true, expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, b.es.publicPEM(t), b.es.kid, b.claims())
		}},
		{name: "LegacyHS256WithoutSecretConfigured", whenJWKSOnly: true, expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", b.claims())
		}},
		{name: "AlgHS512", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS512, []byte(testJWTSecret), "", b.claims())
		}},
		{name: "AlgES384", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return segment(`{"alg":"ES384","kid":"es-key-1"}`) + "." + parts[1] + "." + parts[2]
		}},
		{name: "AlgPS256WithRSAKey", expectErr: ErrAlgorithmNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodPS256, b.rs.priv, b.rs.kid, b.claims())
		}},
		{name: "RS256TokenNamingESKey", expectErr: ErrKeyAlgorithmMismatch, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodRS256, b.rs.priv, b.es.kid, b.claims())
		}},
		{name: "RS256TokenNamingESKeyWithoutALG", expectErr: ErrKeyAlgorithmMismatch, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodRS256, b.rs.priv, b.esNoALG.kid, b.claims())
		}},

		// Keys.
		{name: "UnknownKid", expectErr: ErrUnknownKeyID, givenToken: func(t *testing.T) string {
			t.Helper()
			return newES256Key(t, "no-such-kid").sign(t, b.claims())
		}},
		{name: "MissingKidOnES256", expectErr: ErrKeyIDMissing, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodES256, b.es.priv, "", b.claims())
		}},
		{name: "WrongKeySameKid", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return attacker.sign(t, b.claims())
		}},
		{name: "WrongRSAKeySameKid", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return attackerRS.sign(t, b.claims())
		}},
		{name: "WrongHS256Secret", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, []byte("not-the-project-secret-not-the-project-secret"), "", b.claims())
		}},
		{name: "ServiceRoleSignedByForeignKey", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return attacker.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["role"] = "service_role" }))
		}},
		{name: "AnotherProjectsJWKS", expectErr: ErrUnknownKeyID, givenToken: func(t *testing.T) string {
			t.Helper()
			return otherProject.sign(t, userClaims(otherJWKS.URL+"/auth/v1", now, b.userID))
		}},
		{name: "TamperedPayload", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			other := b.claimsWith(func(c jwt.MapClaims) { c["sub"] = uuid.NewString() })
			forged := strings.Split(b.es.sign(t, other), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}},
		{name: "TamperedHeaderKid", expectErr: ErrKeyAlgorithmMismatch, givenToken: func(t *testing.T) string {
			t.Helper()
			return segment(`{"alg":"ES256","kid":"rs-key-1","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]
		}},
		{name: "SignatureStripped", expectErr: ErrSignatureInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return parts[0] + "." + parts[1] + "."
		}},

		// Time.
		{name: "Expired", expectErr: ErrTokenExpired, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }))
		}},
		{name: "ExpiryMissing", expectErr: ErrExpiryMissing, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { delete(c, "exp") }))
		}},
		{name: "NotBeforeInFuture", expectErr: ErrTokenNotYetValid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }))
		}},
		{name: "IssuedInFuture", expectErr: ErrTokenUsedBeforeIssued, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }))
		}},

		// Claims.
		{name: "WrongAudience", expectErr: ErrAudienceInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["aud"] = "anon" }))
		}},
		{name: "AudienceMissing", expectErr: ErrAudienceInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { delete(c, "aud") }))
		}},
		{name: "WrongIssuer", expectErr: ErrIssuerInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["iss"] = "https://other.supabase.co/auth/v1" }))
		}},
		{name: "LegacyKeyIssuer", expectErr: ErrIssuerInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return signWith(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", b.claimsWith(func(c jwt.MapClaims) { c["iss"] = "supabase" }))
		}},
		{name: "SubjectMissing", expectErr: ErrSubjectMissing, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { delete(c, "sub") }))
		}},
		{name: "SubjectNotUUID", expectErr: ErrSubjectInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["sub"] = "user-123" }))
		}},
		{name: "SubjectUUIDWithoutDashes", expectErr: ErrSubjectInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["sub"] = strings.ReplaceAll(b.userID.String(), "-", "") }))
		}},
		{name: "SubjectNilUUID", expectErr: ErrSubjectInvalid, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["sub"] = uuid.Nil.String() }))
		}},
		{name: "ServiceRoleFromProjectKey", expectErr: ErrRoleNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["role"] = "service_role" }))
		}},
		{name: "AnonRole", expectErr: ErrRoleNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["role"] = "anon" }))
		}},
		{name: "RoleMissing", expectErr: ErrRoleNotAllowed, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { delete(c, "role") }))
		}},
		{name: "ExpiryWrongType", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }))
		}},

		// Shape.
		{name: "Empty", expectErr: ErrMissingToken, givenToken: func(t *testing.T) string { t.Helper(); return "" }},
		{name: "Oversized", expectErr: ErrTokenTooLarge, givenToken: func(t *testing.T) string {
			t.Helper()
			t.Helper()
			return b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) {
				c["user_metadata"] = map[string]any{"bio": strings.Repeat("a", 16<<10)}
			}))
		}},
		{name: "MalformedBase64Header", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return "eyJ!bGciOiJFUzI1NiJ9." + parts[1] + "." + parts[2]
		}},
		{name: "MalformedBase64Payload", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return parts[0] + "." + parts[1][:10] + "*" + parts[1][11:] + "." + parts[2]
		}},
		{name: "MalformedBase64Signature", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return parts[0] + "." + parts[1] + "." + parts[2][:10] + "$" + parts[2][11:]
		}},
		{name: "PaddedBase64", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return parts[0] + "." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2]
		}},
		{name: "PayloadNotJSON", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return parts[0] + "." + segment("not json") + "." + parts[2]
		}},
		{name: "HeaderNotJSON", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			return segment("[1,2]") + "." + parts[1] + "." + parts[2]
		}},
		{name: "OneSegment", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string { t.Helper(); return parts[0] }},
		{name: "TwoSegments", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string { t.Helper(); return parts[0] + "." + parts[1] }},
		{name: "FourSegments", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string { t.Helper(); return valid + "." + parts[2] }},
		{name: "FiveSegmentsJWE", expectErr: ErrTokenMalformed, givenToken: func(t *testing.T) string {
			t.Helper()
			t.Helper()
			t.Helper()
			t.Helper()
			return segment(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + ".a.b.c.d"
		}},
	}
	accepted, rejected := 0, 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := b.verifier
			if tt.whenJWKSOnly {
				v = b.jwksOnly
			}
			claims, err := v.Verify(t.Context(), tt.givenToken(t))
			if tt.expectErr == nil {
				require.NoError(t, err)
				require.Equal(t, b.userID, claims.UserID)
				return
			}
			require.ErrorIs(t, err, tt.expectErr)
			var rerr *apierror.Error
			require.ErrorAs(t, err, &rerr)
			require.Equal(t, http.StatusUnauthorized, rerr.StatusCode())
			require.Equal(t, tt.expectErr.Error(), rerr.Message)
			require.Nil(t, claims)
		})
		if tt.expectErr == nil {
			accepted++
		} else {
			rejected++
		}
	}
	t.Logf("JWT security corpus: %d cases (%d must be accepted, %d must be rejected)", len(tests), accepted, rejected)
}

func TestVerifierErrorDescribesResponse(t *testing.T) {
	t.Parallel()
	b := setupVerifier(t)
	token := b.es.sign(t, b.claimsWith(func(c jwt.MapClaims) { c["exp"] = b.clock.Now().Add(-time.Hour).Unix() }))

	_, err := b.verifier.Verify(t.Context(), token)

	var rerr *apierror.Error
	require.ErrorAs(t, err, &rerr)
	require.Equal(t, CodeInvalidToken, rerr.Code)
	require.Equal(t, `Bearer error="invalid_token", error_description="token expired"`, rerr.Header.Get("WWW-Authenticate"))
	require.NotContains(t, err.Error(), token)
	require.NotContains(t, err.Error(), strings.Split(token, ".")[1])
}

func TestVerifierRefreshesOnUnknownKID(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	userID := uuid.New()
	oldKey, newKey := newES256Key(t, "key-old"), newES256Key(t, "key-new")
	srv := newJWKSServer(t, oldKey.jwk(t))
	v := newTestVerifier(t, clock, &Config{SupabaseURL: srv.URL, JWKSUnknownKIDInterval: time.Nanosecond})
	claims := userClaims(srv.URL+"/auth/v1", clock.Now(), userID)
	oldToken := oldKey.sign(t, claims)

	_, err := v.Verify(t.Context(), oldToken)
	require.NoError(t, err)

	// Rotate: the new key goes live beside the old one.
	srv.setKeys(oldKey.jwk(t), newKey.jwk(t))
	hits := srv.hits.Load()
	got, err := v.Verify(t.Context(), newKey.sign(t, claims))
	require.NoError(t, err)
	require.Equal(t, userID, got.UserID)
	require.Equal(t, hits+1, srv.hits.Load(), "the unknown kid should cause exactly one fetch")
	_, err = v.Verify(t.Context(), oldToken)
	require.NoError(t, err, "tokens of the previous key keep working until it is revoked")

	// Revoke the old key; the next refresh (here forced by another unknown kid) drops it.
	srv.setKeys(newKey.jwk(t))
	_, err = v.Verify(t.Context(), newES256Key(t, "key-unknown").sign(t, claims))
	require.ErrorIs(t, err, ErrUnknownKeyID)
	_, err = v.Verify(t.Context(), oldToken)
	require.ErrorIs(t, err, ErrUnknownKeyID)
	_, err = v.Verify(t.Context(), newKey.sign(t, claims))
	require.NoError(t, err)
}

func TestVerifierRefreshesPeriodically(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	oldKey, newKey := newES256Key(t, "key-old"), newES256Key(t, "key-new")
	srv := newJWKSServer(t, oldKey.jwk(t))
	v := newTestVerifier(t, clock, &Config{
		SupabaseURL:            srv.URL,
		JWKSRefreshInterval:    10 * time.Millisecond,
		JWKSUnknownKIDInterval: time.Hour,
	})
	claims := userClaims(srv.URL+"/auth/v1", clock.Now(), uuid.New())
	oldToken := oldKey.sign(t, claims)
	_, err := v.Verify(t.Context(), oldToken)
	require.NoError(t, err)
	// Spend the one unknown-kid refresh the limiter allows, so only the periodic refresh is left.
	_, err = v.Verify(t.Context(), newES256Key(t, "key-unknown").sign(t, claims))
	require.ErrorIs(t, err, ErrUnknownKeyID)

	srv.setKeys(newKey.jwk(t))           // rotate and revoke in one step
	srv.waitForHit(t, srv.hits.Load()+2) // the second request starts after the first was stored

	_, err = v.Verify(t.Context(), newKey.sign(t, claims))
	require.NoError(t, err)
	_, err = v.Verify(t.Context(), oldToken)
	require.ErrorIs(t, err, ErrUnknownKeyID)
}

func TestVerifierRateLimitsUnknownKIDRefresh(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	key := newES256Key(t, "key-1")
	srv := newJWKSServer(t, key.jwk(t))
	v := newTestVerifier(t, clock, &Config{SupabaseURL: srv.URL, JWKSUnknownKIDInterval: time.Hour})
	claims := userClaims(srv.URL+"/auth/v1", clock.Now(), uuid.New())
	require.Equal(t, int64(1), srv.hits.Load(), "one fetch at startup")

	for i := range 5 {
		start := time.Now()
		_, err := v.Verify(t.Context(), newES256Key(t, "forged-"+string(rune('a'+i))).sign(t, claims))
		require.ErrorIs(t, err, ErrUnknownKeyID)
		require.Less(t, time.Since(start), 2*time.Second, "a rate-limited unknown kid must not block")
	}

	require.Equal(t, int64(2), srv.hits.Load(), "only the first unknown kid may cause a fetch")
}

func TestVerifierStartsWhileJWKSUnreachable(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	srv := newJWKSServer(t)
	url := srv.URL
	srv.Close()
	v := newTestVerifier(t, clock, &Config{SupabaseURL: url, JWKSHTTPTimeout: time.Second})

	_, err := v.Verify(t.Context(), newES256Key(t, "k").sign(t, userClaims(url+"/auth/v1", clock.Now(), uuid.New())))

	require.ErrorIs(t, err, ErrUnknownKeyID)
}

func TestVerifierJWKSResponseIsCapped(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	key := newES256Key(t, "key-1")
	big := key.jwk(t)
	big.X5C = []string{strings.Repeat("A", maxJWKSBytes)}
	srv := newJWKSServer(t, big)
	v := newTestVerifier(t, clock, &Config{SupabaseURL: srv.URL, JWKSUnknownKIDInterval: time.Hour})

	_, err := v.Verify(t.Context(), key.sign(t, userClaims(srv.URL+"/auth/v1", clock.Now(), uuid.New())))

	require.ErrorIs(t, err, ErrUnknownKeyID)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		givenConfig   Config
		expectInError string
	}{
		{name: "Defaults", givenConfig: Config{SupabaseURL: "https://ref.supabase.co"}},
		{name: "MissingURL", givenConfig: Config{}, expectInError: "SupabaseURL is required"},
		{name: "BadURL", givenConfig: Config{SupabaseURL: "ref.supabase.co"}, expectInError: "SupabaseURL"},
		{name: "RefreshTooSlow", givenConfig: Config{SupabaseURL: "https://x.co", JWKSRefreshInterval: time.Hour}, expectInError: "JWKSRefreshInterval"},
		{name: "TTLTooLong", givenConfig: Config{SupabaseURL: "https://x.co", TokenTTL: 11 * time.Minute}, expectInError: "TokenTTL"},
		{name: "NothingToVerifyWith", givenConfig: Config{SupabaseURL: "https://x.co", JWKSDisabled: true}, expectInError: "JWKSDisabled"},
		{name: "BadWebhookMode", givenConfig: Config{SupabaseURL: "https://x.co", WebhookMode: "hmac"}, expectInError: "WebhookMode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.givenConfig.WithDefaults().Validate()
			if tt.expectInError == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.expectInError)
		})
	}
}
