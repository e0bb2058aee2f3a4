package supabase_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/dbtest"
	"github.com/orchable/orchable/supabase/postgresttest"
)

const testAPIKey = "sb_publishable_test"

type transport struct {
	name string
	db   supabase.DB
}

type testBundle struct {
	pool       *pgxpool.Pool
	transports []transport
}

// setup returns the transports over this package's database: Direct,
// Client talking to the PostgREST-protocol test server, and Direct over a
// pool in the transaction-pooler-safe mode (supabase.ParsePoolConfig).
func setup(t *testing.T) *testBundle {
	t.Helper()
	pool := testPool(t)
	url := startServer(t)
	c, err := supabase.New(&supabase.Config{URL: url, APIKey: testAPIKey})
	require.NoError(t, err)
	return &testBundle{pool: pool, transports: []transport{
		{"Direct", supabase.NewDirect(pool, nil)},
		{"PostgREST", c},
		// The direct transport as it runs behind a transaction-mode pooler.
		{"DirectPoolerSafe", supabase.NewDirect(poolerSafePool(t), nil)},
	}}
}

// startServer starts the PostgREST-protocol test server on this package's
// database.
func startServer(tb testing.TB) string {
	tb.Helper()
	return postgresttest.Start(tb, testPool(tb), &postgresttest.Config{JWTSecret: testSecret, APIKeys: []string{testAPIKey}})
}

// seedTasks inserts n plan tasks owned by user and returns their ids.
func seedTasks(ctx context.Context, t testing.TB, pool *pgxpool.Pool, user uuid.UUID, n int, loCode string) []uuid.UUID {
	t.Helper()
	rows, err := pool.Query(ctx, `insert into public.ai_tasks (user_id, lo_code, sequence)
		select $1, $3, g from generate_series(1, $2) g returning id`, user, n, loCode)
	require.NoError(t, err)
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

func TestContractRPC(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	user := dbtest.CreateUser(ctx, t, b.pool)
	id := userIdentity(t, user)
	tests := []struct {
		name   string
		fn     string
		args   any
		expect string
	}{
		{"ScalarWithDefault", "t_scalar", map[string]any{"p_a": 2}, `3`},
		{"ScalarBothArgs", "t_scalar", map[string]any{"p_a": 2, "p_b": 5}, `7`},
		{"TextWithReservedChars", "t_text", map[string]any{"p_s": `a,b.c:(d) "e"`}, `"a,b.c:(d) \"e\""`},
		{"NoArgs", "t_noargs", nil, `42`},
		{
			"Jsonb", "t_jsonb",
			map[string]any{"p_obj": map[string]any{"k": []int{1, 2}}, "p_ids": []string{user.String(), user.String()}},
			`{"obj":{"k":[1,2]},"n":2,"uid":"` + user.String() + `","role":"authenticated","method":"POST","path":"/rpc/t_jsonb"}`,
		},
		{"SetofScalar", "t_setof", map[string]any{"p_n": 3}, `[1,2,3]`},
		{"SetofEmpty", "t_setof", map[string]any{"p_n": 0}, `[]`},
		{"Table", "t_table", map[string]any{"p_n": 2}, `[{"i":1,"s":"row1"},{"i":2,"s":"row2"}]`},
		{"Void", "t_void", map[string]any{"p_s": "x"}, ``},
		{"RawArgs", "t_scalar", json.RawMessage(`{"p_a":1,"p_b":1}`), `2`},
	}
	for _, tr := range b.transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				var got json.RawMessage
				require.NoError(t, tr.db.RPC(ctx, id, tt.fn, tt.args, &got))
				if tt.expect == "" {
					require.Empty(t, got)
					return
				}
				require.JSONEq(t, tt.expect, string(got))
			})
		}
	}
}

type taskRow struct {
	ID       uuid.UUID `json:"id"`
	UserID   uuid.UUID `json:"user_id"`
	LoCode   *string   `json:"lo_code"`
	Sequence int       `json:"sequence"`
}

