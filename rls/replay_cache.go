package rls

import (
	"sync"
	"time"
)

// replayCache remembers accepted webhook-ids until they can no longer be replayed (their
// timestamp has left the tolerance window). Memory is bounded: past max entries the oldest is
// dropped, which weakens replay protection only for ids older than the busiest max deliveries.
type replayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time // id → time after which a replay is rejected as stale anyway
	ring []replayEntry        // insertion order, for expiry and eviction
	head int
	n    int
}

type replayEntry struct {
	id      string
	expires time.Time
}

func newReplayCache(maxEntries int) *replayCache {
	return &replayCache{
		max:  maxEntries,
		seen: make(map[string]time.Time),
		ring: make([]replayEntry, 0, min(maxEntries, 1024)),
	}
}

// add records id until expires and reports whether it was new (false means a replay).
func (c *replayCache) add(id string, expires, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n > 0 && !c.at(0).expires.After(now) {
		c.popLocked()
	}
	if exp, ok := c.seen[id]; ok && exp.After(now) {
		return false
	}
	if c.n == c.max {
		c.popLocked()
	}
	c.seen[id] = expires
	c.pushLocked(replayEntry{id: id, expires: expires})
	return true
}

func (c *replayCache) at(i int) replayEntry { return c.ring[(c.head+i)%len(c.ring)] }

func (c *replayCache) popLocked() {
	e := c.at(0)
	c.ring[c.head] = replayEntry{}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	if exp, ok := c.seen[e.id]; ok && exp.Equal(e.expires) {
		delete(c.seen, e.id)
	}
}

func (c *replayCache) pushLocked(e replayEntry) {
	if c.n == len(c.ring) { // grow (up to max), unrolling the ring
		grown := make([]replayEntry, c.n, min(max(2*c.n, 16), c.max))
		for i := range c.n {
			grown[i] = c.at(i)
		}
		c.ring, c.head = grown[:cap(grown)], 0
	}
	c.ring[(c.head+c.n)%len(c.ring)] = e
	c.n++
}

// len returns the number of remembered ids.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
