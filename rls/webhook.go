package rls

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/baseservice"
)

// Standard Webhooks header names (https://www.standardwebhooks.com/).
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

const (
	maxWebhookIDBytes        = 256
	maxWebhookSignatureBytes = 4096
	minWebhookSecretBytes    = 24 // the Standard Webhooks minimum
	minSharedSecretBytes     = 16
)

// WebhookVerifier authenticates incoming Supabase database webhooks in one of two modes
// (Config.WebhookMode):
//
//   - WebhookModeSharedSecret: the header Config.WebhookSecretHeader must equal
//     Config.WebhookSecret (compared in constant time). Supabase database webhooks are not signed;
//     this is what a webhook created in Studio can send (add the header with a secret value).
//   - WebhookModeStandard: a Standard Webhooks signature: webhook-signature holds one or more
//     space-separated "v1,<base64 HMAC-SHA256>" entries over "<webhook-id>.<webhook-timestamp>.<body>"
//     with the key from Config.WebhookSigningSecret ("whsec_<base64>"); the timestamp must be within
//     Config.WebhookTolerance (default 5 min) of now, and a webhook-id already accepted within that
//     window is rejected. The opt-in trigger in webhooks/signing.sql
//     (orchable webhooks signing install) sends exactly this.
//
// It is safe for concurrent use. The replay cache lives in memory, per instance: with several
// instances, a replay sent to another instance is not caught here, so handlers must still be
// idempotent (they are: enqueueing is ON CONFLICT DO NOTHING).
type WebhookVerifier struct {
	baseservice.BaseService

	mode      WebhookMode
	header    string
	secret    [sha256.Size]byte // SHA-256 of the shared secret, so comparison time is independent of its length
	key       []byte            // decoded Standard Webhooks secret
	tolerance time.Duration
	maxBody   int64
	replay    *replayCache
}

// NewWebhookVerifier builds a WebhookVerifier, failing (naming the field) when the chosen mode
// has no usable secret.
func NewWebhookVerifier(archetype *baseservice.Archetype, cfg *Config) (*WebhookVerifier, error) {
	cfg = cfg.WithDefaults()
	w := baseservice.Init(archetype, &WebhookVerifier{
		mode:      cfg.WebhookMode,
		header:    http.CanonicalHeaderKey(cfg.WebhookSecretHeader),
		tolerance: cfg.WebhookTolerance,
		maxBody:   cfg.WebhookMaxBodyBytes,
	})
	if w.tolerance <= 0 || w.maxBody <= 0 || cfg.WebhookReplayCacheSize <= 0 {
		return nil, errors.New("rls.Config.WebhookTolerance, WebhookMaxBodyBytes and WebhookReplayCacheSize must be positive")
	}
	switch w.mode {
	case WebhookModeSharedSecret:
		if len(cfg.WebhookSecret.Reveal()) < minSharedSecretBytes {
			return nil, fmt.Errorf("rls.Config.WebhookSecret must be at least %d characters in mode %q", minSharedSecretBytes, w.mode)
		}
		w.secret = sha256.Sum256([]byte(cfg.WebhookSecret.Reveal()))
	case WebhookModeStandard:
		key, err := decodeWebhookSecret(cfg.WebhookSigningSecret.Reveal())
		if err != nil {
			return nil, fmt.Errorf("rls.Config.WebhookSigningSecret: %w", err)
		}
		w.key = key
		w.replay = newReplayCache(cfg.WebhookReplayCacheSize)
	default:
		return nil, fmt.Errorf("rls.Config.WebhookMode %q must be %q or %q", w.mode, WebhookModeSharedSecret, WebhookModeStandard)
	}
	return w, nil
}

// decodeWebhookSecret decodes "whsec_<base64>" (also accepting the "v1,whsec_…" form Supabase
// shows for Auth Hooks, and bare base64).
func decodeWebhookSecret(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v1,")
	s = strings.TrimPrefix(s, "whsec_")
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New(`must be "whsec_" followed by base64`)
	}
	if len(key) < minWebhookSecretBytes {
		return nil, fmt.Errorf("must decode to at least %d bytes", minWebhookSecretBytes)
	}
	return key, nil
}

