package rls

import (
	"log/slog"
	"time"
)

// Base is the logger and the clock that travel together to every long-lived service in this
// package (STYLE rule 14). Tests set NowFunc to control time; nothing in rls reads the wall clock
// directly.
type Base struct {
	// Logger receives diagnostic logs (never tokens or secrets). Nil discards them.
	Logger *slog.Logger
	// NowFunc returns the current time. Nil means time.Now.
	NowFunc func() time.Time
}

// now returns the current time from the base's clock.
func (b *Base) now() time.Time {
	if b == nil || b.NowFunc == nil {
		return time.Now()
	}
	return b.NowFunc()
}

// logger returns the base's logger, or one that discards everything.
func (b *Base) logger() *slog.Logger {
	if b == nil || b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}
