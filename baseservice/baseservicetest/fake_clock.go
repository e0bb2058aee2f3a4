// Package baseservicetest gives services a fake clock in tests, so their
// timing (lease renewal, sweeps, cooldowns, simulated latency) is tested
// without real waiting.
package baseservicetest

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/orchable/orchable/baseservice"
)

// FakeClock is a manually driven baseservice.Clock. Time moves only when the
// test calls Advance or Set, or when code calls Sleep (which advances the
// clock by the requested duration at once, so simulated latency costs no
// real time). Tickers fire inside Advance: when Advance returns, each ticker
// with a tick due has sent one (a move across several periods sends one
// tick, and a tick is dropped if the previous one was not yet received, as
// time.Ticker drops ticks a slow receiver misses), so what a test sees does
// not depend on how fast the receiver is. Safe for concurrent use.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	c      chan time.Time
	period time.Duration
	next   time.Time
	done   bool
}

// NewFakeClock returns a clock stopped at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Archetype returns an archetype with c as its clock and logger as its
// logger (nil discards).
func (c *FakeClock) Archetype(logger *slog.Logger) *baseservice.Archetype {
	return &baseservice.Archetype{Logger: logger, Time: c}
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires the tickers that fell due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// Set moves the clock to t if t is later than now, firing due tickers.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.setLocked(t)
	}
}

func (c *FakeClock) setLocked(t time.Time) {
	c.now = t
	live := c.tickers[:0]
	for _, tk := range c.tickers {
		if tk.done {
			continue
		}
		if !tk.next.After(t) {
			// One tick per move, however many periods it spans: the ticks
			// in between are dropped, as time.Ticker drops ticks a slow
			// receiver misses (and a full channel drops this one too).
			select {
			case tk.c <- tk.next:
			default:
			}
			for !tk.next.After(t) {
				tk.next = tk.next.Add(tk.period)
			}
		}
		live = append(live, tk)
	}
	c.tickers = live
}

// Sleep advances the clock by d and returns at once (ctx's cause if done).
func (c *FakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if d > 0 {
		c.Advance(d)
	}
	return nil
}

// NewTicker returns a ticker whose first tick is due d after now.
func (c *FakeClock) NewTicker(d time.Duration) *baseservice.Ticker {
	if d <= 0 {
		panic("baseservicetest: non-positive interval for NewTicker")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	tk := &fakeTicker{c: make(chan time.Time, 1), period: d, next: c.now.Add(d)}
	c.tickers = append(c.tickers, tk)
	return baseservice.NewTicker(tk.c, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		tk.done = true
	})
}
