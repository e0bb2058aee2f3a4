package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

// heldCalls is a DB whose calls each wait for a token on release, after
// announcing themselves on started; it records the most calls in flight.
type heldCalls struct {
	supabase.DB

	started  chan struct{}
	release  chan struct{}
	inFlight atomic.Int64
	most     atomic.Int64
}

func (h *heldCalls) RPC(ctx context.Context, _ supabase.Identity, _ string, _, _ any) error {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	h.started <- struct{}{}
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestCallGate(t *testing.T) {
	t.Parallel()

	t.Run("AtMostItsSizeInFlight", func(t *testing.T) {
		t.Parallel()
		db := &heldCalls{started: make(chan struct{}, 8), release: make(chan struct{})}
		g := newCallGate(2, time.Hour)
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Go(func() { errs <- g.rpc(t.Context(), db, supabase.Identity{}, "claim_tasks", nil, nil) })
		}
		// Two calls fill the gate; each token ends one and lets one more in.
		<-db.started
		<-db.started
		for i := range 6 {
			db.release <- struct{}{}
			if i < 4 {
				<-db.started
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, int64(2), db.most.Load(), "calls in flight at once")
	})

	t.Run("WaitEndsWithTheContext", func(t *testing.T) {
		t.Parallel()
		db := &heldCalls{started: make(chan struct{}, 1), release: make(chan struct{})}
		g := newCallGate(1, time.Hour)
		done := make(chan error, 1)
		go func() { done <- g.rpc(t.Context(), db, supabase.Identity{}, "complete_tasks", nil, nil) }()
		<-db.started // the gate is full
		ctx, cancel := context.WithCancelCause(t.Context())
		cause := errors.New("shutting down")
		cancel(cause)
		require.ErrorIs(t, g.rpc(ctx, db, supabase.Identity{}, "complete_task", nil, nil), cause)
		db.release <- struct{}{}
		require.NoError(t, <-done)
		require.Equal(t, int64(1), db.most.Load())
	})

	// One tenant's slow calls holding every place delay another's by at
	// most maxWait (SPEC §14): the call then goes ahead without a place.
	t.Run("SlowCallsDelayOthersAtMostMaxWait", func(t *testing.T) {
		t.Parallel()
		db := &heldCalls{started: make(chan struct{}, 3), release: make(chan struct{})}
		const maxWait = 20 * time.Millisecond
		g := newCallGate(2, maxWait)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 2 {
			wg.Go(func() { errs <- g.rpc(t.Context(), db, supabase.Identity{}, "claim_tasks", nil, nil) })
		}
		<-db.started
		<-db.started // every place is held
		start := time.Now()
		wg.Go(func() { errs <- g.rpc(t.Context(), db, supabase.Identity{}, "complete_tasks", nil, nil) })
		<-db.started // the third call went ahead while the two were still held
		require.GreaterOrEqual(t, time.Since(start), maxWait, "it waited for a place first")
		require.Equal(t, int64(3), db.most.Load())
		close(db.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Empty(t, g.places, "the call that went ahead without a place gives none back")
	})

	t.Run("NoBound", func(t *testing.T) {
		t.Parallel()
		for _, n := range []int{0, -1} {
			require.Nil(t, newCallGate(n, time.Hour))
		}
		db := &heldCalls{started: make(chan struct{}, 3), release: make(chan struct{})}
		var g *callGate
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Go(func() { errs <- g.rpc(t.Context(), db, supabase.Identity{}, "claim_tasks", nil, nil) })
		}
		for range 3 {
			<-db.started // all three are in flight before any ends
		}
		close(db.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, int64(3), db.most.Load())
	})
}