func TestContractSelect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	bob := dbtest.CreateUser(ctx, t, b.pool)
	weird := `a,b.c:(d) "q" \z`
	seedTasks(ctx, t, b.pool, alice, 5, "alpha")
	seedTasks(ctx, t, b.pool, alice, 1, weird)
	seedTasks(ctx, t, b.pool, bob, 3, "alpha")
	_, err := b.pool.Exec(ctx, "update public.ai_tasks set lo_code = null where user_id = $1 and sequence = 5", alice)
	require.NoError(t, err)
	asAlice := userIdentity(t, alice)
	cols := []string{"id", "user_id", "lo_code", "sequence"}
	tests := []struct {
		name       string
		q          supabase.Query
		expectSeqs []int
	}{
		{"All", supabase.Query{Columns: cols, Order: []supabase.Order{supabase.Asc("sequence"), supabase.Asc("lo_code")}}, []int{1, 1, 2, 3, 4, 5}},
		{"Eq", supabase.Query{Filters: []supabase.Filter{supabase.Eq("lo_code", "alpha")}, Order: []supabase.Order{supabase.Asc("sequence")}}, []int{1, 2, 3, 4}},
		{"EqReserved", supabase.Query{Filters: []supabase.Filter{supabase.Eq("lo_code", weird)}}, []int{1}},
		{"Neq", supabase.Query{Filters: []supabase.Filter{supabase.Neq("lo_code", "alpha")}}, []int{1}},
		{"InReserved", supabase.Query{Filters: []supabase.Filter{supabase.In("lo_code", weird, "nope")}}, []int{1}},
		{"InInts", supabase.Query{Filters: []supabase.Filter{supabase.In("sequence", 2, 4), supabase.Eq("lo_code", "alpha")}, Order: []supabase.Order{supabase.Desc("sequence")}}, []int{4, 2}},
		{"InEmpty", supabase.Query{Filters: []supabase.Filter{supabase.In[string]("lo_code")}}, []int{}},
		{"IsNull", supabase.Query{Filters: []supabase.Filter{supabase.Is("lo_code", nil)}}, []int{5}},
		{"IsNotNull", supabase.Query{Filters: []supabase.Filter{supabase.Is("lo_code", supabase.IsNotNull), supabase.Gt("sequence", 3)}}, []int{4}},
		{"GtLt", supabase.Query{Filters: []supabase.Filter{supabase.Gt("sequence", 1), supabase.Lt("sequence", 4)}, Order: []supabase.Order{supabase.Asc("sequence")}}, []int{2, 3}},
		{"GteLte", supabase.Query{Filters: []supabase.Filter{supabase.Gte("sequence", 4), supabase.Lte("sequence", 5)}, Order: []supabase.Order{supabase.Asc("sequence")}}, []int{4, 5}},
		{"Like", supabase.Query{Filters: []supabase.Filter{supabase.Like("lo_code", "alp*")}, Order: []supabase.Order{supabase.Asc("sequence")}}, []int{1, 2, 3, 4}},
		{"ILike", supabase.Query{Filters: []supabase.Filter{supabase.ILike("lo_code", "%LPH%"), supabase.Eq("sequence", 2)}}, []int{2}},
		{"OrderNullsFirst", supabase.Query{Order: []supabase.Order{{Column: "lo_code", Nulls: supabase.NullsFirst}, supabase.Desc("sequence")}, Limit: 3}, []int{5, 1, 4}},
		{"LimitOffset", supabase.Query{Filters: []supabase.Filter{supabase.Eq("lo_code", "alpha")}, Order: []supabase.Order{supabase.Asc("sequence")}, Limit: 2, Offset: 1}, []int{2, 3}},
		{"Uuid", supabase.Query{Filters: []supabase.Filter{supabase.Eq("user_id", bob)}}, []int{}},
	}
	for _, tr := range b.transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				var rows []taskRow
				require.NoError(t, tr.db.Select(ctx, asAlice, "ai_tasks", tt.q, &rows))
				seqs := []int{}
				for _, r := range rows {
					require.Equal(t, alice, r.UserID)
					seqs = append(seqs, r.Sequence)
				}
				if tt.name == "All" || tt.name == "Neq" || tt.name == "InReserved" || tt.name == "EqReserved" {
					require.ElementsMatch(t, tt.expectSeqs, seqs)
					return
				}
				require.Equal(t, tt.expectSeqs, seqs)
			})
		}
		t.Run(tr.name+"/SingleOne", func(t *testing.T) {
			t.Parallel()
			var row taskRow
			require.NoError(t, tr.db.Select(ctx, asAlice, "ai_tasks", supabase.Query{
				Columns: cols, Filters: []supabase.Filter{supabase.Eq("sequence", 3), supabase.Eq("lo_code", "alpha")}, Single: true,
			}, &row))
			require.Equal(t, 3, row.Sequence)
		})
		t.Run(tr.name+"/SingleNone", func(t *testing.T) {
			t.Parallel()
			var row taskRow
			err := tr.db.Select(ctx, asAlice, "ai_tasks", supabase.Query{Filters: []supabase.Filter{supabase.Eq("sequence", 99)}, Single: true}, &row)
			requireStatus(t, err, http.StatusNotAcceptable, "PGRST116")
			require.ErrorIs(t, err, supabase.ErrNotFound)
			require.ErrorIs(t, err, supabase.ErrNotSingular)
		})
		t.Run(tr.name+"/SingleMany", func(t *testing.T) {
			t.Parallel()
			var row taskRow
			err := tr.db.Select(ctx, asAlice, "ai_tasks", supabase.Query{Filters: []supabase.Filter{supabase.Eq("lo_code", "alpha")}, Single: true}, &row)
			requireStatus(t, err, http.StatusNotAcceptable, "PGRST116")
			require.ErrorIs(t, err, supabase.ErrNotSingular)
			require.NotErrorIs(t, err, supabase.ErrNotFound)
		})
		t.Run(tr.name+"/OtherTenantSeesOwnOnly", func(t *testing.T) {
			t.Parallel()
			var rows []taskRow
			require.NoError(t, tr.db.Select(ctx, userIdentity(t, bob), "ai_tasks", supabase.Query{}, &rows))
			require.Len(t, rows, 3)
			for _, r := range rows {
				require.Equal(t, bob, r.UserID)
			}
		})
		t.Run(tr.name+"/AnonForbidden", func(t *testing.T) {
			t.Parallel()
			var rows []taskRow
			err := tr.db.Select(ctx, anonIdentity(t), "ai_tasks", supabase.Query{}, &rows)
			requireStatus(t, err, http.StatusUnauthorized, "42501")
			require.ErrorIs(t, err, supabase.ErrForbidden)
			err = tr.db.Select(ctx, supabase.Identity{}, "ai_tasks", supabase.Query{}, &rows)
			requireStatus(t, err, http.StatusUnauthorized, "42501")
		})
		t.Run(tr.name+"/UndefinedTable", func(t *testing.T) {
			t.Parallel()
			err := tr.db.Select(ctx, asAlice, "no_such_table", supabase.Query{}, nil)
			require.ErrorIs(t, err, supabase.ErrUndefined)
		})
	}
}

func requireStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	var se *supabase.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, status, se.StatusCode(), se.Error())
	require.Equal(t, code, se.Code, se.Error())
}

// TestContractErrors checks that every SQLSTATE/PGRST code of
// platform-facts §C4 the project can meet maps to the same status and
// sentinel on both transports.
func TestContractErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	user := dbtest.CreateUser(ctx, t, b.pool)
	id := userIdentity(t, user)
	tests := []struct {
		sqlstate string
		status   int
		sentinel error
	}{
		{"P0001", http.StatusBadRequest, supabase.ErrBadRequest},
		{"22023", http.StatusBadRequest, supabase.ErrBadRequest},
		{"23502", http.StatusBadRequest, supabase.ErrBadRequest},
		{"23514", http.StatusBadRequest, supabase.ErrBadRequest},
		{"23505", http.StatusConflict, supabase.ErrConflict},
		{"23503", http.StatusConflict, supabase.ErrConflict},
		{"42501", http.StatusForbidden, supabase.ErrForbidden},
		{"28000", http.StatusForbidden, supabase.ErrForbidden},
		{"40001", http.StatusInternalServerError, supabase.ErrSerialization},
		{"40P01", http.StatusInternalServerError, supabase.ErrSerialization},
		{"57014", http.StatusInternalServerError, supabase.ErrTimeout},
		{"08006", http.StatusServiceUnavailable, supabase.ErrUnavailable},
		{"53300", http.StatusServiceUnavailable, supabase.ErrUnavailable},
		{"42P17", http.StatusInternalServerError, nil},
		{"25006", http.StatusMethodNotAllowed, nil},
		{"XX000", http.StatusInternalServerError, nil},
		{"PT402", http.StatusPaymentRequired, nil},
	}
	for _, tr := range b.transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.sqlstate, func(t *testing.T) {
				t.Parallel()
				err := tr.db.RPC(ctx, id, "t_raise", map[string]any{"p_code": tt.sqlstate, "p_msg": "boom " + tt.sqlstate}, nil)
				requireStatus(t, err, tt.status, tt.sqlstate)
				var se *supabase.Error
				require.ErrorAs(t, err, &se)
				require.Equal(t, "boom "+tt.sqlstate, se.Message)
				require.Equal(t, "the details", se.Details)
				require.Equal(t, "the hint", se.Hint)
				if tt.sentinel != nil {
					require.ErrorIs(t, err, tt.sentinel)
				}
			})
		}
		t.Run(tr.name+"/AnonRaise42501Is401", func(t *testing.T) {
			t.Parallel()
			err := tr.db.RPC(ctx, anonIdentity(t), "t_raise", map[string]any{"p_code": "42501", "p_msg": "no"}, nil)
			requireStatus(t, err, http.StatusUnauthorized, "42501")
			require.ErrorIs(t, err, supabase.ErrForbidden)
		})
		t.Run(tr.name+"/UnknownFunction", func(t *testing.T) {
			t.Parallel()
			err := tr.db.RPC(ctx, id, "no_such_function", map[string]any{"p_a": 1}, nil)
			requireStatus(t, err, http.StatusNotFound, "PGRST202")
			require.ErrorIs(t, err, supabase.ErrUndefined)
			require.NotErrorIs(t, err, supabase.ErrNotFound)
		})
		t.Run(tr.name+"/UnknownArgument", func(t *testing.T) {
			t.Parallel()
			err := tr.db.RPC(ctx, id, "t_scalar", map[string]any{"p_zzz": 1}, nil)
			requireStatus(t, err, http.StatusNotFound, "PGRST202")
		})
		t.Run(tr.name+"/StableFunctionWrites", func(t *testing.T) {
			t.Parallel()
			// PostgreSQL refuses it when the function is created/run (0A000).
			err := tr.db.RPC(ctx, id, "t_stable_write", nil, nil)
			requireStatus(t, err, http.StatusBadRequest, "0A000")
		})
		t.Run(tr.name+"/BadArgumentType", func(t *testing.T) {
			t.Parallel()
			err := tr.db.RPC(ctx, id, "t_scalar", map[string]any{"p_a": "not a number"}, nil)
			requireStatus(t, err, http.StatusBadRequest, "22P02")
			require.ErrorIs(t, err, supabase.ErrBadRequest)
		})
		t.Run(tr.name+"/ExpiredToken", func(t *testing.T) {
			t.Parallel()
			claims := dbtest.UserClaims(user)
			claims["exp"] = time.Now().Add(-time.Hour).Unix()
			err := tr.db.RPC(ctx, identityFor(t, claims), "t_noargs", nil, nil)
			requireStatus(t, err, http.StatusUnauthorized, "PGRST303")
			require.ErrorIs(t, err, supabase.ErrJWT)
		})
		t.Run(tr.name+"/ForeignRoleRejected", func(t *testing.T) {
			t.Parallel()
			err := tr.db.RPC(ctx, identityFor(t, map[string]any{"role": "postgres", "exp": time.Now().Add(time.Minute).Unix()}), "t_noargs", nil, nil)
			require.Error(t, err)
			var se *supabase.Error
			require.ErrorAs(t, err, &se)
			require.GreaterOrEqual(t, se.StatusCode(), 400)
		})
	}
}

