package model

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// Ciphertext formats of user_api_keys.api_key_encrypted:
//
//   - enc:v2:<kid>:<base64(nonce|ciphertext)> (written now): the AES-GCM
//     additional data names the table, the column, the key id, the row id and
//     the owner's user id, so the value decrypts only in the row it was
//     written for. Copied to another row (of the same user or of another
//     user), or with its key id swapped, it fails to authenticate.
//   - enc:v1:<kid>:<base64(nonce|ciphertext)> (legacy, read only): constant
//     additional data, so a v1 value decrypts in any row. `orchable keys
//     encrypt` rewrites v1 values as v2.
const (
	prefixV1 = "enc:v1:"
	prefixV2 = "enc:v2:"
)

// table is the one place API keys are stored; it is part of the v2
// additional data.
const table = "public.user_api_keys"

// aadV1 is the constant additional data of legacy v1 ciphertexts.
var aadV1 = []byte("orchable/user_api_keys.api_key_encrypted") //nolint:gochecknoglobals // constant bytes

// kidPattern is what a key id may look like (it is embedded in ciphertexts).
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`) // compiled constant

// ErrDecrypt is returned when a ciphertext cannot be decrypted: unknown key
// id, authentication failure (wrong KEK, corrupted value, or a value that
// belongs to another row or owner) or an unsupported format.
var ErrDecrypt = errors.New("cannot decrypt API key")

// KEK is a key-encryption key: 32 bytes for AES-256-GCM, with an id that is
// written into every ciphertext it produces.
type KEK struct {
	ID  string
	Key []byte `json:"-"`
}

// String never prints the key.
func (k KEK) String() string { return "kek:" + k.ID }

// KeyRow is the user_api_keys row a ciphertext belongs to. Version 2
// ciphertexts are bound to it: they decrypt only with the same row id and
// owner they were encrypted with.
type KeyRow struct {
	// ID is user_api_keys.id.
	ID uuid.UUID
	// UserID is user_api_keys.user_id, the owner of the key.
	UserID uuid.UUID
}

// aad is the v2 additional data for a value of row encrypted under kid. The
// parts have fixed shapes (kid matches kidPattern, ids are canonical UUIDs)
// and are separated by NUL, so two different bindings never share bytes.
func (r KeyRow) aad(kid string) []byte {
	return []byte("orchable/enc:v2\x00table=" + table + "\x00column=api_key_encrypted\x00kid=" + kid +
		"\x00id=" + r.ID.String() + "\x00user_id=" + r.UserID.String())
}

func (r KeyRow) validate() error {
	if r.ID == uuid.Nil || r.UserID == uuid.Nil {
		return errors.New("the row id and the owner's user id are required")
	}
	return nil
}

// Cipher encrypts and decrypts API keys at rest with AES-256-GCM.
type Cipher struct {
	active string
	aeads  map[string]cipher.AEAD
}

// NewCipher builds a Cipher. The first KEK encrypts; all of them decrypt.
// With no KEKs the Cipher only reads legacy plaintext values.
func NewCipher(keks []KEK) (*Cipher, error) {
	c := &Cipher{aeads: make(map[string]cipher.AEAD, len(keks))}
	for i, k := range keks {
		if !kidPattern.MatchString(k.ID) {
			return nil, fmt.Errorf("KEK %d: id %q must match %s", i, k.ID, kidPattern)
		}
		if len(k.Key) != 32 {
			return nil, fmt.Errorf("KEK %s: key is %d bytes, want 32 (AES-256)", k.ID, len(k.Key))
		}
		if _, dup := c.aeads[k.ID]; dup {
			return nil, fmt.Errorf("KEK %s: duplicate id", k.ID)
		}
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return nil, fmt.Errorf("KEK %s: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("KEK %s: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
		if i == 0 {
			c.active = k.ID
		}
	}
	return c, nil
}

// ActiveKID is the id of the KEK used to encrypt ("" without KEKs).
func (c *Cipher) ActiveKID() string { return c.active }

// Encrypt returns enc:v2:<kid>:<base64(nonce|ciphertext)> under the active
// KEK, bound to row.
func (c *Cipher) Encrypt(plaintext string, row KeyRow) (string, error) {
	if c.active == "" {
		return "", errors.New("cannot encrypt API key: no KEK configured")
	}
	if err := row.validate(); err != nil {
		return "", fmt.Errorf("cannot encrypt API key: %w", err)
	}
	aead := c.aeads[c.active]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("error reading nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), row.aad(c.active))
	return prefixV2 + c.active + ":" + base64.StdEncoding.EncodeToString(sealed), nil
}

// IsEncrypted reports whether a stored value is a ciphertext (rather than a
// legacy plaintext key).
func IsEncrypted(stored string) bool { return strings.HasPrefix(stored, "enc:") }

// versionOf returns 1 or 2 for a ciphertext of that format, else 0.
func versionOf(stored string) int {
	switch {
	case strings.HasPrefix(stored, prefixV2):
		return 2
	case strings.HasPrefix(stored, prefixV1):
		return 1
	}
	return 0
}

// KIDOf returns the key id of a ciphertext, or "" for plaintext and
// unsupported formats.
func KIDOf(stored string) string {
	if versionOf(stored) == 0 {
		return ""
	}
	kid, _, _ := strings.Cut(stored[len(prefixV2):], ":")
	return kid
}

// Decrypt returns the API key from the value stored in row. Legacy plaintext
// values are returned as they are, legacy v1 ciphertexts decrypt in any row,
// and v2 ciphertexts only in the row and for the owner they were written
// for. A ciphertext that does not decrypt fails loudly with ErrDecrypt; the
// error never contains key material.
func (c *Cipher) Decrypt(stored string, row KeyRow) (string, error) {
	if !IsEncrypted(stored) {
		return stored, nil
	}
	version := versionOf(stored)
	if version == 0 {
		return "", fmt.Errorf("%w: unsupported ciphertext version", ErrDecrypt)
	}
	kid, body, ok := strings.Cut(stored[len(prefixV2):], ":")
	if !ok {
		return "", fmt.Errorf("%w: malformed ciphertext", ErrDecrypt)
	}
	aead, ok := c.aeads[kid]
	if !ok {
		return "", fmt.Errorf("%w: KEK %q is not configured", ErrDecrypt, kid)
	}
	raw, err := base64.StdEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("%w: malformed ciphertext for KEK %q", ErrDecrypt, kid)
	}
	aad := aadV1
	if version == 2 {
		if err := row.validate(); err != nil {
			return "", fmt.Errorf("%w: %w", ErrDecrypt, err)
		}
		aad = row.aad(kid)
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad)
	if err != nil {
		if version == 2 {
			return "", fmt.Errorf("%w: authentication failed with KEK %q (wrong key, corrupted value, "+
				"or a ciphertext written for another row, owner or key id)", ErrDecrypt, kid)
		}
		return "", fmt.Errorf("%w: authentication failed with KEK %q (wrong key or corrupted value)", ErrDecrypt, kid)
	}
	return string(plain), nil
}

// NeedsRewrite reports whether a stored value should be (re-)encrypted: it is
// plaintext, a legacy v1 ciphertext, or encrypted under a KEK other than the
// active one.
func (c *Cipher) NeedsRewrite(stored string) bool {
	return c.active != "" && (versionOf(stored) != 2 || KIDOf(stored) != c.active)
}
