package pipeline

import (
	"context"
	"time"

	"github.com/orchable/orchable/supabase"
)

// callGate bounds the engine's hot database calls in flight (claims and
// completion writes); the others wait their turn in the engine, in the
// order they came. On a database with few cores, many such calls at once
// cost it more CPU per call than the same calls a few at a time: with 20
// users working at once on this repository's 2-core bench server, 20 calls
// in flight cost about twice the database CPU per completion of 4
// (docs/performance.md, fourteenth round).
//
// A call waits at most maxWait for a place, then goes ahead without one.
// The places are shared by every user, and a tenant can make its own calls
// slow (a claim of tasks with very large inputs, say): without that limit,
// a few such calls holding every place would stall every other tenant's
// claims and completions for as long as they last (SPEC §14). With it,
// another tenant's call is delayed by at most maxWait. A nil gate does not
// bound.
type callGate struct {
	places  chan struct{}
	maxWait time.Duration
}

func newCallGate(n int, maxWait time.Duration) *callGate {
	if n <= 0 {
		return nil
	}
	return &callGate{places: make(chan struct{}, n), maxWait: maxWait}
}

// rpc makes one call through db once the gate has a place for it, or once
// it has waited maxWait (or fails with the context's error if that ends
// first, as the call would).
func (g *callGate) rpc(ctx context.Context, db supabase.DB, id supabase.Identity, fn string, args, out any) error {
	if g != nil {
		took, err := g.enter(ctx)
		if err != nil {
			return err
		}
		if took {
			defer func() { <-g.places }()
		}
	}
	return db.RPC(ctx, id, fn, args, out)
}

// enter reports whether the call took a place (false: it waited maxWait),
// or the context's error if that ended while it waited.
func (g *callGate) enter(ctx context.Context) (bool, error) {
	select {
	case g.places <- struct{}{}:
		return true, nil
	default:
	}
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.places <- struct{}{}:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}
