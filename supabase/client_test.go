package supabase_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase"
)

// Client unit tests against an httptest server: no database.

// fakeBundle is a Client wired to an httptest server whose handler the test
// supplies.
type fakeBundle struct {
	client *supabase.Client
	srv    *httptest.Server
	hits   *atomic.Int64
}

func setupFake(t *testing.T, cfg *supabase.Config, h http.HandlerFunc) *fakeBundle {
	t.Helper()
	hits := &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	c := supabase.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.URL = srv.URL
	c.APIKey = testAPIKey
	if c.Retry.Base == 0 {
		c.Retry = supabase.RetryConfig{Attempts: 3, Base: time.Millisecond, Max: 2 * time.Millisecond}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = srv.Client()
	}
	client, err := supabase.New(&c)
	require.NoError(t, err)
	return &fakeBundle{client: client, srv: srv, hits: hits}
}

func writeRaw(w http.ResponseWriter, status int, contentType, body string) {
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func pgrstBody(code, msg string) string {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "details": nil, "hint": nil})
	return string(b)
}

func TestClientErrorDecoding(t *testing.T) {
	t.Parallel()
	const jsonCT = "application/json; charset=utf-8"
	tests := []struct {
		name           string
		givenStatus    int
		givenCT        string
		givenBody      string
		expectCode     string
		expectMessage  string
		expectDetails  string
		expectSentinel []error
		expectNot      []error
	}{
		{
			"HTML502", http.StatusBadGateway, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>",
			"", "Bad Gateway", "<html><body><h1>502 Bad Gateway</h1></body></html>",
			[]error{supabase.ErrUnavailable},
			[]error{supabase.ErrBadRequest, supabase.ErrNotFound},
		},
		{
			"HTML503", http.StatusServiceUnavailable, "text/html; charset=utf-8", "<html>upstream connect error</html>",
			"", "Service Unavailable", "<html>upstream connect error</html>",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"PlainText504", http.StatusGatewayTimeout, "text/plain", "upstream request timeout\n",
			"", "Gateway Timeout", "upstream request timeout",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"NoContentType503", http.StatusServiceUnavailable, "", "",
			"", "Service Unavailable", "",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"JSONContentTypeButHTMLBody", http.StatusBadGateway, jsonCT, "<html>bad gateway</html>",
			"", "Bad Gateway", "<html>bad gateway</html>",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"StartingUp500", http.StatusInternalServerError, jsonCT, pgrstBody("57P03", "the database system is starting up"),
			"57P03", "the database system is starting up", "",
			[]error{supabase.ErrUnavailable},
			[]error{supabase.ErrBadRequest},
		},
		{
			"HTML500NotTransient", http.StatusInternalServerError, "text/html", "<h1>oops</h1>",
			"", "Internal Server Error", "<h1>oops</h1>", nil,
			[]error{supabase.ErrUnavailable},
		},
		{
			"LongBodyTruncated", http.StatusBadGateway, "text/html", strings.Repeat("x", 1000),
			"", "Bad Gateway", strings.Repeat("x", 200) + "…",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"PGRST116ZeroRows", http.StatusNotAcceptable, jsonCT,
			`{"code":"PGRST116","message":"Cannot coerce the result to a single JSON object","details":"The result contains 0 rows","hint":null}`,
			"PGRST116", "Cannot coerce the result to a single JSON object", "The result contains 0 rows",
			[]error{supabase.ErrNotFound, supabase.ErrNotSingular},
			[]error{supabase.ErrUndefined},
		},
		{
			"PGRST116TwoRows", http.StatusNotAcceptable, jsonCT,
			`{"code":"PGRST116","message":"Cannot coerce the result to a single JSON object","details":"The result contains 2 rows","hint":null}`,
			"PGRST116", "Cannot coerce the result to a single JSON object", "The result contains 2 rows",
			[]error{supabase.ErrNotSingular},
			[]error{supabase.ErrNotFound},
		},
		{
			"Unique23505", http.StatusConflict, jsonCT,
			`{"code":"23505","message":"duplicate key value violates unique constraint \"uq\"","details":"Key (k)=(1) already exists.","hint":null}`,
			"23505", `duplicate key value violates unique constraint "uq"`, "Key (k)=(1) already exists.",
			[]error{supabase.ErrConflict},
			[]error{supabase.ErrUnavailable, supabase.ErrForbidden},
		},
		{
			"RLS42501", http.StatusForbidden, jsonCT,
			`{"code":"42501","message":"new row violates row-level security policy for table \"ai_tasks\"","details":null,"hint":null}`,
			"42501", `new row violates row-level security policy for table "ai_tasks"`, "",
			[]error{supabase.ErrForbidden},
			[]error{supabase.ErrJWT},
		},
		{
			"JWTInvalid301", http.StatusUnauthorized, jsonCT, pgrstBody("PGRST301", "No suitable key or wrong key type"),
			"PGRST301", "No suitable key or wrong key type", "",
			[]error{supabase.ErrJWT},
			[]error{supabase.ErrForbidden},
		},
		{
			"JWTExpired303", http.StatusUnauthorized, jsonCT, pgrstBody("PGRST303", "JWT expired"),
			"PGRST303", "JWT expired", "",
			[]error{supabase.ErrJWT},
			nil,
		},
		{
			"PoolTimeout003", http.StatusGatewayTimeout, jsonCT, pgrstBody("PGRST003", "Timed out acquiring connection"),
			"PGRST003", "Timed out acquiring connection", "",
			[]error{supabase.ErrUnavailable},
			nil,
		},
		{
			"UndefinedFunction", http.StatusNotFound, jsonCT, pgrstBody("PGRST202", "Could not find the function"),
			"PGRST202", "Could not find the function", "",
			[]error{supabase.ErrUndefined},
			[]error{supabase.ErrNotFound},
		},
		{
			"Raise", http.StatusBadRequest, jsonCT,
			`{"code":"P0001","message":"boom","details":"d","hint":"h"}`,
			"P0001", "boom", "d",
			[]error{supabase.ErrBadRequest},
			nil,
		},
		{
			"GatewayJSONError", http.StatusUnauthorized, jsonCT, `{"message":"Invalid API key"}`,
			"", "Invalid API key", "", nil, nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupFake(t, &supabase.Config{Retry: supabase.RetryConfig{Attempts: 1, Base: time.Millisecond}},
				func(w http.ResponseWriter, _ *http.Request) {
					writeRaw(w, tt.givenStatus, tt.givenCT, tt.givenBody)
				})
			for _, call := range []func() error{
				func() error { return b.client.RPC(t.Context(), supabase.Identity{}, "f", nil, nil) },
				func() error { return b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{}, nil) },
			} {
				err := call()
				var se *supabase.Error
				require.ErrorAs(t, err, &se)
				require.Equal(t, tt.givenStatus, se.StatusCode())
				require.Equal(t, tt.givenStatus, se.Status)
				require.Equal(t, tt.expectCode, se.Code)
				require.Equal(t, tt.expectMessage, se.Message)
				require.Equal(t, tt.expectDetails, se.Details)
				for _, s := range tt.expectSentinel {
					require.ErrorIs(t, err, s)
				}
				for _, s := range tt.expectNot {
					require.NotErrorIs(t, err, s)
				}
			}
		})
	}
}

