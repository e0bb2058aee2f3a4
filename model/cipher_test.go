package model

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func kek(id string, b byte) KEK { return KEK{ID: id, Key: bytes.Repeat([]byte{b}, 32)} }

func newRow() KeyRow { return KeyRow{ID: uuid.New(), UserID: uuid.New()} }

// encryptV1 writes a legacy v1 ciphertext (constant additional data), as
// versions before the row binding did.
func encryptV1(t *testing.T, c *Cipher, plaintext string) string {
	t.Helper()
	aead := c.aeads[c.active]
	nonce := make([]byte, aead.NonceSize())
	_, err := rand.Read(nonce)
	require.NoError(t, err)
	return prefixV1 + c.active + ":" + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plaintext), aadV1))
}

func TestCipherRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := NewCipher([]KEK{kek("k1", 1)})
	require.NoError(t, err)
	const secret = "AIzaSyExampleExampleExampleExample123"
	row := newRow()
	ct, err := c.Encrypt(secret, row)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ct, "enc:v2:k1:"))
	require.NotContains(t, ct, secret)
	require.True(t, IsEncrypted(ct))
	require.Equal(t, "k1", KIDOf(ct))

	ct2, err := c.Encrypt(secret, row)
	require.NoError(t, err)
	require.NotEqual(t, ct, ct2, "nonces must differ")

	got, err := c.Decrypt(ct, row)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	// Legacy plaintext rows stay readable.
	got, err = c.Decrypt(secret, row)
	require.NoError(t, err)
	require.Equal(t, secret, got)
	require.True(t, c.NeedsRewrite(secret))
	require.False(t, c.NeedsRewrite(ct))

	// A row without id or owner is a programmer error, never a wildcard.
	_, err = c.Encrypt(secret, KeyRow{ID: row.ID})
	require.ErrorContains(t, err, "owner")
	_, err = c.Decrypt(ct, KeyRow{UserID: row.UserID})
	require.ErrorIs(t, err, ErrDecrypt)
}

// TestCipherLegacyV1: v1 values (constant additional data) still decrypt in
// any row, and are marked for rewriting as v2.
func TestCipherLegacyV1(t *testing.T) {
	t.Parallel()
	c, err := NewCipher([]KEK{kek("k1", 1)})
	require.NoError(t, err)
	v1 := encryptV1(t, c, "AIza-legacy")
	require.Equal(t, "k1", KIDOf(v1))
	require.True(t, c.NeedsRewrite(v1), "v1 under the active KEK is still rewritten as v2")
	got, err := c.Decrypt(v1, newRow())
	require.NoError(t, err)
	require.Equal(t, "AIza-legacy", got)
	got, err = c.Decrypt(v1, KeyRow{})
	require.NoError(t, err, "v1 is not bound to a row")
	require.Equal(t, "AIza-legacy", got)
}

// TestCipherBinding tries what an attacker who can write
// api_key_encrypted would: move a v2 ciphertext to another row, to another
// user's row, or relabel its key id. None of it decrypts.
func TestCipherBinding(t *testing.T) {
	t.Parallel()
	// Two KEKs with the same key bytes: relabelling the kid can only be
	// caught by the binding, not by a key mismatch.
	c, err := NewCipher([]KEK{kek("k1", 1), kek("k1-copy", 1), kek("k2", 2)})
	require.NoError(t, err)
	victim := newRow()
	ct, err := c.Encrypt("AIza-victim-key", victim)
	require.NoError(t, err)
	body := strings.TrimPrefix(ct, "enc:v2:k1:")

	tests := []struct {
		name       string
		givenValue string
		givenRow   KeyRow
	}{
		{name: "OtherRowSameUser", givenValue: ct, givenRow: KeyRow{ID: uuid.New(), UserID: victim.UserID}},
		{name: "OtherUserSameRowID", givenValue: ct, givenRow: KeyRow{ID: victim.ID, UserID: uuid.New()}},
		{name: "OtherUsersRow", givenValue: ct, givenRow: newRow()},
		{name: "SwappedIDs", givenValue: ct, givenRow: KeyRow{ID: victim.UserID, UserID: victim.ID}},
		{name: "SwappedKIDSameKeyBytes", givenValue: "enc:v2:k1-copy:" + body, givenRow: victim},
		{name: "SwappedKIDOtherKey", givenValue: "enc:v2:k2:" + body, givenRow: victim},
		{name: "DowngradedToV1", givenValue: "enc:v1:k1:" + body, givenRow: victim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Decrypt(tt.givenValue, tt.givenRow)
			require.ErrorIs(t, err, ErrDecrypt)
			require.Contains(t, err.Error(), "authentication failed")
			require.NotContains(t, err.Error(), "AIza")
		})
	}
	got, err := c.Decrypt(ct, victim)
	require.NoError(t, err)
	require.Equal(t, "AIza-victim-key", got)
}

func TestCipherFailsLoudly(t *testing.T) {
	t.Parallel()
	right, err := NewCipher([]KEK{kek("k1", 1)})
	require.NoError(t, err)
	row := newRow()
	ct, err := right.Encrypt("AIza-secret-value", row)
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
		{name: "Malformed", givenKEKs: []KEK{kek("k1", 1)}, givenValue: "enc:v2:k1", expectMessage: "malformed"},
		{name: "MalformedV1", givenKEKs: []KEK{kek("k1", 1)}, givenValue: "enc:v1:k1", expectMessage: "malformed"},
		{name: "FutureVersion", givenKEKs: []KEK{kek("k1", 1)}, givenValue: "enc:v3:k1:abc", expectMessage: "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewCipher(tt.givenKEKs)
			require.NoError(t, err)
			_, err = c.Decrypt(tt.givenValue, row)
			require.ErrorIs(t, err, ErrDecrypt)
			require.Contains(t, err.Error(), tt.expectMessage)
			require.NotContains(t, err.Error(), "AIza")
		})
	}
}

func TestCipherRotation(t *testing.T) {
	t.Parallel()
	row := newRow()
	old, err := NewCipher([]KEK{kek("2026-01", 1)})
	require.NoError(t, err)
	ct, err := old.Encrypt("AIza-rotate-me", row)
	require.NoError(t, err)

	rotated, err := NewCipher([]KEK{kek("2026-11", 9), kek("2026-01", 1)})
	require.NoError(t, err)
	require.Equal(t, "2026-11", rotated.ActiveKID())
	got, err := rotated.Decrypt(ct, row)
	require.NoError(t, err)
	require.Equal(t, "AIza-rotate-me", got)
	require.True(t, rotated.NeedsRewrite(ct))

	ct2, err := rotated.Encrypt(got, row)
	require.NoError(t, err)
	require.Equal(t, "2026-11", KIDOf(ct2))
	require.False(t, rotated.NeedsRewrite(ct2))

	// After the old KEK is retired, only re-encrypted values are readable.
	newOnly, err := NewCipher([]KEK{kek("2026-11", 9)})
	require.NoError(t, err)
	_, err = newOnly.Decrypt(ct, row)
	require.ErrorIs(t, err, ErrDecrypt)
	_, err = newOnly.Decrypt(ct2, row)
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
	_, err = c.Encrypt("x", newRow())
	require.ErrorContains(t, err, "no KEK")
	require.Equal(t, "kek:k", kek("k", 1).String())
}
