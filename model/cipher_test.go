package model

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func kek(id string, b byte) KEK { return KEK{ID: id, Key: bytes.Repeat([]byte{b}, 32)} }

func TestCipherRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := NewCipher([]KEK{kek("k1", 1)})
	require.NoError(t, err)
	const secret = "AIzaSyExampleExampleExampleExample123"
	ct, err := c.Encrypt(secret)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ct, "enc:v1:k1:"))
	require.NotContains(t, ct, secret)
	require.True(t, IsEncrypted(ct))
	require.Equal(t, "k1", KIDOf(ct))

	ct2, err := c.Encrypt(secret)
	require.NoError(t, err)
	require.NotEqual(t, ct, ct2, "nonces must differ")

	got, err := c.Decrypt(ct)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Legacy plaintext rows stay readable.
	got, err = c.Decrypt(secret)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	require.True(t, c.NeedsRewrite(secret))
	require.False(t, c.NeedsRewrite(ct))
}

func TestCipherFailsLoudly(t *testing.T) {
	t.Parallel()
	right, err := NewCipher([]KEK{kek("k1", 1)})
	require.NoError(t, err)
	ct, err := right.Encrypt("AIza-secret-value")
	require.NoError(t, err)

	tests := []struct {
		name          string
		givenKEKs     []KEK
		givenValue    string
		expectMessage string
	}{
		{name: "WrongKEKSameID", givenKEKs: []KEK{kek("k1", 2)}, givenValue: ct, expectMessage: "authentication failed"},
		{name: "UnknownKID", givenKEKs: []KEK{kek("k2", 1)}, givenValue: ct, expectMessage: `KEK "k1" is not configured`},
		{name: "NoKEK", givenValue: ct, expectMessage: "not configured"},
		{name: "Corrupted", givenKEKs: []KEK{kek("k1", 1)}, givenValue: ct[:len(ct)-4] + "AAAA", expectMessage: "authentication failed"},
		{name: "Malformed", givenKEKs: []KEK{kek("k1", 1)}, givenValue: "enc:v1:k1", expectMessage: "malformed"},
		{name: "FutureVersion", givenKEKs: []KEK{kek("k1", 1)}, givenValue: "enc:v2:k1:abc", expectMessage: "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewCipher(tt.givenKEKs)
			require.NoError(t, err)
			_, err = c.Decrypt(tt.givenValue)
			require.ErrorIs(t, err, ErrDecrypt)
			require.Contains(t, err.Error(), tt.expectMessage)
			require.NotContains(t, err.Error(), "AIza")
		})
	}
}

func TestCipherRotation(t *testing.T) {
	t.Parallel()
	old, err := NewCipher([]KEK{kek("2026-01", 1)})
	require.NoError(t, err)
	ct, err := old.Encrypt("AIza-rotate-me")
	require.NoError(t, err)

	rotated, err := NewCipher([]KEK{kek("2026-11", 9), kek("2026-01", 1)})
	require.NoError(t, err)
	require.Equal(t, "2026-11", rotated.ActiveKID())
	got, err := rotated.Decrypt(ct)
	require.NoError(t, err)
	require.Equal(t, "AIza-rotate-me", got)
	require.True(t, rotated.NeedsRewrite(ct))

	ct2, err := rotated.Encrypt(got)
	require.NoError(t, err)
	require.Equal(t, "2026-11", KIDOf(ct2))
	require.False(t, rotated.NeedsRewrite(ct2))

	// After the old KEK is retired, only re-encrypted values are readable.
	newOnly, err := NewCipher([]KEK{kek("2026-11", 9)})
	require.NoError(t, err)
	_, err = newOnly.Decrypt(ct)
	require.ErrorIs(t, err, ErrDecrypt)
	_, err = newOnly.Decrypt(ct2)
	require.NoError(t, err)
}

func TestNewCipherValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		givenKEKs     []KEK
		expectMessage string
	}{
		{name: "ShortKey", givenKEKs: []KEK{{ID: "k", Key: []byte("short")}}, expectMessage: "want 32"},
		{name: "BadID", givenKEKs: []KEK{{ID: "a:b", Key: make([]byte, 32)}}, expectMessage: "must match"},
		{name: "Duplicate", givenKEKs: []KEK{kek("k", 1), kek("k", 2)}, expectMessage: "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewCipher(tt.givenKEKs)
			require.ErrorContains(t, err, tt.expectMessage)
		})
	}
	c, err := NewCipher(nil)
	require.NoError(t, err)
	_, err = c.Encrypt("x")
	require.ErrorContains(t, err, "no KEK")
	require.Equal(t, "kek:k", kek("k", 1).String())
}