func TestClientRetries(t *testing.T) {
	t.Parallel()
	unavailable := func(w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusServiceUnavailable, "text/html", "<h1>503</h1>")
	}
	serialization := func(w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusInternalServerError, "application/json", pgrstBody("40001", "could not serialize access"))
	}
	badRequest := func(w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusBadRequest, "application/json", pgrstBody("P0001", "no"))
	}
	conflict := func(w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusConflict, "application/json", pgrstBody("23505", "dup"))
	}
	hangUp := func(w http.ResponseWriter, _ *http.Request) {
		// Close the connection without an answer: a transport error.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
	type call func(ctx context.Context, c *supabase.Client) error
	selectCall := func(ctx context.Context, c *supabase.Client) error {
		return c.Select(ctx, supabase.Identity{}, "t", supabase.Query{}, nil)
	}
	rpcCall := func(ctx context.Context, c *supabase.Client) error {
		return c.RPC(ctx, supabase.Identity{}, "f", map[string]any{"a": 1}, nil)
	}
	idempotentRPC := func(ctx context.Context, c *supabase.Client) error {
		return c.RPC(supabase.Idempotent(ctx), supabase.Identity{}, "f", map[string]any{"a": 1}, nil)
	}
	tests := []struct {
		name         string
		givenHandler http.HandlerFunc
		whenCall     call
		expectHits   int64
		expectErr    error
	}{
		{"SelectUnavailable", unavailable, selectCall, 3, supabase.ErrUnavailable},
		{"SelectSerialization", serialization, selectCall, 3, supabase.ErrSerialization},
		{"SelectTransportError", hangUp, selectCall, 3, supabase.ErrUnavailable},
		{"SelectBadRequestNotRetried", badRequest, selectCall, 1, supabase.ErrBadRequest},
		{"SelectConflictNotRetried", conflict, selectCall, 1, supabase.ErrConflict},
		{"RPCUnavailableNotRetried", unavailable, rpcCall, 1, supabase.ErrUnavailable},
		{"RPCSerializationNotRetried", serialization, rpcCall, 1, supabase.ErrSerialization},
		{"RPCTransportErrorNotRetried", hangUp, rpcCall, 1, supabase.ErrUnavailable},
		{"IdempotentRPCUnavailable", unavailable, idempotentRPC, 3, supabase.ErrUnavailable},
		{"IdempotentRPCSerialization", serialization, idempotentRPC, 3, supabase.ErrSerialization},
		{"IdempotentRPCBadRequestNotRetried", badRequest, idempotentRPC, 1, supabase.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupFake(t, nil, tt.givenHandler)
			err := tt.whenCall(t.Context(), b.client)
			require.ErrorIs(t, err, tt.expectErr)
			require.Equal(t, tt.expectHits, b.hits.Load())
		})
	}

	t.Run("SucceedsAfterTransientFailures", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int64
		b := setupFake(t, &supabase.Config{Retry: supabase.RetryConfig{Attempts: 4, Base: time.Millisecond}},
			func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 {
					unavailable(w, r)
					return
				}
				writeRaw(w, http.StatusOK, "application/json", `[{"id":1}]`)
			})
		var rows []map[string]int
		require.NoError(t, b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{}, &rows))
		require.Equal(t, []map[string]int{{"id": 1}}, rows)
		require.Equal(t, int64(3), b.hits.Load())
	})

	t.Run("RetryBodyResent", func(t *testing.T) {
		t.Parallel()
		var (
			n      atomic.Int64
			mu     sync.Mutex
			bodies []string
		)
		b := setupFake(t, nil, func(w http.ResponseWriter, r *http.Request) {
			data, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(data))
			mu.Unlock()
			if n.Add(1) == 1 {
				unavailable(w, r)
				return
			}
			writeRaw(w, http.StatusOK, "application/json", `1`)
		})
		var out int
		require.NoError(t, b.client.RPC(supabase.Idempotent(t.Context()), supabase.Identity{}, "f", map[string]any{"a": 1}, &out))
		require.Equal(t, 1, out)
		require.Equal(t, []string{`{"a":1}`, `{"a":1}`}, bodies)
	})

	t.Run("BackoffStopsOnCancel", func(t *testing.T) {
		t.Parallel()
		// A backoff far longer than the test: cancelling the context during
		// it ends the call at once.
		ctx, cancel := context.WithCancel(t.Context())
		answered := make(chan struct{})
		b := setupFake(t, &supabase.Config{Retry: supabase.RetryConfig{Attempts: 5, Base: time.Hour, Max: time.Hour}},
			func(w http.ResponseWriter, r *http.Request) {
				unavailable(w, r)
				close(answered)
			})
		done := make(chan error, 1)
		go func() { done <- selectCall(ctx, b.client) }()
		<-answered
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, int64(1), b.hits.Load())
		case <-time.After(5 * time.Second):
			t.Fatal("backoff did not stop on cancel")
		}
	})
}

