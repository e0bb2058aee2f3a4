package model

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genai"
)

// pacific is where Gemini's per-day quotas reset (midnight America/Los_Angeles).
const pacific = "America/Los_Angeles"

// defaultRateLimitDelay is the block after a per-minute 429 without RetryInfo.
const defaultRateLimitDelay = 60 * time.Second

// classifier turns transport and API failures into *Error.
type classifier struct {
	pacific *time.Location
}

func newClassifier() (*classifier, error) {
	loc, err := time.LoadLocation(pacific)
	if err != nil {
		return nil, fmt.Errorf("error loading time zone %s (is tzdata available?): %w", pacific, err)
	}
	return &classifier{pacific: loc}, nil
}

// nextPacificMidnight returns the first midnight in America/Los_Angeles after now.
func (c *classifier) nextPacificMidnight(now time.Time) time.Time {
	t := now.In(c.pacific)
	y, m, d := t.Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, c.pacific)
}

// classify maps an error from genai's GenerateContent to *Error. parent is the
// caller's context: when it is done the caller's error is returned as is,
// since that is a cancellation, not a model failure.
func (c *classifier) classify(parent context.Context, err error, model string, now time.Time) error {
	if err == nil {
		return nil
	}
	if parent.Err() != nil {
		return fmt.Errorf("model call cancelled: %w", context.Cause(parent))
	}
	if apiErr, ok := errors.AsType[genai.APIError](err); ok {
		return c.fromAPIError(apiErr, model, now)
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return newError(KindTimeout, RetryLater, ScopeNone, 0, fmt.Sprintf("model %s call timed out", model), err)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "error sending request") {
		return newError(KindConnection, RetryLater, ScopeNone, 0, fmt.Sprintf("model %s could not be reached: %s", model, connectionReason(err)), err)
	}
	return newError(KindServer, RetryLater, ScopeNone, 0, fmt.Sprintf("model %s call failed: %v", model, err), err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// connectionReason is the innermost error text (a dial or read failure),
// which names a host but never a key.
func connectionReason(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

func (c *classifier) fromAPIError(e genai.APIError, model string, now time.Time) *Error {
	status := strings.ToUpper(e.Status)
	msg := strings.TrimSpace(e.Message)
	switch {
	case e.Code == 429 || status == "RESOURCE_EXHAUSTED":
		return c.rateLimited(e, model, now)
	case e.Code == 401 || status == "UNAUTHENTICATED" || hasReason(e, "API_KEY_INVALID") ||
		strings.Contains(strings.ToLower(msg), "api key not valid") || hasReason(e, "API_KEY_EXPIRED"):
		return newError(KindInvalidKey, RetryLater, ScopeKey, e.Code, "the API key was rejected as invalid or expired: "+msg, e)
	case status == "FAILED_PRECONDITION":
		return newError(KindFailedPrecondition, RetryLater, ScopeKey, e.Code,
			"the key's Google project cannot use the Gemini API (billing or region): "+msg, e)
	case e.Code == 403 || status == "PERMISSION_DENIED":
		return newError(KindPermissionDenied, RetryLater, ScopeKey, e.Code, "the API key lacks permission: "+msg, e)
	case e.Code == 404 || status == "NOT_FOUND":
		return newError(KindModelNotFound, RetryNever, ScopeNone, e.Code,
			fmt.Sprintf("model %q was not found (it may be retired or misspelled; set a current model id in the stage's ai settings): %s", model, msg), e)
	case e.Code == 408 || e.Code == 504 || status == "DEADLINE_EXCEEDED":
		return newError(KindTimeout, RetryLater, ScopeNone, e.Code, fmt.Sprintf("model %s timed out on the server (%d %s)", model, e.Code, e.Status), e)
	case e.Code >= 500:
		return newError(KindServer, RetryLater, ScopeNone, e.Code, fmt.Sprintf("model %s server error %d %s: %s", model, e.Code, e.Status, msg), e)
	default:
		return newError(KindBadRequest, RetryNever, ScopeNone, e.Code, fmt.Sprintf("model %s rejected the request (%d %s): %s", model, e.Code, e.Status, msg), e)
	}
}

// rateLimited reads QuotaFailure and RetryInfo from a 429. A per-day quota
// blocks until midnight Pacific; anything else for RetryInfo.retryDelay.
func (c *classifier) rateLimited(e genai.APIError, model string, now time.Time) *Error {
	delay := defaultRateLimitDelay
	perDay := false
	var quotaIDs []string
	for _, d := range e.Details {
		switch detailType(d) {
		case "google.rpc.RetryInfo":
			if s, ok := d["retryDelay"].(string); ok {
				if v, err := parseProtoDuration(s); err == nil && v > 0 {
					delay = v
				}
			}
		case "google.rpc.QuotaFailure":
			vs, _ := d["violations"].([]any)
			for _, v := range vs {
				m, _ := v.(map[string]any)
				id, _ := m["quotaId"].(string)
				if id == "" {
					continue
				}
				quotaIDs = append(quotaIDs, id)
				if strings.Contains(id, "PerDay") {
					perDay = true
				}
			}
		}
	}
	quota := strings.Join(quotaIDs, ", ")
	if quota == "" {
		quota = "unspecified quota"
	}
	if perDay {
		until := c.nextPacificMidnight(now)
		err := newError(KindQuotaExhausted, RetryLater, ScopeProject, e.Code,
			fmt.Sprintf("daily quota of model %s exhausted for the key's project (%s); resets at %s", model, quota, until.UTC().Format(time.RFC3339)), e)
		err.Until = until
		err.RetryAfter = until.Sub(now)
		return err
	}
	err := newError(KindRateLimited, RetryLater, ScopeProject, e.Code,
		fmt.Sprintf("rate limit of model %s reached for the key's project (%s); retry in %s", model, quota, delay.Round(time.Millisecond)), e)
	err.RetryAfter = delay
	return err
}

func detailType(d map[string]any) string {
	t, _ := d["@type"].(string)
	return strings.TrimPrefix(t, "type.googleapis.com/")
}

func hasReason(e genai.APIError, reason string) bool {
	for _, d := range e.Details {
		if r, _ := d["reason"].(string); r == reason {
			return true
		}
	}
	return false
}

// parseProtoDuration parses a google.protobuf.Duration in JSON form ("37s",
// "3.957525076s").
func parseProtoDuration(s string) (time.Duration, error) {
	if !strings.HasSuffix(s, "s") {
		return 0, fmt.Errorf("duration %q has no s suffix", s)
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	return time.Duration(f * float64(time.Second)), nil
}
