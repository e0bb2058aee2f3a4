package postgresttest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

type configRow struct {
	ID          uuid.UUID       `json:"id"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Steps       json.RawMessage `json:"steps"`
	CreatedBy   uuid.UUID       `json:"created_by"`
}

func TestInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	bob := dbtest.CreateUser(ctx, t, b.pool)
	asAlice := userToken(t, alice)

	t.Run("ObjectReturnRepresentation", func(t *testing.T) {
		t.Parallel()
		name := "rep-" + uuid.NewString()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			prefer: "return=representation", body: map[string]any{"name": name, "steps": []int{1}},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.Equal(t, "return=representation", r.header.Get("Preference-Applied"))
		require.Equal(t, "*/*", r.header.Get("Content-Range"))
		var rows []configRow
		require.NoError(t, json.Unmarshal(r.body, &rows))
		require.Len(t, rows, 1)
		require.Equal(t, name, rows[0].Name)
		require.JSONEq(t, `[1]`, string(rows[0].Steps))
		require.Equal(t, alice, rows[0].CreatedBy, "created_by defaults to auth.uid()")
	})
	t.Run("ObjectSingularSelect", func(t *testing.T) {
		t.Parallel()
		name := "one-" + uuid.NewString()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs?select=name", token: asAlice,
			prefer: "return=representation", accept: singular, body: map[string]any{"name": name},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.JSONEq(t, `{"name":"`+name+`"}`, string(r.body))
	})
	t.Run("ReturnMinimal", func(t *testing.T) {
		t.Parallel()
		for _, prefer := range []string{"return=minimal", ""} {
			name := "min-" + uuid.NewString()
			r := b.do(ctx, t, req{
				method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
				prefer: prefer, body: map[string]any{"name": name},
			})
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			require.Empty(t, r.body)
			require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where name = $1", name))
		}
	})
	t.Run("ArrayWithColumns", func(t *testing.T) {
		t.Parallel()
		n1, n2 := "col1-"+uuid.NewString(), "col2-"+uuid.NewString()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs?columns=name,steps&select=name,description,steps",
			token: asAlice, prefer: "return=representation", body: []map[string]any{
				{"name": n1, "steps": []string{"a"}, "description": "ignored: not in columns"},
				{"name": n2, "steps": []string{}},
			},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.JSONEq(t, `[{"name":"`+n1+`","description":null,"steps":["a"]},{"name":"`+n2+`","description":null,"steps":[]}]`, string(r.body))
	})
	t.Run("ArraySingularRollsBack", func(t *testing.T) {
		t.Parallel()
		n1, n2 := "sr1-"+uuid.NewString(), "sr2-"+uuid.NewString()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			prefer: "return=representation", accept: singular, body: []map[string]any{{"name": n1}, {"name": n2}},
		})
		require.Equal(t, http.StatusNotAcceptable, r.status, string(r.body))
		code, _ := r.pgError(t)
		require.Equal(t, "PGRST116", code)
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where name in ($1, $2)", n1, n2))
	})
	t.Run("OtherUsersRowForbidden", func(t *testing.T) {
		t.Parallel()
		name := "rls-" + uuid.NewString()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			body: map[string]any{"name": name, "created_by": bob},
		})
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		code, _ := r.pgError(t)
		require.Equal(t, "42501", code)
		require.Equal(t, "PostgREST; error=42501", r.header.Get("Proxy-Status"))
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where name = $1", name))
	})
	t.Run("UpsertMergeDuplicates", func(t *testing.T) {
		t.Parallel()
		id := uuid.New()
		r := b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			prefer: "resolution=merge-duplicates,return=representation", body: map[string]any{"id": id, "name": "v1"},
		})
		require.Equal(t, http.StatusCreated, r.status, "an upsert that inserts: %s", r.body)
		r = b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs?select=id,name", token: asAlice,
			prefer: "resolution=merge-duplicates,return=representation", body: map[string]any{"id": id, "name": "v2"},
		})
		require.Equal(t, http.StatusOK, r.status, "an upsert that only updates is 200: %s", r.body)
		require.Equal(t, "resolution=merge-duplicates, return=representation", r.header.Get("Preference-Applied"))
		require.JSONEq(t, `[{"id":"`+id.String()+`","name":"v2"}]`, string(r.body))
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1 and name = 'v2'", id))

		// One existing, one new row: 201.
		id2 := uuid.New()
		r = b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			prefer: "resolution=merge-duplicates", body: []map[string]any{{"id": id, "name": "v3"}, {"id": id2, "name": "new"}},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.Empty(t, r.body)
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1 and name = 'v3'", id))
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1", id2))

		// ignore-duplicates leaves the existing row alone.
		r = b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice,
			prefer: "resolution=ignore-duplicates", body: map[string]any{"id": id, "name": "ignored"},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1 and name = 'v3'", id))

		// Bob cannot take Alice's row over by upserting its id.
		r = b.do(ctx, t, req{
			method: http.MethodPost, path: "/lab_orchestrator_configs", token: userToken(t, bob),
			prefer: "resolution=merge-duplicates", body: map[string]any{"id": id, "name": "stolen"},
		})
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1 and name = 'v3' and created_by = $2", id, alice))
	})
	t.Run("InvalidJSON", func(t *testing.T) {
		t.Parallel()
		r := b.do(ctx, t, req{method: http.MethodPost, path: "/lab_orchestrator_configs", token: asAlice, body: `{"name":`})
		require.Equal(t, http.StatusBadRequest, r.status)
		code, _ := r.pgError(t)
		require.Equal(t, "PGRST102", code)
	})
}

func TestUpdateDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	bob := dbtest.CreateUser(ctx, t, b.pool)
	asAlice := userToken(t, alice)
	// seed inserts rows named name for user (as the owner) and returns ids.
	seed := func(t *testing.T, user uuid.UUID, name string, n int) []uuid.UUID {
		t.Helper()
		var ids []uuid.UUID
		for range n {
			var id uuid.UUID
			require.NoError(t, b.pool.QueryRow(ctx, "insert into public.lab_orchestrator_configs (name, created_by) values ($1, $2) returning id", name, user).Scan(&id))
			ids = append(ids, id)
		}
		return ids
	}
	named := func(name string) string { return "name=eq." + url.QueryEscape(name) }

	t.Run("PatchRepresentationAndMinimal", func(t *testing.T) {
		t.Parallel()
		name := "p-" + uuid.NewString()
		ids := seed(t, alice, name, 1)
		r := b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?select=id,description&" + named(name), token: asAlice,
			prefer: "return=representation", body: map[string]any{"description": "d1"},
		})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "0-0/*", r.header.Get("Content-Range"))
		require.JSONEq(t, `[{"id":"`+ids[0].String()+`","description":"d1"}]`, string(r.body))

		r = b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?" + named(name), token: asAlice,
			body: map[string]any{"description": "d2"},
		})
		require.Equal(t, http.StatusNoContent, r.status, string(r.body))
		require.Empty(t, r.body)
		require.Equal(t, "0-0/*", r.header.Get("Content-Range"))
		require.Equal(t, 1, b.count(ctx, t, "from public.lab_orchestrator_configs where id = $1 and description = 'd2'", ids[0]))
	})
	t.Run("PatchOtherUsersRowsUnaffected", func(t *testing.T) {
		t.Parallel()
		name := "shared-" + uuid.NewString()
		seed(t, alice, name, 1)
		bobs := seed(t, bob, name, 2)
		r := b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?" + named(name), token: asAlice,
			body: map[string]any{"description": "alice was here"},
		})
		require.Equal(t, http.StatusNoContent, r.status, string(r.body))
		require.Equal(t, "0-0/*", r.header.Get("Content-Range"), "only Alice's one row")
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1) and description is not null", bobs))

		// Only Bob's rows: an RLS-filtered no-op, 0 rows.
		r = b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?id=eq." + bobs[0].String(), token: asAlice,
			body: map[string]any{"description": "x"},
		})
		require.Equal(t, http.StatusNoContent, r.status)
		require.Equal(t, "*/*", r.header.Get("Content-Range"))
	})
	t.Run("PatchSingularRollsBack", func(t *testing.T) {
		t.Parallel()
		name := "ps-" + uuid.NewString()
		ids := seed(t, alice, name, 2)
		r := b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?" + named(name), token: asAlice,
			prefer: "return=representation", accept: singular, body: map[string]any{"description": "both"},
		})
		require.Equal(t, http.StatusNotAcceptable, r.status, string(r.body))
		code, _ := r.pgError(t)
		require.Equal(t, "PGRST116", code)
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1) and description is not null", ids),
			"the update of two rows was rolled back")

		// Zero visible rows (Bob's): 406 too.
		bobs := seed(t, bob, name, 1)
		r = b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?id=eq." + bobs[0].String(), token: asAlice,
			prefer: "return=representation", accept: singular, body: map[string]any{"description": "x"},
		})
		require.Equal(t, http.StatusNotAcceptable, r.status, string(r.body))

		// Exactly one: the object.
		r = b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs?select=description&id=eq." + ids[0].String(), token: asAlice,
			prefer: "return=representation", accept: singular, body: map[string]any{"description": "one"},
		})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `{"description":"one"}`, string(r.body))
	})
	t.Run("PatchWithoutFilterOnlyOwnRows", func(t *testing.T) {
		t.Parallel()
		carol := dbtest.CreateUser(ctx, t, b.pool)
		name := "nf-" + uuid.NewString()
		seed(t, carol, name, 2)
		bobs := seed(t, bob, name, 1)
		r := b.do(ctx, t, req{
			method: http.MethodPatch, path: "/lab_orchestrator_configs", token: userToken(t, carol),
			body: map[string]any{"description": "carol"},
		})
		require.Equal(t, http.StatusNoContent, r.status, string(r.body))
		require.Equal(t, "0-1/*", r.header.Get("Content-Range"))
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1) and description is not null", bobs))
	})
	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		name := "del-" + uuid.NewString()
		seed(t, alice, name, 2)
		bobs := seed(t, bob, name, 2)
		r := b.do(ctx, t, req{
			method: http.MethodDelete, path: "/lab_orchestrator_configs?select=name&" + named(name), token: asAlice,
			prefer: "return=representation",
		})
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `[{"name":"`+name+`"},{"name":"`+name+`"}]`, string(r.body))
		require.Equal(t, 0, b.count(ctx, t, "from public.lab_orchestrator_configs where name = $1 and created_by = $2", name, alice))
		require.Equal(t, 2, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1)", bobs), "Bob's rows survive")

		r = b.do(ctx, t, req{method: http.MethodDelete, path: "/lab_orchestrator_configs?id=eq." + bobs[0].String(), token: asAlice})
		require.Equal(t, http.StatusNoContent, r.status)
		require.Equal(t, "*/*", r.header.Get("Content-Range"))
		require.Equal(t, 2, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1)", bobs))
	})
	t.Run("DeleteSingularRollsBack", func(t *testing.T) {
		t.Parallel()
		name := "ds-" + uuid.NewString()
		ids := seed(t, alice, name, 2)
		r := b.do(ctx, t, req{method: http.MethodDelete, path: "/lab_orchestrator_configs?" + named(name), token: asAlice, accept: singular})
		require.Equal(t, http.StatusNotAcceptable, r.status, string(r.body))
		require.Equal(t, 2, b.count(ctx, t, "from public.lab_orchestrator_configs where id = any($1)", ids))
	})
}
