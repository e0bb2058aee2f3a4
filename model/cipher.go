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
)

// ciphertextPrefix starts every encrypted api_key_encrypted value:
// enc:v1:<kid>:<base64(nonce|ciphertext)>.
const ciphertextPrefix = "enc:v1:"

// aad binds ciphertexts to their purpose, so a value encrypted for another
// use of the same KEK does not decrypt here.
var aad = []byte("orchable/user_api_keys.api_key_encrypted") //nolint:gochecknoglobals // constant bytes

// kidPattern is what a key id may look like (it is embedded in ciphertexts).
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`) //nolint:gochecknoglobals // compiled constant

// ErrDecrypt is returned when a ciphertext cannot be decrypted: unknown key id
// or authentication failure (wrong KEK, corrupted value).
var ErrDecrypt = errors.New("cannot decrypt API key")

// KEK is a key-encryption key: 32 bytes for AES-256-GCM, with an id that is
// written into every ciphertext it produces.
type KEK struct {
	ID  string
	Key []byte `json:"-"`
}

// String never prints the key.
func (k KEK) String() string { return "kek:" + k.ID }

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

// Encrypt returns enc:v1:<kid>:<base64(nonce|ciphertext)>.
func (c *Cipher) Encrypt(plaintext string) (string, error) {
	if c.active == "" {
		return "", errors.New("cannot encrypt API key: no KEK configured")
	}
	aead := c.aeads[c.active]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("error reading nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), aad)
	return ciphertextPrefix + c.active + ":" + base64.StdEncoding.EncodeToString(sealed), nil
}

// IsEncrypted reports whether a stored value is a ciphertext (rather than a
// legacy plaintext key).
func IsEncrypted(stored string) bool { return strings.HasPrefix(stored, "enc:") }

// KIDOf returns the key id of a ciphertext, or "" for plaintext.
func KIDOf(stored string) string {
	if !strings.HasPrefix(stored, ciphertextPrefix) {
		return ""
	}
	kid, _, _ := strings.Cut(strings.TrimPrefix(stored, ciphertextPrefix), ":")
	return kid
}

// Decrypt returns the API key from a stored value. Legacy plaintext values are
// returned as they are. A ciphertext that does not decrypt fails loudly with
// ErrDecrypt; the error never contains key material.
func (c *Cipher) Decrypt(stored string) (string, error) {
	if !IsEncrypted(stored) {
		return stored, nil
	}
	if !strings.HasPrefix(stored, ciphertextPrefix) {
		return "", fmt.Errorf("%w: unsupported ciphertext version", ErrDecrypt)
	}
	kid, body, ok := strings.Cut(strings.TrimPrefix(stored, ciphertextPrefix), ":")
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
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad)
	if err != nil {
		return "", fmt.Errorf("%w: authentication failed with KEK %q (wrong key or corrupted value)", ErrDecrypt, kid)
	}
	return string(plain), nil
}

// NeedsRewrite reports whether a stored value should be (re-)encrypted: it is
// plaintext, or encrypted under a KEK other than the active one.
func (c *Cipher) NeedsRewrite(stored string) bool {
	return c.active != "" && KIDOf(stored) != c.active
}