// TestContractTenancy: a user cannot change another user's rows through an
// RPC running as themselves.
func TestContractTenancy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	bob := dbtest.CreateUser(ctx, t, b.pool)
	for _, tr := range b.transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			ids := seedTasks(ctx, t, b.pool, alice, 1, tr.name)
			var claimed []uuid.UUID
			require.NoError(t, tr.db.RPC(ctx, userIdentity(t, bob), "t_claim", map[string]any{"p_worker": "w", "p_limit": 100}, &claimed))
			require.NotContains(t, claimed, ids[0])
			_, err := b.pool.Exec(ctx, `with e as (select set_config('orchable.engine', 'on', true))
				update public.ai_tasks set status = 'processing', locked_by = 'w' from e where id = $1`, ids[0])
			require.NoError(t, err)
			var res json.RawMessage
			require.NoError(t, tr.db.RPC(ctx, userIdentity(t, bob), "t_complete", map[string]any{"p_task_id": ids[0], "p_worker": "w", "p_output": map[string]any{"x": 1}}, &res))
			require.Empty(t, res)
			var status string
			require.NoError(t, b.pool.QueryRow(ctx, "select status::text from public.ai_tasks where id = $1", ids[0]).Scan(&status))
			require.Equal(t, "processing", status)
			require.NoError(t, tr.db.RPC(ctx, userIdentity(t, alice), "t_complete", map[string]any{"p_task_id": ids[0], "p_worker": "w", "p_output": map[string]any{"x": 1}}, &res))
			require.JSONEq(t, `{"id":"`+ids[0].String()+`","status":"completed"}`, string(res))
		})
	}
}