// Verify authenticates one webhook from its headers and raw body. It returns nil or an *apierror.Error
// wrapping one of the ErrWebhook reasons: 401 for authentication failures, 409 for a replayed
// webhook-id. In Standard mode a successful call records the webhook-id, so call it once per
// delivery.
func (w *WebhookVerifier) Verify(h http.Header, body []byte) error {
	if w.mode == WebhookModeSharedSecret {
		return w.verifySecret(h)
	}
	id, tsHeader, sigHeader := h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp), h.Get(HeaderWebhookSignature)
	if id == "" || tsHeader == "" || sigHeader == "" {
		return webhookError(ErrWebhookHeadersMissing, nil)
	}
	if len(id) > maxWebhookIDBytes || strings.ContainsAny(id, ". \t") {
		return webhookError(ErrWebhookIDInvalid, nil)
	}
	if len(sigHeader) > maxWebhookSignatureBytes {
		return webhookError(ErrWebhookSignatureTooLarge, nil)
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return webhookError(ErrWebhookTimestampInvalid, nil)
	}
	now := w.Time.Now()
	sent := time.Unix(ts, 0)
	if sent.Before(now.Add(-w.tolerance)) || sent.After(now.Add(w.tolerance)) {
		return webhookError(ErrWebhookTimestampExpired, fmt.Errorf("timestamp %d, now %d", ts, now.Unix()))
	}
	if !matchesSignature(SignWebhook(w.key, id, ts, body), sigHeader) {
		return webhookError(ErrWebhookSignatureInvalid, nil)
	}
	if !w.replay.add(id, sent.Add(w.tolerance), now) {
		return webhookError(ErrWebhookReplayed, nil)
	}
	return nil
}

func (w *WebhookVerifier) verifySecret(h http.Header) error {
	got := h.Values(w.header)
	if len(got) == 0 || got[0] == "" {
		return webhookError(ErrWebhookSecretMissing, nil)
	}
	sum := sha256.Sum256([]byte(got[0]))
	if len(got) != 1 || subtle.ConstantTimeCompare(sum[:], w.secret[:]) != 1 {
		return webhookError(ErrWebhookSecretMismatch, nil)
	}
	return nil
}

// SignWebhook returns the Standard Webhooks v1 signature (HMAC-SHA256 over
// "<id>.<timestamp>.<body>", base64) without the "v1," prefix. key is the decoded secret.
func SignWebhook(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// matchesSignature reports whether any "v1,<sig>" entry of the header equals expected, comparing
// in constant time. Entries of other versions (v1a) and malformed entries are ignored.
func matchesSignature(expected, header string) bool {
	want, err := base64.StdEncoding.DecodeString(expected)
	if err != nil {
		return false
	}
	ok := false
	for entry := range strings.FieldsSeq(header) {
		version, sig, found := strings.Cut(entry, ",")
		if !found || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			ok = true // keep going, so timing does not reveal which entry matched
		}
	}
	return ok
}

type webhookContextKey struct{}

// WebhookIDFromContext returns the verified webhook-id stored by [WebhookVerifier.Middleware]
// (Standard mode only). Use it for logging and idempotency, not as proof of anything else.
func WebhookIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(webhookContextKey{}).(string)
	return id, ok && id != ""
}

// Middleware returns Echo middleware that authenticates webhooks. It reads the body up to
// Config.WebhookMaxBodyBytes (a larger one gives a 413 *apierror.Error), verifies it with
// [WebhookVerifier.Verify], and hands the handler an untouched copy of the body. In shared-secret
// mode the header is checked before the body is read. Failures are returned, never written, so
// the HTTPErrorHandler renders them.
func (w *WebhookVerifier) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if w.mode == WebhookModeSharedSecret {
				if err := w.verifySecret(req.Header); err != nil {
					return err
				}
			}
			if req.ContentLength > w.maxBody {
				return webhookError(ErrWebhookPayloadTooLarge, nil)
			}
			body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, w.maxBody))
			if err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					return webhookError(ErrWebhookPayloadTooLarge, nil)
				}
				return webhookError(ErrWebhookBodyUnreadable, err)
			}
			if err := w.Verify(req.Header, body); err != nil {
				return err
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
			if w.mode == WebhookModeStandard {
				req = req.WithContext(context.WithValue(req.Context(), webhookContextKey{}, req.Header.Get(HeaderWebhookID)))
			}
			c.SetRequest(req)
			return next(c)
		}
	}
}

// String describes the WebhookVerifier without its keys, so printing it cannot leak them.
func (v *WebhookVerifier) String() string { return "rls.WebhookVerifier{mode: " + string(v.mode) + "}" }

// GoString is String, for the %#v verb.
func (v *WebhookVerifier) GoString() string { return v.String() }
