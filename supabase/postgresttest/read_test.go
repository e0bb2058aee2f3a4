package postgresttest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

func TestSelect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	bob := dbtest.CreateUser(ctx, t, b.pool)
	asAlice := userToken(t, alice)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := b.pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	scan := func(dst any, sql string, args ...any) {
		t.Helper()
		require.NoError(t, b.pool.QueryRow(ctx, sql, args...).Scan(dst))
	}

	var cfg, batch, bareBatch, key uuid.UUID
	scan(&cfg, `insert into public.lab_orchestrator_configs (name, steps, created_by) values ('cfg', '[{"s":1}]', $1) returning id`, alice)
	scan(&batch, `insert into public.task_batches (name, orchestrator_config_id, created_by) values ('with config', $1, $2) returning id`, cfg, alice)
	scan(&bareBatch, `insert into public.task_batches (name, created_by) values ('no config', $1) returning id`, alice)
	scan(&key, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'main key', 'x') returning id`, alice)
	exec(`insert into public.api_key_usage_log (user_api_key_id, user_id, model_used) values ($1, $2, 'm1'), (null, $2, 'm2')`, key, alice)
	launch := uuid.New()
	// Alice's tasks: sequence 1..5; lo_code null for 5; 1 in the batch, 2 in the launch.
	exec(`insert into public.ai_tasks (user_id, sequence, lo_code, batch_id, launch_id)
		select $1, g, case when g = 5 then null else 'lo' || (g % 2) end,
		  case when g = 1 then $2::uuid end, case when g = 2 then $3::uuid end
		from generate_series(1, 5) g`, alice, batch, launch)
	// Bob's task in the same launch: invisible to Alice.
	exec(`insert into public.ai_tasks (user_id, sequence, launch_id) values ($1, 9, $2)`, bob, launch)

	get := func(t *testing.T, path, prefer, accept string) *response {
		t.Helper()
		return b.do(ctx, t, req{method: http.MethodGet, path: path, token: asAlice, prefer: prefer, accept: accept})
	}
	seqs := func(t *testing.T, r *response) []*int {
		t.Helper()
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var rows []struct {
			Sequence *int `json:"sequence"`
		}
		require.NoError(t, json.Unmarshal(r.body, &rows))
		out := []*int{}
		for _, row := range rows {
			out = append(out, row.Sequence)
		}
		return out
	}
	ints := func(v ...int) []*int {
		out := []*int{}
		for _, x := range v {
			out = append(out, &x)
		}
		return out
	}

	t.Run("EmbedManyToOneWithHint", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/task_batches?select=id,name,lab_orchestrator_configs!task_batches_orchestrator_config_id_fkey(name,steps)&order=name.asc", "", "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `[
			{"id":"`+bareBatch.String()+`","name":"no config","lab_orchestrator_configs":null},
			{"id":"`+batch.String()+`","name":"with config","lab_orchestrator_configs":{"name":"cfg","steps":[{"s":1}]}}
		]`, string(r.body))
	})
	t.Run("EmbedAlias", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/task_batches?select=name,config:lab_orchestrator_configs!task_batches_orchestrator_config_id_fkey(name)&id=eq."+batch.String(), "", singular)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `{"name":"with config","config":{"name":"cfg"}}`, string(r.body))
	})
	t.Run("EmbedUsageLogKey", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/api_key_usage_log?select=model_used,user_api_keys(key_name)&order=model_used", "", "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `[{"model_used":"m1","user_api_keys":{"key_name":"main key"}},{"model_used":"m2","user_api_keys":null}]`, string(r.body))
	})
	t.Run("EmbedOneToMany", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/task_batches?select=name,ai_tasks(sequence)&id=eq."+batch.String(), "", "")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `[{"name":"with config","ai_tasks":[{"sequence":1}]}]`, string(r.body))
	})
	t.Run("Or", func(t *testing.T) {
		t.Parallel()
		q := url.Values{"select": {"sequence"}, "or": {"(batch_id.eq." + batch.String() + ",launch_id.eq." + launch.String() + ")"}, "order": {"sequence"}}
		require.Equal(t, ints(1, 2), seqs(t, get(t, "/ai_tasks?"+q.Encode(), "", "")), "Bob's task in the launch is not visible")
	})
	t.Run("OrNestedAndQuoted", func(t *testing.T) {
		t.Parallel()
		q := url.Values{"select": {"sequence"}, "or": {`(lo_code.in.("lo1","a,b"),and(sequence.gte.4,lo_code.is.null))`}, "order": {"sequence"}}
		require.Equal(t, ints(1, 3, 5), seqs(t, get(t, "/ai_tasks?"+q.Encode(), "", "")))
	})
	t.Run("OrderMultipleAndNulls", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, []*int{ints(5)[0], ints(4)[0], ints(2)[0], ints(3)[0], ints(1)[0]},
			seqs(t, get(t, "/ai_tasks?select=sequence&order=lo_code.asc.nullsfirst,sequence.desc", "", "")))
		require.Equal(t, ints(4, 2, 3, 1, 5),
			seqs(t, get(t, "/ai_tasks?select=sequence&order=lo_code.asc.nullslast,sequence.desc", "", "")))
		require.Equal(t, ints(5, 3, 1, 4, 2),
			seqs(t, get(t, "/ai_tasks?select=sequence&order=lo_code.desc,sequence.desc", "", "")),
			"desc puts nulls first by default")
	})
	t.Run("LimitOffset", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/ai_tasks?select=sequence&order=sequence&limit=2&offset=1", "", "")
		require.Equal(t, ints(2, 3), seqs(t, r))
		require.Equal(t, "1-2/*", r.header.Get("Content-Range"))
	})
	t.Run("CountExact", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/ai_tasks?select=sequence&order=sequence&limit=2&offset=1", "count=exact", "")
		require.Equal(t, http.StatusPartialContent, r.status, string(r.body))
		require.Equal(t, "1-2/5", r.header.Get("Content-Range"))
		require.Equal(t, "count=exact", r.header.Get("Preference-Applied"))

		r = get(t, "/ai_tasks?select=sequence", "count=exact", "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "0-4/5", r.header.Get("Content-Range"))

		r = get(t, "/ai_tasks?select=sequence&sequence=gt.100", "count=exact", "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "*/0", r.header.Get("Content-Range"))
		require.JSONEq(t, `[]`, string(r.body))
	})
	t.Run("SingularZeroAndTwo", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			filter string
			n      int
		}{{"sequence=gt.100", 0}, {"sequence=lt.3", 2}} {
			r := get(t, "/ai_tasks?"+tc.filter, "", singular)
			require.Equal(t, http.StatusNotAcceptable, r.status, string(r.body))
			var e struct{ Code, Message, Details string }
			require.NoError(t, json.Unmarshal(r.body, &e))
			require.Equal(t, "PGRST116", e.Code)
			require.Equal(t, "The result contains "+[]string{"0", "", "2"}[tc.n]+" rows", e.Details)
		}
		r := get(t, "/ai_tasks?select=sequence&sequence=eq.3", "", singular)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.JSONEq(t, `{"sequence":3}`, string(r.body))
		require.True(t, strings.HasPrefix(r.header.Get("Content-Type"), singular))
	})
	t.Run("Head", func(t *testing.T) {
		t.Parallel()
		r := b.do(ctx, t, req{method: http.MethodHead, path: "/ai_tasks?select=id", token: asAlice, prefer: "count=exact"})
		require.Equal(t, http.StatusOK, r.status)
		require.Empty(t, r.body)
		require.Equal(t, "0-4/5", r.header.Get("Content-Range"))
	})
	t.Run("UnknownRelationship", func(t *testing.T) {
		t.Parallel()
		r := get(t, "/ai_tasks?select=id,user_api_keys(key_name)", "", "")
		require.Equal(t, http.StatusBadRequest, r.status)
		code, _ := r.pgError(t)
		require.Equal(t, "PGRST200", code)
	})
}

func TestJWT(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	alice := dbtest.CreateUser(ctx, t, b.pool)
	_, err := b.pool.Exec(ctx, "insert into public.ai_tasks (user_id, sequence) values ($1, 1)", alice)
	require.NoError(t, err)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	valid := userClaims(alice, time.Now().Add(time.Minute))
	expired := userClaims(alice, time.Now().Add(-time.Hour))

	tests := []struct {
		name         string
		givenToken   string
		givenNoKey   bool
		expectStatus int
		expectCode   string
		expectWWW    bool
	}{
		{"HS256Valid", hsToken(t, valid), false, http.StatusOK, "", false},
		{"ES256ViaJWKS", esToken(t, b.es256, testKID, valid), false, http.StatusOK, "", false},
		{"Expired", hsToken(t, expired), false, http.StatusUnauthorized, "PGRST303", true},
		{"ExpiredES256", esToken(t, b.es256, testKID, expired), false, http.StatusUnauthorized, "PGRST303", true},
		{"BadSignature", func() string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, valid).SignedString([]byte("another-secret-another-secret-another-secret"))
			require.NoError(t, err)
			return tok
		}(), false, http.StatusUnauthorized, "PGRST301", true},
		{"ES256WrongKeySameKid", esToken(t, otherKey, testKID, valid), false, http.StatusUnauthorized, "PGRST301", true},
		{"Malformed", "not-a-jwt", false, http.StatusUnauthorized, "PGRST301", true},
		{"AlgNone", func() string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType)
			require.NoError(t, err)
			return tok
		}(), false, http.StatusUnauthorized, "PGRST301", true},
		{"NoTokenIsAnon", "", false, http.StatusUnauthorized, "42501", false},
		{"AnonKeyJWT", hsToken(t, jwt.MapClaims{"role": "anon", "iss": "supabase", "exp": time.Now().Add(time.Hour).Unix()}), false, http.StatusUnauthorized, "42501", false},
		{"NoAPIKey", hsToken(t, valid), true, http.StatusUnauthorized, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(ctx, t, req{method: http.MethodGet, path: "/ai_tasks?select=user_id", token: tt.givenToken, noKey: tt.givenNoKey})
			require.Equal(t, tt.expectStatus, r.status, string(r.body))
			if tt.expectStatus == http.StatusOK {
				require.JSONEq(t, `[{"user_id":"`+alice.String()+`"}]`, string(r.body))
				return
			}
			code, msg := r.pgError(t)
			require.Equal(t, tt.expectCode, code, msg)
			www := r.header.Get("WWW-Authenticate")
			if tt.expectWWW {
				require.True(t, strings.HasPrefix(www, `Bearer error="invalid_token", error_description="`), www)
			} else {
				require.NotContains(t, www, "invalid_token")
			}
			if tt.expectCode == "PGRST303" {
				require.Equal(t, "JWT expired", msg)
			}
		})
	}
}
