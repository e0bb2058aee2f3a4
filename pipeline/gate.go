package pipeline

import (
	"context"

	"github.com/orchable/orchable/supabase"
)

// callGate bounds the engine's hot database calls in flight (claims and
// completion writes); the others wait their turn in the engine, in the
// order they came. On a database with few cores, many such calls at once
// cost it more CPU per call than the same calls a few at a time: with 20
// users working at once on this repository's 2-core bench server, 20 calls
// in flight cost 40–45 % more database CPU per completion than 4
// (docs/performance.md, fourteenth round). A nil gate does not bound.
type callGate chan struct{}

func newCallGate(n int) callGate {
	if n <= 0 {
		return nil
	}
	return make(callGate, n)
}

// rpc makes one call through db once the gate has room (or fails with the
// context's error if it ends first, as the call would).
func (g callGate) rpc(ctx context.Context, db supabase.DB, id supabase.Identity, fn string, args, out any) error {
	if g != nil {
		select {
		case g <- struct{}{}:
			defer func() { <-g }()
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return db.RPC(ctx, id, fn, args, out)
}
