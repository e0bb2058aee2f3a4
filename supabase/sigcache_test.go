package supabase_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
)

// TestSignatureCacheInvalidation: a function dropped and recreated with a
// different signature is called correctly on the very next call, on both
// transports (the signature caches are refreshed on PGRST202/42883/42725).
// A change those errors do not reveal (same arguments, other return type or
// volatility) is not detected; see Direct.
func TestSignatureCacheInvalidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	id := userIdentity(t, dbtest.CreateUser(ctx, t, b.pool))
	tests := []struct {
		name       string
		givenOld   string // signature and body of the first version
		givenNew   string
		whenOld    map[string]any
		expectOld  string
		whenNew    map[string]any
		expectNew  string
		expectGone map[string]any // the old call against the new version
	}{
		{
			name:     "ArgumentRenamed",
			givenOld: "(p_a int) returns int language sql immutable as $$ select p_a * 2 $$",
			givenNew: "(p_b text) returns text language sql immutable as $$ select 'new:' || p_b $$",
			whenOld:  map[string]any{"p_a": 21}, expectOld: `42`,
			whenNew: map[string]any{"p_b": "x"}, expectNew: `"new:x"`,
			expectGone: map[string]any{"p_a": 21},
		},
		{
			name:     "ArgumentTypeChanged",
			givenOld: "(p_a int) returns int language sql immutable as $$ select p_a + 1 $$",
			givenNew: "(p_a text, p_c text default '!') returns text language sql immutable as $$ select p_a || p_c $$",
			whenOld:  map[string]any{"p_a": "7"}, expectOld: `8`,
			whenNew: map[string]any{"p_a": "7"}, expectNew: `"7!"`,
		},
	}
	for _, tr := range b.transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				fn := "t_sig_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
				create := func(def string) {
					t.Helper()
					_, err := b.pool.Exec(ctx, fmt.Sprintf(
						"drop function if exists public.%[1]s; create function public.%[1]s%[2]s; grant execute on function public.%[1]s to authenticated",
						fn, def))
					require.NoError(t, err)
				}
				create(tt.givenOld)
				t.Cleanup(func() { _, _ = b.pool.Exec(t.Context(), "drop function if exists public."+fn) })
				var got []byte
				require.NoError(t, tr.db.RPC(ctx, id, fn, tt.whenOld, (*jsonRaw)(&got)))
				require.JSONEq(t, tt.expectOld, string(got))

				create(tt.givenNew)
				got = nil
				require.NoError(t, tr.db.RPC(ctx, id, fn, tt.whenNew, (*jsonRaw)(&got)), "first call after the change")
				require.JSONEq(t, tt.expectNew, string(got))
				if tt.expectGone != nil {
					err := tr.db.RPC(ctx, id, fn, tt.expectGone, nil)
					requireStatus(t, err, 404, "PGRST202")
					require.ErrorIs(t, err, supabase.ErrUndefined)
				}
				// And it stays fixed.
				got = nil
				require.NoError(t, tr.db.RPC(ctx, id, fn, tt.whenNew, (*jsonRaw)(&got)))
				require.JSONEq(t, tt.expectNew, string(got))
			})
		}
	}
}

// jsonRaw receives a result verbatim.
type jsonRaw []byte

func (j *jsonRaw) UnmarshalJSON(b []byte) error { *j = append((*j)[:0], b...); return nil }
