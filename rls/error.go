package rls

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/orchable/orchable/apierror"
)

// Stable error codes carried by the Code of the *apierror.Error values this package returns.
// They are part of the HTTP API.
const (
	// CodeMissingToken: the request has no bearer token (401).
	CodeMissingToken = "missing_token"
	// CodeInvalidToken: the bearer token was rejected (401); Message says why.
	CodeInvalidToken = "invalid_token"
	// CodeInsufficientRole: the token is valid but its role may not do this (403).
	CodeInsufficientRole = "insufficient_role"
	// CodeInvalidWebhook: the webhook is not authenticated (401); Message says why.
	CodeInvalidWebhook = "invalid_webhook"
	// CodeWebhookReplayed: the webhook-id was already accepted within the tolerance window (409).
	CodeWebhookReplayed = "webhook_replayed"
	// CodePayloadTooLarge: the webhook body is larger than the configured cap (413).
	CodePayloadTooLarge = "payload_too_large"
)

// Reasons a bearer token is rejected. Every rejection from [Verifier.Verify] wraps exactly one of
// them (test with errors.Is); its text is the short reason sent to the client.
var (
	ErrMissingToken          = errors.New("missing bearer token")
	ErrTokenTooLarge         = errors.New("token too large")
	ErrTokenMalformed        = errors.New("malformed token")
	ErrAlgorithmNotAllowed   = errors.New("signing algorithm not allowed")
	ErrKeyIDMissing          = errors.New("missing kid")
	ErrUnknownKeyID          = errors.New("unknown kid")
	ErrKeyAlgorithmMismatch  = errors.New("algorithm does not match key")
	ErrSignatureInvalid      = errors.New("invalid signature")
	ErrExpiryMissing         = errors.New("missing exp")
	ErrTokenExpired          = errors.New("token expired")
	ErrTokenNotYetValid      = errors.New("token not yet valid")
	ErrTokenUsedBeforeIssued = errors.New("token issued in the future")
	ErrIssuerInvalid         = errors.New("invalid iss")
	ErrAudienceInvalid       = errors.New("invalid aud")
	ErrSubjectMissing        = errors.New("missing sub")
	ErrSubjectInvalid        = errors.New("sub is not a uuid")
	ErrRoleNotAllowed        = errors.New("role not allowed")
)

// Reasons a webhook is rejected. Every rejection from [WebhookVerifier.Verify] wraps exactly one.
var (
	ErrWebhookSecretMissing     = errors.New("missing webhook secret header")
	ErrWebhookSecretMismatch    = errors.New("wrong webhook secret")
	ErrWebhookHeadersMissing    = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrWebhookTimestampInvalid  = errors.New("invalid webhook-timestamp")
	ErrWebhookTimestampExpired  = errors.New("webhook-timestamp outside tolerance")
	ErrWebhookSignatureInvalid  = errors.New("no matching webhook signature")
	ErrWebhookReplayed          = errors.New("webhook-id already seen")
	ErrWebhookPayloadTooLarge   = errors.New("webhook payload too large")
	ErrWebhookBodyUnreadable    = errors.New("webhook body unreadable")
	ErrWebhookIDInvalid         = errors.New("invalid webhook-id")
	ErrWebhookSignatureTooLarge = errors.New("webhook-signature header too large")
)

// tokenError builds the 401 for a rejected bearer token. reason is one of the Err variables and
// becomes the message; cause (optional) is kept for logs only.
func tokenError(reason, cause error) *apierror.Error {
	e := apierror.New(http.StatusUnauthorized, CodeInvalidToken, reason.Error(), wrapReason(reason, cause))
	if errors.Is(reason, ErrMissingToken) {
		// RFC 6750 §3.1: a request without credentials gets no error code.
		e.Code = CodeMissingToken
		e.Header = http.Header{"Www-Authenticate": {`Bearer`}}
		return e
	}
	e.Header = http.Header{"Www-Authenticate": {
		fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, reason.Error()),
	}}
	return e
}

// webhookError builds the error for a rejected webhook.
func webhookError(reason, cause error) *apierror.Error {
	e := apierror.New(http.StatusUnauthorized, CodeInvalidWebhook, reason.Error(), wrapReason(reason, cause))
	switch {
	case errors.Is(reason, ErrWebhookReplayed):
		e.Status, e.Code = http.StatusConflict, CodeWebhookReplayed
	case errors.Is(reason, ErrWebhookPayloadTooLarge):
		e.Status, e.Code = http.StatusRequestEntityTooLarge, CodePayloadTooLarge
	case errors.Is(reason, ErrWebhookBodyUnreadable):
		e.Status = http.StatusBadRequest
	}
	return e
}

func wrapReason(reason, cause error) error {
	if cause == nil {
		return reason
	}
	return fmt.Errorf("%w: %w", reason, cause)
}
