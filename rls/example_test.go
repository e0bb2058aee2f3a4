package rls_test

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice/baseservicetest"
	"github.com/orchable/orchable/rls"
)

// A token minted for a task's owner verifies like a token Supabase Auth issued to that user.
func ExampleMinter_Mint() {
	ctx := context.Background()
	base := baseservicetest.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)).Archetype(nil)
	cfg := &rls.Config{
		SupabaseURL:  "https://ref.supabase.co",
		JWTSecret:    "legacy-jwt-secret-with-at-least-32-characters",
		JWKSDisabled: true, // HS256 only, so this example needs no JWKS server
	}
	minter, err := rls.NewMinter(base, cfg)
	if err != nil {
		panic(err)
	}
	verifier, err := rls.NewVerifier(ctx, base, cfg)
	if err != nil {
		panic(err)
	}
	defer verifier.Close()

	owner := uuid.MustParse("7d9f4b8e-2a31-4c5e-9f0a-1b2c3d4e5f60")
	tok, err := minter.Mint(owner)
	if err != nil {
		panic(err)
	}
	claims, err := verifier.Verify(ctx, tok.JWT)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.UserID, claims.Role, tok.ExpiresAt.Format(time.RFC3339))
	fmt.Println(string(tok.ClaimsJSON))
	// Output:
	// 7d9f4b8e-2a31-4c5e-9f0a-1b2c3d4e5f60 authenticated 2026-11-26T12:02:00Z
	// {"iss":"https://ref.supabase.co/auth/v1","sub":"7d9f4b8e-2a31-4c5e-9f0a-1b2c3d4e5f60","exp":1795694520,"iat":1795694400,"role":"authenticated","aal":"aal1","is_anonymous":false,"aud":"authenticated"}
}

// A secret prints as [redacted] wherever it ends up.
func ExampleSecret() {
	key := rls.Secret("sb_secret_123")
	fmt.Println(key, fmt.Sprintf("%#v", key))
	// Output: [redacted] [redacted]
}
