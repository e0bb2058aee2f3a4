// Package postgresttest is a PostgREST-protocol test server: it does what
// PostgREST (v14) does, over real PostgreSQL, for the subset of the protocol
// orchable and supabase-js use, so the PostgREST transport and the front
// end's queries can be tested without PostgREST. Test-only code.
//
// Per request (PostgREST docs references/auth.rst, references/transactions.rst):
// the JWT is verified (HS256 secret and/or a JWKS; exp/nbf/iat with 30 s of
// skew), then one transaction runs with SET LOCAL ROLE from the "role" claim
// (the anon role without a token), request.jwt.claims, request.headers (names
// lowercased), request.method and request.path set; errors come back as
// {code, message, details, hint} with PostgREST's SQLSTATE → HTTP mapping
// (references/errors.rst).
//
// Served under /rest/v1 (as behind the Supabase gateway):
//   - POST /rpc/<fn> with named arguments in a JSON object
//     (references/api/functions.rst);
//   - GET/HEAD /<table> with select= (columns, alias:col, one- or
//     many-level embedding through foreign keys, rel!fkey(...)), filters
//     (eq neq gt gte lt lte like ilike in is cs cd, not.), or=(…)/and=(…),
//     order=, limit, offset, Prefer: count=exact, Content-Range
//     (references/api/tables_views.rst, resource_embedding.rst,
//     pagination_count.rst);
//   - POST /<table> (object or array, columns=, on_conflict=, Prefer:
//     return=representation|minimal, resolution=merge-duplicates|
//     ignore-duplicates), PATCH and DELETE with filters
//     (references/api/tables_views.rst "Insert", "Update", "Upsert", "Delete");
//   - Accept: application/vnd.pgrst.object+json with 406 PGRST116 and a
//     rollback when the result is not exactly one row
//     (references/api/resource_representation.rst "Singular or plural").
//
// Not implemented: GET /rpc, filters and select on RPC results, schemas
// other than public, Prefer: missing=default/handling/tx, range headers.
package postgresttest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/supabase"
	"github.com/orchable/orchable/supabase/internal/pgcall"
)

// Config configures a Server.
type Config struct {
	// JWTSecret verifies HS256/384/512 tokens (PostgREST jwt-secret as a
	// string). Empty disables HMAC tokens.
	JWTSecret []byte
	// JWKSURL, when set, verifies asymmetric tokens (ES256, RS256) by kid.
	JWKSURL string
	// APIKeys, when non-empty, are the accepted apikey header values (what
	// the Supabase gateway checks); a request without one gets 401.
	APIKeys []string
	// AnonRole is the role without a token (PostgREST db-anon-role).
	// Default "anon".
	AnonRole string
	// Roles a token's "role" claim may select (the authenticator's member
	// roles). Default anon, authenticated, service_role.
	Roles []string
	// Now is the clock for exp/nbf/iat. Default time.Now.
	Now func() time.Time
	// MaxBodyBytes caps request bodies. Default 8 MiB.
	MaxBodyBytes int64
}

// Server is the PostgREST-protocol handler.
type Server struct {
	pool   *pgxpool.Pool
	cfg    Config
	jwks   keyfunc.Keyfunc
	cancel context.CancelFunc

	fkOnce sync.Once
	fks    []foreignKey
	fkErr  error
	pkMu   sync.Mutex
	pks    map[string][]string
	funcs  sync.Map // fn → []*pgcall.Sig
}

// New returns a Server over pool. Close releases the JWKS refresher.
func New(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (*Server, error) {
	c := *cfg
	if c.AnonRole == "" {
		c.AnonRole = "anon"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{c.AnonRole, "authenticated", "service_role"}
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	s := &Server{pool: pool, cfg: c, pks: map[string][]string{}}
	if c.JWKSURL != "" {
		kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		kf, err := keyfunc.NewDefaultCtx(kctx, []string{c.JWKSURL})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("postgresttest: JWKS %s: %w", c.JWKSURL, err)
		}
		s.jwks, s.cancel = kf, cancel
	}
	return s, nil
}

// Close stops the JWKS refresher, if any.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
}

// Start serves a Server on a loopback port for the duration of the test and
// returns its base URL (use it as SUPABASE_URL: requests go to
// <url>/rest/v1/...).
func Start(tb testing.TB, pool *pgxpool.Pool, cfg *Config) string {
	tb.Helper()
	s, err := New(tb.Context(), pool, cfg)
	if err != nil {
		tb.Fatalf("postgresttest: %v", err)
	}
	hs := httptest.NewServer(s)
	tb.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return hs.URL
}

