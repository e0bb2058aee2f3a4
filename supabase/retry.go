package supabase

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryConfig says how idempotent calls are retried on transient errors
// (ErrUnavailable, ErrSerialization).
type RetryConfig struct {
	// Attempts is the maximum number of attempts, the first included.
	// Default 4; 1 disables retries.
	Attempts int
	// Base is the first backoff. Default 50ms. Each retry doubles it.
	Base time.Duration
	// Max caps one backoff. Default 2s.
	Max time.Duration
}

func (r RetryConfig) withDefaults() RetryConfig {
	if r.Attempts <= 0 {
		r.Attempts = 4
	}
	if r.Base <= 0 {
		r.Base = 50 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 2 * time.Second
	}
	return r
}

// do runs call once, or, when idempotent, up to r.Attempts times while it
// fails transiently, sleeping an exponential backoff with full jitter in a
// select on ctx.Done. If ctx ends during a backoff, the error matches both
// ctx's cause and the last failure.
func (r RetryConfig) do(ctx context.Context, idempotent bool, call func() error) error {
	err := call()
	if !idempotent {
		return err
	}
	for attempt := 1; attempt < r.Attempts && err != nil && transient(err); attempt++ {
		backoff := min(r.Base<<(attempt-1), r.Max)
		wait := time.Duration(rand.Int64N(int64(backoff) + 1)) // jitter, not security
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			// Report why the call stopped, keeping the last failure.
			t.Stop()
			return fmt.Errorf("supabase: %w during retry backoff (last error: %w)", context.Cause(ctx), err)
		case <-t.C:
		}
		err = call()
	}
	return err
}