func TestClientMaxResponseBytes(t *testing.T) {
	t.Parallel()
	big := `[` + strings.Repeat(`{"k":"vvvvvvvvvv"},`, 100) + `{}]`
	b := setupFake(t, &supabase.Config{MaxResponseBytes: 512}, func(w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusOK, "application/json", big)
	})
	var rows []map[string]string
	err := b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{}, &rows)
	require.ErrorIs(t, err, supabase.ErrResponseTooLarge)
	require.ErrorContains(t, err, "select t")
	require.ErrorContains(t, err, "512 bytes")
	require.NotErrorIs(t, err, supabase.ErrUnavailable)
	require.Empty(t, rows)
	require.Equal(t, int64(1), b.hits.Load(), "a too-large response is not retried")

	t.Run("ExactlyAtLimit", func(t *testing.T) {
		t.Parallel()
		body := `"` + strings.Repeat("a", 510) + `"`
		b := setupFake(t, &supabase.Config{MaxResponseBytes: int64(len(body))}, func(w http.ResponseWriter, _ *http.Request) {
			writeRaw(w, http.StatusOK, "application/json", body)
		})
		var s string
		require.NoError(t, b.client.RPC(t.Context(), supabase.Identity{}, "f", nil, &s))
		require.Len(t, s, 510)
	})

	t.Run("LargeErrorKeepsStatus", func(t *testing.T) {
		t.Parallel()
		b := setupFake(t, &supabase.Config{MaxResponseBytes: 512, Retry: supabase.RetryConfig{Attempts: 1, Base: time.Millisecond}},
			func(w http.ResponseWriter, _ *http.Request) {
				writeRaw(w, http.StatusBadGateway, "text/html", strings.Repeat("<p>bad gateway</p>", 100))
			})
		err := b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{}, nil)
		require.ErrorIs(t, err, supabase.ErrUnavailable)
		var se *supabase.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, http.StatusBadGateway, se.StatusCode())
	})
}