// TestContractClaimConcurrency: 50 goroutines claim the same 1,000 tasks
// through claim_tasks (migrations/…_sql_api.sql); each is claimed exactly once.
func TestContractClaimConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	for _, tr := range b.transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			user := dbtest.CreateUser(ctx, t, b.pool)
			ids := seedTasks(ctx, t, b.pool, user, 1000, "conc")
			id := userIdentity(t, user)
			var (
				mu   sync.Mutex
				seen = map[uuid.UUID]int{}
				wg   sync.WaitGroup
				errs = make(chan error, 50)
			)
			for w := range 50 {
				wg.Go(func() {
					for {
						var got []struct {
							Task struct {
								ID uuid.UUID `json:"id"`
							} `json:"task"`
						}
						if err := tr.db.RPC(ctx, id, "claim_tasks", map[string]any{
							"p_worker": "w" + strconv.Itoa(w), "p_lease_seconds": 60, "p_limit": 7,
						}, &got); err != nil {
							errs <- err
							return
						}
						if len(got) == 0 {
							return
						}
						mu.Lock()
						for _, g := range got {
							seen[g.Task.ID]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Len(t, seen, len(ids))
			for _, task := range ids {
				require.Equal(t, 1, seen[task], "task %s", task)
			}
		})
	}
}