// request is one request's identity and parsed parts.
type request struct {
	r        *http.Request
	path     string // after /rest/v1
	role     string
	claims   string
	authed   bool
	singular bool
	prefer   map[string]string
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/rest/v1")
	if !ok || path == "" || path == "/" {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "no Route matched with those values"})
		return
	}
	if len(s.cfg.APIKeys) > 0 {
		key := r.Header.Get("apikey")
		if key == "" {
			key = r.URL.Query().Get("apikey")
		}
		if !slices.Contains(s.cfg.APIKeys, key) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{
				"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key.",
			})
			return
		}
	}
	req := &request{r: r, path: path, prefer: parsePrefer(r.Header.Values("Prefer"))}
	if err := s.authenticate(r, req); err != nil {
		writeError(w, err)
		return
	}
	req.singular = strings.Contains(r.Header.Get("Accept"), "application/vnd.pgrst.object+json")

	var err error
	switch {
	case strings.HasPrefix(path, "/rpc/"):
		if r.Method != http.MethodPost {
			err = pgrst("PGRST101", "Only GET and POST are allowed for rpc in this test server (POST only)", "", req.authed)
			break
		}
		err = s.rpc(w, req, strings.TrimPrefix(path, "/rpc/"))
	default:
		table := strings.TrimPrefix(path, "/")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = s.read(w, req, table)
		case http.MethodPost:
			err = s.insert(w, req, table)
		case http.MethodPatch:
			err = s.update(w, req, table)
		case http.MethodDelete:
			err = s.delete(w, req, table)
		default:
			err = pgrst("PGRST117", "Unsupported HTTP method: "+r.Method, "", req.authed)
		}
	}
	if err != nil {
		writeError(w, err)
	}
}

// authenticate verifies the bearer token like PostgREST (references/auth.rst):
// signature, exp/nbf/iat with 30 s skew, role claim (anon role without one).
func (s *Server) authenticate(r *http.Request, req *request) error {
	h := r.Header.Get("Authorization")
	tok := ""
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		tok = strings.TrimSpace(h[7:])
	}
	if tok == "" {
		req.role, req.claims = s.cfg.AnonRole, `{"role":"`+s.cfg.AnonRole+`"}`
		return nil
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512", "ES256", "RS256"}),
		jwt.WithLeeway(30*time.Second), jwt.WithIssuedAt(), jwt.WithTimeFunc(s.cfg.Now))
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
			if len(s.cfg.JWTSecret) == 0 {
				return nil, errors.New("no HMAC secret configured")
			}
			return s.cfg.JWTSecret, nil
		}
		if s.jwks == nil {
			return nil, errors.New("no JWKS configured")
		}
		return s.jwks.KeyfuncCtx(r.Context())(t)
	})
	if err != nil {
		code, msg := "PGRST301", err.Error()
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			code, msg = "PGRST303", "JWT expired"
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			code = "PGRST303"
		}
		return &jwtError{pgrst(code, msg, "", false)}
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	req.claims = string(payload)
	role, _ := claims["role"].(string)
	if role == "" {
		role = s.cfg.AnonRole
	}
	req.role = role
	req.authed = role != s.cfg.AnonRole
	if !slices.Contains(s.cfg.Roles, role) {
		// The authenticator of a Supabase project can only switch to these.
		return supabase.NewError("42501", fmt.Sprintf("permission denied to set role \"%s\"", role), "", "", req.authed)
	}
	return nil
}

// jwtError marks errors that get a WWW-Authenticate header (Error.hs).
type jwtError struct{ err *supabase.Error }

func (e *jwtError) Error() string { return e.err.Error() }
func (e *jwtError) Unwrap() error { return e.err }

// within runs fn in one transaction as the request's identity; any error
// (including a singular-response failure) rolls it back.
func (s *Server) within(req *request, readOnly bool, fn func(tx pgx.Tx) error) error {
	ctx := req.r.Context()
	mode := pgx.ReadWrite
	if readOnly {
		mode = pgx.ReadOnly
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: mode})
	if err != nil {
		return s.dbErr(err, req)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	headers := map[string]string{}
	for k, v := range req.r.Header {
		headers[strings.ToLower(k)] = v[0]
	}
	hb, _ := json.Marshal(headers)
	if _, err := tx.Exec(ctx, "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), "+
		"set_config('request.headers', $3, true), set_config('request.method', $4, true), "+
		"set_config('request.path', $5, true), set_config('search_path', 'public, extensions', true)",
		req.role, req.claims, string(hb), req.r.Method, req.path); err != nil {
		return s.dbErr(err, req)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return s.dbErr(err, req)
	}
	return nil
}

func (s *Server) dbErr(err error, req *request) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return supabase.NewError(pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Hint, req.authed)
	}
	var se *supabase.Error
	if errors.As(err, &se) {
		return err
	}
	return pgrst("PGRST000", err.Error(), "", req.authed)
}

func pgrst(code, msg, details string, authed bool) *supabase.Error {
	return supabase.NewError(code, msg, details, "", authed)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes PostgREST's error body (references/errors.rst), with
// Proxy-Status, and WWW-Authenticate for JWT errors.
func writeError(w http.ResponseWriter, err error) {
	var se *supabase.Error
	if !errors.As(err, &se) {
		se = supabase.NewError("PGRST000", err.Error(), "", "", false)
	}
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	w.Header().Set("Proxy-Status", "PostgREST; error="+se.Code)
	var je *jwtError
	if errors.As(err, &je) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+se.Message+`"`)
	}
	writeJSON(w, se.StatusCode(), map[string]any{
		"code": se.Code, "message": se.Message, "details": nullable(se.Details), "hint": nullable(se.Hint),
	})
}