func TestClientCancellation(t *testing.T) {
	t.Parallel()
	// blockingServer signals arrived when a request is in the handler, which
	// then blocks until the client goes away.
	blockingServer := func(t *testing.T, cfg *supabase.Config) (*fakeBundle, chan struct{}) {
		t.Helper()
		arrived := make(chan struct{}, 10)
		release := make(chan struct{})
		b := setupFake(t, cfg, func(_ http.ResponseWriter, r *http.Request) {
			// Reading the body lets the server notice the client hanging up.
			_, _ = io.Copy(io.Discard, r.Body)
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		t.Cleanup(func() { close(release) }) // runs before srv.Close
		return b, arrived
	}
	t.Run("ContextCancel", func(t *testing.T) {
		t.Parallel()
		b, arrived := blockingServer(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.client.RPC(supabase.Idempotent(ctx), supabase.Identity{}, "f", nil, nil) }()
		<-arrived
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
			require.NotErrorIs(t, err, supabase.ErrUnavailable)
		case <-time.After(5 * time.Second):
			t.Fatal("call did not return after cancel")
		}
		require.Equal(t, int64(1), b.hits.Load(), "a cancelled call is not retried")
	})
	t.Run("CallTimeout", func(t *testing.T) {
		t.Parallel()
		b, arrived := blockingServer(t, &supabase.Config{Timeout: 50 * time.Millisecond})
		done := make(chan error, 1)
		go func() { done <- b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{}, nil) }()
		// On a loaded machine the 50 ms can run out before the request
		// reaches the handler; the call must time out either way (waiting
		// for arrival alone hung a CI run).
		select {
		case <-arrived:
		case err := <-done:
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return
		}
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(5 * time.Second):
			t.Fatal("call did not time out")
		}
	})
	t.Run("AlreadyCancelled", func(t *testing.T) {
		t.Parallel()
		b, _ := blockingServer(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := b.client.Select(ctx, supabase.Identity{}, "t", supabase.Query{}, nil)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, int64(0), b.hits.Load())
	})
}

