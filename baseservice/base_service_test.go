package baseservice_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/baseservice/baseservicetest"
)

type service struct {
	baseservice.BaseService
}

func TestInit(t *testing.T) {
	t.Parallel()
	t.Run("NilArchetype", func(t *testing.T) {
		t.Parallel()
		s := baseservice.Init(nil, &service{})
		require.NotNil(t, s.Logger)
		require.IsType(t, baseservice.SystemClock{}, s.Time)
		s.Logger.Info("discarded") // does not panic
	})
	t.Run("FromArchetype", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		clock := baseservicetest.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
		s := baseservice.Init(clock.Archetype(slog.New(slog.NewTextHandler(&buf, nil))), &service{})
		s.Logger.Info("service: hello")
		require.Contains(t, buf.String(), "service: hello")
		require.Equal(t, clock.Now(), s.Time.Now())
		clock.Advance(time.Minute)
		require.Equal(t, clock.Now(), s.Time.Now())
	})
}

func TestFakeClockTicker(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clock := baseservicetest.NewFakeClock(start)
	tk := clock.NewTicker(10 * time.Second)

	clock.Advance(10*time.Second - time.Nanosecond)
	require.Empty(t, tk.C, "no tick before the period")
	clock.Advance(time.Nanosecond)
	require.Len(t, tk.C, 1)
	require.Equal(t, start.Add(10*time.Second), <-tk.C)

	// Missed ticks are dropped, as time.Ticker drops them.
	clock.Advance(35 * time.Second)
	require.Len(t, tk.C, 1)
	require.Equal(t, start.Add(20*time.Second), <-tk.C)
	clock.Advance(5 * time.Second) // t = 50 s
	require.Equal(t, start.Add(50*time.Second), <-tk.C)

	tk.Stop()
	clock.Advance(time.Hour)
	require.Empty(t, tk.C, "no tick after Stop")
}

func TestFakeClockSleep(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clock := baseservicetest.NewFakeClock(start)
	tk := clock.NewTicker(time.Second)
	require.NoError(t, clock.Sleep(t.Context(), 2*time.Second))
	require.Equal(t, start.Add(2*time.Second), clock.Now())
	require.Len(t, tk.C, 1, "a sleep moves the clock and fires what fell due")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, clock.Sleep(ctx, time.Second), context.Canceled)
	require.Equal(t, start.Add(2*time.Second), clock.Now(), "a cancelled sleep does not move the clock")
}

func TestSystemClockSleepCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, baseservice.SystemClock{}.Sleep(ctx, time.Hour), context.Canceled)
}
