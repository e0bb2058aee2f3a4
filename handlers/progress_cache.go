package handlers

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/google/uuid"
)

// MaxProgressAge is the most a client may accept as the age of a batch's
// progress (GET /api/v1/batches/{id}?max_age=<seconds>).
const MaxProgressAge = 10 * time.Second

// maxCachedProgress bounds the progress cache (entries).
const maxCachedProgress = 4096

// progressCache shares one get_batch_progress answer between the callers
// that accept a recent one (the console's viewers of one batch): however
// many viewers poll, the database counts a batch's tasks at most once per
// max_age. Entries are per (user, batch), so nobody reads an answer made
// for someone else. Concurrent misses of one key wait for one call.
type progressCache struct {
	mu  sync.Mutex
	m   map[progressKey]*progressEntry
	now func() time.Time
}

type progressKey struct {
	user, batch uuid.UUID
}

type progressEntry struct {
	at    time.Time
	done  chan struct{}
	body  json.RawMessage
	err   error
	stale bool // a failed call: never served to later callers
}

func newProgressCache() *progressCache {
	return &progressCache{m: map[progressKey]*progressEntry{}, now: time.Now}
}

// get returns an answer at most maxAge old, calling fetch when there is none.
func (c *progressCache) get(ctx context.Context, key progressKey, maxAge time.Duration, fetch func() (json.RawMessage, error)) (json.RawMessage, error) {
	c.mu.Lock()
	now := c.now()
	if e, ok := c.m[key]; ok && !e.stale && now.Sub(e.at) <= maxAge {
		c.mu.Unlock()
		select {
		case <-e.done:
			if e.err == nil {
				return e.body, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
		now = c.now()
	}
	if len(c.m) >= maxCachedProgress {
		for k, e := range c.m {
			if now.Sub(e.at) > MaxProgressAge || e.stale {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedProgress {
			clear(c.m)
		}
	}
	e := &progressEntry{at: now, done: make(chan struct{})}
	c.m[key] = e
	c.mu.Unlock()

	e.body, e.err = fetch()
	if e.err != nil {
		c.mu.Lock()
		e.stale = true
		c.mu.Unlock()
	}
	close(e.done)
	return e.body, e.err
}
