package supabase_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// BenchmarkClaimComplete measures claim_tasks + complete_task (one task)
// through each transport: calls/s, allocations and, for Direct, network
// round trips per call.
func BenchmarkClaimComplete(b *testing.B) {
	ctx := b.Context()
	pool := testPool(b)
	url := startServer(b)
	client, err := supabase.New(&supabase.Config{URL: url, APIKey: testAPIKey})
	require.NoError(b, err)
	for _, tr := range []transport{{"Direct", supabase.NewDirect(pool, nil)}, {"PostgREST", client}} {
		b.Run(tr.name, func(b *testing.B) {
			user := dbtest.CreateUser(ctx, b, pool)
			seedTasks(ctx, b, pool, user, b.N, "bench")
			id := userIdentity(b, user)
			var before int64
			if d, ok := tr.db.(*supabase.Direct); ok {
				before = d.RoundTrips()
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				var c claimed
				require.NoError(b, tr.db.RPC(ctx, id, "claim_tasks", map[string]any{"p_worker": "bench", "p_lease_seconds": 60, "p_limit": 1}, &c))
				require.Len(b, c, 1)
				require.NoError(b, tr.db.RPC(ctx, id, "complete_task", map[string]any{
					"p_task_id": c[0].Task.ID, "p_worker": "bench", "p_output": map[string]any{"ok": true},
				}, nil))
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "calls/s")
			if d, ok := tr.db.(*supabase.Direct); ok {
				b.ReportMetric(float64(d.RoundTrips()-before)/float64(2*b.N), "roundtrips/call")
			}
		})
	}
}