// parsePrefer splits Prefer headers into name → value (preferences.rst).
func parsePrefer(values []string) map[string]string {
	m := map[string]string{}
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			if name != "" {
				m[name] = val
			}
		}
	}
	return m
}

func readBody(w http.ResponseWriter, req *request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.r.Body, limit))
	if err != nil {
		return nil, pgrst("PGRST102", "Empty or invalid json: "+err.Error(), "", req.authed)
	}
	return body, nil
}

// rpc calls public.<fn> (references/api/functions.rst): POST runs READ
// WRITE for volatile functions and READ ONLY otherwise.
func (s *Server) rpc(w http.ResponseWriter, req *request, fn string) error {
	body, err := readBody(w, req, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(body, &args); err != nil {
		return pgrst("PGRST102", "Empty or invalid json", err.Error(), req.authed)
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var params []any
	if len(keys) > 0 {
		params = []any{string(body)}
	}
	var (
		sig    *pgcall.Sig
		result []byte
	)
	for fresh := false; ; fresh = true {
		var cached bool
		sig, cached, err = s.signature(req, fn, keys)
		if err == nil {
			err = s.within(req, !sig.Volatile, func(tx pgx.Tx) error {
				if err := tx.QueryRow(req.r.Context(), sig.CallSQL(keys), params...).Scan(&result); err != nil {
					return s.dbErr(err, req)
				}
				if req.singular && sig.RetSet {
					var rows []json.RawMessage
					if err := json.Unmarshal(result, &rows); err != nil {
						return s.dbErr(err, req)
					}
					if len(rows) != 1 {
						return notSingular(len(rows), req)
					}
					result = rows[0]
				}
				return nil
			})
		}
		if fresh || !cached || !staleSignature(err) {
			break
		}
		// The function changed since it was cached (PostgREST reloads its
		// schema cache on NOTIFY pgrst; this server on the failure): the
		// transaction was rolled back, so look it up again and retry once.
		s.funcs.Delete(fn)
	}
	if err != nil {
		return err
	}
	if sig.Void {
		// PostgREST answers a void function with 204 and no body.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeBody(w, req, http.StatusOK, result)
	return nil
}

// signature returns the overload of fn taking keys, and whether it came
// from the cache.
func (s *Server) signature(req *request, fn string, keys []string) (*pgcall.Sig, bool, error) {
	v, cached := s.funcs.Load(fn)
	if !cached {
		sigs, err := pgcall.Lookup(req.r.Context(), s.pool, fn)
		if err != nil {
			return nil, false, s.dbErr(err, req)
		}
		if len(sigs) > 0 {
			s.funcs.Store(fn, sigs)
		}
		v = sigs
	}
	if sig := pgcall.Pick(v.([]*pgcall.Sig), keys); sig != nil { //nolint:forcetypeassert // only []*pgcall.Sig is stored
		return sig, cached, nil
	}
	return nil, cached, pgrst("PGRST202", pgcall.NotFoundMessage(fn, keys), "", req.authed)
}

// staleSignature reports whether err is what an outdated cached signature
// gives: PGRST202 (no overload takes these names), 42883 (no function
// matches the call) or 42725 (several do).
func staleSignature(err error) bool {
	var se *supabase.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code == "PGRST202" || se.Code == "42883" || se.Code == "42725"
}

func notSingular(n int, req *request) error {
	return pgrst("PGRST116", "Cannot coerce the result to a single JSON object",
		fmt.Sprintf("The result contains %d rows", n), req.authed)
}

func writeBody(w http.ResponseWriter, req *request, status int, body []byte) {
	ct := "application/json; charset=utf-8"
	if req.singular {
		ct = "application/vnd.pgrst.object+json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	if req.r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// result runs a statement returning (count, json array) and applies the
// singular rule.
func (s *Server) result(tx pgx.Tx, req *request, sql string, params []any) (int, []byte, error) {
	var (
		n    int
		body []byte
	)
	if err := tx.QueryRow(req.r.Context(), sql, params...).Scan(&n, &body); err != nil {
		return 0, nil, s.dbErr(err, req)
	}
	body, err := singularBody(req, n, body)
	return n, body, err
}

// singularBody applies the singular rule to a JSON array of n rows: with
// the singular Accept, exactly one row, returned as an object.
func singularBody(req *request, n int, body []byte) ([]byte, error) {
	if !req.singular {
		return body, nil
	}
	if n != 1 {
		return nil, notSingular(n, req)
	}
	var rows []json.RawMessage
	if err := json.Unmarshal(body, &rows); err != nil || len(rows) != 1 {
		return nil, notSingular(n, req)
	}
	return rows[0], nil
}

func contentRange(offset, n int, total string) string {
	if n == 0 {
		return "*/" + total
	}
	return strconv.Itoa(offset) + "-" + strconv.Itoa(offset+n-1) + "/" + total
}
