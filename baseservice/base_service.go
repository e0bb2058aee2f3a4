// Package baseservice is the logger and the clock that travel together to
// every long-lived service (STYLE rule 14), in the shape of River's
// rivershared/baseservice: main builds one Archetype, and each service is
// initialised from it once, by embedding BaseService and calling Init in its
// constructor. Nothing else in the service reads the wall clock or builds a
// logger of its own, so a test that hands in an archetype with a fake clock
// (package baseservicetest) controls every time the service reads and every
// ticker it waits on.
package baseservice

import (
	"context"
	"log/slog"
	"time"
)

// Archetype is what every service is initialised from: the process's one
// logger and one clock. main builds it once with NewArchetype.
type Archetype struct {
	// Logger receives the service's logs. Nil discards them.
	Logger *slog.Logger
	// Time is the clock. Nil is the wall clock (SystemClock).
	Time Clock
}

// NewArchetype returns an archetype with logger and the wall clock.
func NewArchetype(logger *slog.Logger) *Archetype {
	return &Archetype{Logger: logger, Time: SystemClock{}}
}

// withDefaults returns a copy of a (which may be nil) with a discarding
// logger and the wall clock where a leaves them unset.
func (a *Archetype) withDefaults() Archetype {
	var out Archetype
	if a != nil {
		out = *a
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.Time == nil {
		out.Time = SystemClock{}
	}
	return out
}

// BaseService is embedded in every long-lived service; its Logger and Time
// are set once by Init.
type BaseService struct {
	Archetype
}

// GetBaseService returns the embedded base (it lets Init reach it).
func (s *BaseService) GetBaseService() *BaseService { return s }

// withBaseService is a service that embeds BaseService.
type withBaseService interface {
	GetBaseService() *BaseService
}

// Init sets svc's embedded BaseService from archetype (nil: discard logs,
// wall clock) and returns svc, so a constructor reads
//
//	return baseservice.Init(archetype, &Sweeper{...})
func Init[T withBaseService](archetype *Archetype, svc T) T {
	svc.GetBaseService().Archetype = archetype.withDefaults()
	return svc
}

// Clock is the source of time: the current time, waits and tickers. The wall
// clock is SystemClock; tests use baseservicetest.FakeClock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d or until ctx ends, returning ctx's cause then.
	Sleep(ctx context.Context, d time.Duration) error
	// NewTicker returns a ticker that sends the time on its channel every d
	// (d > 0), dropping ticks a slow receiver misses, as time.Ticker does.
	NewTicker(d time.Duration) *Ticker
}

// Ticker delivers ticks of a Clock.
type Ticker struct {
	// C receives the ticks.
	C    <-chan time.Time
	stop func()
}

// NewTicker wraps a tick channel and the function that stops it; clocks
// other than SystemClock use it to build their tickers.
func NewTicker(c <-chan time.Time, stop func()) *Ticker { return &Ticker{C: c, stop: stop} }

// Stop turns the ticker off; no more ticks are sent after it returns.
func (t *Ticker) Stop() { t.stop() }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d or until ctx is done.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// NewTicker returns a time.Ticker's channel and Stop.
func (SystemClock) NewTicker(d time.Duration) *Ticker {
	t := time.NewTicker(d)
	return NewTicker(t.C, t.Stop)
}