func TestClientHeaders(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, query string
		header              http.Header
		body                string
	}
	record := func(t *testing.T) (*fakeBundle, chan seen) {
		t.Helper()
		ch := make(chan seen, 10)
		b := setupFake(t, nil, func(w http.ResponseWriter, r *http.Request) {
			data, _ := io.ReadAll(r.Body)
			ch <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(data)}
			writeRaw(w, http.StatusOK, "application/json", `{}`)
		})
		return b, ch
	}
	t.Run("RPC", func(t *testing.T) {
		t.Parallel()
		b, ch := record(t)
		require.NoError(t, b.client.RPC(t.Context(), supabase.Identity{Token: "tok-a"}, "claim_tasks", map[string]any{"p_limit": 2}, nil))
		s := <-ch
		require.Equal(t, http.MethodPost, s.method)
		require.Equal(t, "/rest/v1/rpc/claim_tasks", s.path)
		require.Equal(t, []string{testAPIKey}, s.header.Values("apikey"))
		require.Equal(t, []string{"Bearer tok-a"}, s.header.Values("Authorization"))
		require.Equal(t, []string{"application/json"}, s.header.Values("Accept"))
		require.Equal(t, []string{"application/json"}, s.header.Values("Content-Type"))
		require.Empty(t, s.header.Values("Prefer"), "RPC needs no preference")
		require.JSONEq(t, `{"p_limit":2}`, s.body)
	})
	t.Run("RPCNoArgsSendsEmptyObject", func(t *testing.T) {
		t.Parallel()
		b, ch := record(t)
		require.NoError(t, b.client.RPC(t.Context(), supabase.Identity{}, "t_noargs", nil, nil))
		s := <-ch
		require.Equal(t, `{}`, s.body)
		require.Empty(t, s.header.Values("Authorization"), "anonymous: no bearer, the apikey selects anon")
	})
	t.Run("Select", func(t *testing.T) {
		t.Parallel()
		b, ch := record(t)
		require.NoError(t, b.client.Select(t.Context(), supabase.Identity{Token: "tok-b"}, "ai_tasks", supabase.Query{Columns: []string{"id"}}, nil))
		s := <-ch
		require.Equal(t, http.MethodGet, s.method)
		require.Equal(t, "/rest/v1/ai_tasks", s.path)
		require.Equal(t, "select=id", s.query)
		require.Equal(t, []string{"Bearer tok-b"}, s.header.Values("Authorization"))
		require.Equal(t, []string{"application/json"}, s.header.Values("Accept"))
		require.Empty(t, s.header.Values("Content-Type"), "GET has no body")
		require.Empty(t, s.body)
	})
	t.Run("SelectSingle", func(t *testing.T) {
		t.Parallel()
		b, ch := record(t)
		require.NoError(t, b.client.Select(t.Context(), supabase.Identity{Token: "tok"}, "ai_tasks", supabase.Query{Single: true}, nil))
		s := <-ch
		require.Equal(t, []string{"application/vnd.pgrst.object+json"}, s.header.Values("Accept"))
	})
	t.Run("ConcurrentTokensNotShared", func(t *testing.T) {
		t.Parallel()
		// Both requests are held in the handler until both arrived, so they
		// are in flight at once on the same Client.
		var (
			mu   sync.Mutex
			got  = map[string]string{}
			both = make(chan struct{})
			n    atomic.Int64
		)
		b := setupFake(t, nil, func(w http.ResponseWriter, r *http.Request) {
			var args struct {
				Who string `json:"who"`
			}
			_ = json.NewDecoder(r.Body).Decode(&args)
			mu.Lock()
			got[args.Who] = r.Header.Get("Authorization")
			mu.Unlock()
			if n.Add(1) == 2 {
				close(both)
			}
			select {
			case <-both:
			case <-r.Context().Done():
				return
			}
			writeRaw(w, http.StatusOK, "application/json", `null`)
		})
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, who := range []string{"alice", "bob"} {
			wg.Go(func() {
				errs <- b.client.RPC(t.Context(), supabase.Identity{Token: "token-" + who}, "f", map[string]any{"who": who}, nil)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, map[string]string{"alice": "Bearer token-alice", "bob": "Bearer token-bob"}, got)
	})
}

func TestClientFilterEncoding(t *testing.T) {
	t.Parallel()
	queries := make(chan string, 1)
	b := setupFake(t, nil, func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		writeRaw(w, http.StatusOK, "application/json", `[]`)
	})
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("", 3600))
	tests := []struct {
		name        string
		givenFilter supabase.Filter
		expectParam string // the decoded value of the filter's query parameter
	}{
		{"EqPlain", supabase.Eq("c", "abc"), "eq.abc"},
		{"EqReservedVerbatim", supabase.Eq("c", `a,b.c:(d) "e" \f`), `eq.a,b.c:(d) "e" \f`},
		{"EqPercentPlusAmp", supabase.Eq("c", "50%+x&y=z#"), "eq.50%+x&y=z#"},
		{"EqEmpty", supabase.Eq("c", ""), "eq."},
		{"EqInt", supabase.Eq("c", 42), "eq.42"},
		{"EqBool", supabase.Eq("c", true), "eq.true"},
		{"EqTime", supabase.Eq("c", ts), "eq.2026-01-02T03:04:05.0000006+01:00"},
		{"NeqUnicode", supabase.Neq("c", "héllo wörld"), "neq.héllo wörld"},
		{"Like", supabase.Like("c", "a*b"), "like.a*b"},
		{"ILike", supabase.ILike("c", "%x%"), "ilike.%x%"},
		{"InPlain", supabase.In("c", "a", "b"), "in.(a,b)"},
		{"InInts", supabase.In("c", 1, 2, 3), "in.(1,2,3)"},
		{"InComma", supabase.In("c", "a,b"), `in.("a,b")`},
		{"InDot", supabase.In("c", "a.b"), `in.("a.b")`},
		{"InColon", supabase.In("c", "a:b"), `in.("a:b")`},
		{"InParens", supabase.In("c", "(x)"), `in.("(x)")`},
		{"InQuote", supabase.In("c", `say "hi"`), `in.("say \"hi\"")`},
		{"InBackslash", supabase.In("c", `a\b`), `in.("a\\b")`},
		{"InSpace", supabase.In("c", "a b"), `in.("a b")`},
		{"InEmptyString", supabase.In("c", ""), `in.("")`},
		{"InMixed", supabase.In("c", "plain", `a,b.c:(d) "q" \z`), `in.(plain,"a,b.c:(d) \"q\" \\z")`},
		{"InEmptyList", supabase.In[string]("c"), "in.()"},
		{"IsNull", supabase.Is("c", nil), "is.null"},
		{"IsNotNullWorksBeforeV13", supabase.Is("c", supabase.IsNotNull), "not.is.null"},
		{"IsTrue", supabase.Is("c", true), "is.true"},
		{"IsFalse", supabase.Is("c", false), "is.false"},
	}
	for _, tt := range tests {
		// Sequential: one server, one query at a time.
		require.NoError(t, b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{Filters: []supabase.Filter{tt.givenFilter}}, nil), tt.name)
		raw := <-queries
		require.NotContains(t, raw, " ", "%s: query must be percent-encoded", tt.name)
		require.NotContains(t, raw, `"`, tt.name)
		vals, err := parseQuery(raw)
		require.NoError(t, err, tt.name)
		require.Equal(t, []string{tt.expectParam}, vals["c"], "%s: raw query %s", tt.name, raw)
	}

	t.Run("OrderLimitOffsetColumns", func(t *testing.T) {
		t.Parallel()
		q := make(chan string, 1)
		b := setupFake(t, nil, func(w http.ResponseWriter, r *http.Request) {
			q <- r.URL.RawQuery
			writeRaw(w, http.StatusOK, "application/json", `[]`)
		})
		require.NoError(t, b.client.Select(t.Context(), supabase.Identity{}, "t", supabase.Query{
			Columns: []string{"id", "name"},
			Filters: []supabase.Filter{supabase.Eq("a", 1), supabase.Gt("a", 0)},
			Order:   []supabase.Order{supabase.Desc("a"), {Column: "b", Nulls: supabase.NullsFirst}, {Column: "c", Desc: true, Nulls: supabase.NullsLast}},
			Limit:   10, Offset: 20,
		}, nil))
		vals, err := parseQuery(<-q)
		require.NoError(t, err)
		require.Equal(t, map[string][]string{
			"select": {"id,name"},
			"a":      {"eq.1", "gt.0"},
			"order":  {"a.desc,b.asc.nullsfirst,c.desc.nullslast"},
			"limit":  {"10"},
			"offset": {"20"},
		}, vals)
	})

	t.Run("InvalidIdentifiersRejectedLocally", func(t *testing.T) {
		t.Parallel()
		b := setupFake(t, nil, func(w http.ResponseWriter, _ *http.Request) {
			writeRaw(w, http.StatusOK, "application/json", `[]`)
		})
		for _, q := range []supabase.Query{
			{Columns: []string{"id,secret"}},
			{Filters: []supabase.Filter{supabase.Eq("a&b", 1)}},
			{Filters: []supabase.Filter{{Column: "a", Op: "fts", Value: "x"}}},
			{Filters: []supabase.Filter{{Column: "a", Op: supabase.OpIn, Value: "a,b"}}},
			{Filters: []supabase.Filter{supabase.Is("a", "maybe")}},
			{Order: []supabase.Order{{Column: "a", Nulls: "sideways"}}},
			{Limit: -1},
		} {
			err := b.client.Select(t.Context(), supabase.Identity{}, "t", q, nil)
			require.ErrorIs(t, err, supabase.ErrBadRequest, "%+v", q)
		}
		require.ErrorIs(t, b.client.Select(t.Context(), supabase.Identity{}, "t?x=1", supabase.Query{}, nil), supabase.ErrBadRequest)
		require.ErrorIs(t, b.client.RPC(t.Context(), supabase.Identity{}, "../t", nil, nil), supabase.ErrBadRequest)
		require.Equal(t, int64(0), b.hits.Load())
	})
}

// parseQuery decodes a raw query the way PostgREST does (percent-decoding,
// '+' as space), keeping repeated keys.
func parseQuery(raw string) (map[string][]string, error) {
	out := map[string][]string{}
	for kv := range strings.SplitSeq(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		dk, err := unescape(k)
		if err != nil {
			return nil, err
		}
		dv, err := unescape(v)
		if err != nil {
			return nil, err
		}
		out[dk] = append(out[dk], dv)
	}
	return out, nil
}

func unescape(s string) (string, error) { return url.QueryUnescape(s) }
