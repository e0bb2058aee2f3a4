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
// Like PostgREST it is strict where orchable could otherwise pass a test and
// fail on a real project: an RPC that more than one overload accepts answers
// 300 PGRST203; a bulk insert whose objects have different keys answers 400
// PGRST102 unless columns= is given; is.not_null is refused (PostgREST
// before v13 has no such value: send not.is.null); reads and set-returning
// RPCs return at most Config.MaxRows rows (db-max-rows; Supabase's default is
// 1000); the role's settings (pg_roles.rolconfig, e.g. statement_timeout) are
// applied to every request after the authenticator's; a function's own
// statement_timeout is hoisted to the transaction (v12); and error statuses
// come from this package's copy of PostgREST's tables (errors.go), not from
// the client's.
//
// In front of it, it models the Supabase gateway's API keys: legacy JWT keys
// (Config.APIKeys) and new-format keys (Config.PublishableKeys and
// Config.SecretKeys, which are not JWTs). A new-format key in apikey with no
// bearer, or with a bearer equal to it, acts as anon (publishable) or
// service_role (secret); any other bearer that is not a JWT is refused with
// 401.
//
// Not implemented: GET /rpc, filters and select on RPC results, schemas
// other than public, Prefer: missing=default/handling/tx, range headers,
// RAISE SQLSTATE 'PGRST' with a JSON message.
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

	"github.com/orchable/orchable/supabase/internal/pgcall"
)

// Config configures a Server.
type Config struct {
	// JWTSecret verifies HS256/384/512 tokens (PostgREST jwt-secret as a
	// string). Empty disables HMAC tokens.
	JWTSecret []byte
	// JWKSURL, when set, verifies asymmetric tokens (ES256, RS256) by kid.
	JWKSURL string
	// APIKeys are accepted legacy apikey header values (anon and
	// service_role JWTs; what the Supabase gateway checks). When APIKeys,
	// PublishableKeys and SecretKeys are all empty the apikey is not checked;
	// otherwise a request without an accepted one gets 401.
	APIKeys []string
	// PublishableKeys are accepted new-format publishable keys
	// (sb_publishable_…): with no bearer (or a bearer equal to the key) the
	// request runs as AnonRole.
	PublishableKeys []string
	// SecretKeys are accepted new-format secret keys (sb_secret_…): with no
	// bearer (or a bearer equal to the key) the request runs as
	// service_role.
	SecretKeys []string
	// MaxRows is PostgREST's db-max-rows: reads, embedded lists and
	// set-returning RPCs return at most this many rows. Default 1000
	// (Supabase's "Max rows"); negative means no limit.
	MaxRows int
	// Authenticator is the role PostgREST logs in as; its settings
	// (rolconfig) are applied to every request before the impersonated
	// role's, as its login session would have them. Default "authenticator".
	Authenticator string
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

	settingsOnce sync.Once
	settings     map[string][][2]string // role → its (name, value) settings
	settingsErr  error
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
	if c.MaxRows == 0 {
		c.MaxRows = 1000
	}
	if c.Authenticator == "" {
		c.Authenticator = "authenticator"
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
	// gatewayRole: the role came from a new-format API key.
	gatewayRole bool
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/rest/v1")
	if !ok || path == "" || path == "/" {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "no Route matched with those values"})
		return
	}
	req := &request{r: r, path: path, prefer: parsePrefer(r.Header.Values("Prefer"))}
	if !s.gateway(w, r, req) {
		return
	}
	if err := s.authenticate(r, req); err != nil {
		writeError(w, err)
		return
	}
	req.singular = strings.Contains(r.Header.Get("Accept"), "application/vnd.pgrst.object+json")

	var err error
	switch {
	case strings.HasPrefix(path, "/rpc/"):
		if r.Method != http.MethodPost {
			err = pgrst("PGRST101", "Cannot use the "+r.Method+" method on RPC (this test server serves POST only)", "")
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
			err = pgrst("PGRST117", "Unsupported HTTP method: "+r.Method, "")
		}
	}
	if err != nil {
		writeError(w, err)
	}
}

// bearer returns the Authorization header's bearer token.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// gateway checks the API key the way the Supabase gateway does and reports
// whether the request may go on. A new-format key with no bearer, or with a
// bearer equal to it, sets the request's role here (publishable: anon;
// secret: service_role); a bearer that is not a JWT and is not the apikey is
// refused. Legacy keys leave the bearer to PostgREST.
func (s *Server) gateway(w http.ResponseWriter, r *http.Request, req *request) bool {
	if len(s.cfg.APIKeys)+len(s.cfg.PublishableKeys)+len(s.cfg.SecretKeys) == 0 {
		return true
	}
	key := r.Header.Get("apikey")
	if key == "" {
		key = r.URL.Query().Get("apikey")
	}
	publishable, secret := slices.Contains(s.cfg.PublishableKeys, key), slices.Contains(s.cfg.SecretKeys, key)
	if !publishable && !secret && !slices.Contains(s.cfg.APIKeys, key) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key.",
		})
		return false
	}
	tok := bearer(r)
	if tok != "" && tok != key && (strings.HasPrefix(tok, "sb_") || (publishable || secret) && strings.Count(tok, ".") != 2) {
		// An API key that is not the apikey, or (with a new-format apikey)
		// any bearer that is not a JWT: the gateway has no role for it.
		// Behind a legacy key, PostgREST itself rejects a malformed JWT.
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"message": "Invalid JWT", "hint": "The Authorization bearer must be a JWT or the same key as the apikey header.",
		})
		return false
	}
	if (publishable || secret) && (tok == "" || tok == key) {
		req.role = s.cfg.AnonRole
		if secret {
			req.role = "service_role"
		}
		req.claims = `{"role":"` + req.role + `"}`
		req.authed = secret
		req.gatewayRole = true
	}
	return true
}

// authenticate verifies the bearer token like PostgREST (references/auth.rst):
// signature, exp/nbf/iat with 30 s skew, role claim (anon role without one).
func (s *Server) authenticate(r *http.Request, req *request) error {
	if req.gatewayRole {
		return nil
	}
	tok := bearer(r)
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
		e := pgrst(code, msg, "")
		e.jwt = true
		return e
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
		// What SET ROLE answers for a role that does not exist (22023, which
		// PostgREST maps to 401), or that the authenticator of a Supabase
		// project may not switch to (42501).
		var exists bool
		if err := s.pool.QueryRow(r.Context(), "select exists (select 1 from pg_roles where rolname = $1)", role).Scan(&exists); err != nil {
			return s.dbErr(err, req)
		}
		if !exists {
			return sqlError("22023", fmt.Sprintf("role \"%s\" does not exist", role), "", "", req.authed)
		}
		return sqlError("42501", fmt.Sprintf("permission denied to set role \"%s\"", role), "", "", req.authed)
	}
	return nil
}

// within runs fn in one transaction as the request's identity; any error
// (including a singular-response failure) rolls it back.
func (s *Server) within(req *request, readOnly bool, fn func(tx pgx.Tx) error) error {
	return s.withinHoisting(req, readOnly, nil, fn)
}

// roleSettingsSQL reads the settings of the roles a request can run as
// (PostgREST Config/Database.hs queryRoleSettings: ALTER ROLE … SET, for
// settings a user may change).
const roleSettingsSQL = `
select r.rolname::text, split_part(c.setting, '=', 1), substr(c.setting, strpos(c.setting, '=') + 1)
from pg_roles r cross join lateral unnest(r.rolconfig) c(setting)
join pg_settings ps on ps.name = split_part(c.setting, '=', 1) and ps.context = 'user'
where r.rolname = any($1)`

// roleSettings returns each role's settings, read once.
func (s *Server) roleSettings(ctx context.Context) (map[string][][2]string, error) {
	s.settingsOnce.Do(func() {
		rows, err := s.pool.Query(ctx, roleSettingsSQL, append(slices.Clone(s.cfg.Roles), s.cfg.Authenticator))
		if err != nil {
			s.settingsErr = err
			return
		}
		m := map[string][][2]string{}
		for rows.Next() {
			var role, name, value string
			if err := rows.Scan(&role, &name, &value); err != nil {
				s.settingsErr = err
				rows.Close()
				return
			}
			m[role] = append(m[role], [2]string{name, value})
		}
		s.settings, s.settingsErr = m, rows.Err()
	})
	return s.settings, s.settingsErr
}

// withinHoisting is within, with a function's hoisted settings (its own
// SET statement_timeout; PostgREST db-hoisted-tx-settings) applied last.
func (s *Server) withinHoisting(req *request, readOnly bool, hoisted [][2]string, fn func(tx pgx.Tx) error) error {
	ctx := req.r.Context()
	roleSettings, err := s.roleSettings(ctx)
	if err != nil {
		return s.dbErr(err, req)
	}
	// The authenticator's login settings, then the role's (PreQuery.hs
	// roleSettingsSql), then the function's.
	settings := make([][2]string, 0, len(roleSettings[s.cfg.Authenticator])+len(roleSettings[req.role])+len(hoisted))
	settings = append(settings, roleSettings[s.cfg.Authenticator]...)
	settings = append(settings, roleSettings[req.role]...)
	settings = append(settings, hoisted...)
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
	hb, _ := json.Marshal(headers) //nolint:errchkjson // a map of strings always encodes
	var sql strings.Builder
	sql.WriteString("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
		"set_config('request.headers', $3, true), set_config('request.method', $4, true), " +
		"set_config('request.path', $5, true), set_config('search_path', 'public, extensions', true)")
	params := []any{req.role, req.claims, string(hb), req.r.Method, req.path}
	for _, kv := range settings {
		fmt.Fprintf(&sql, ", set_config($%d, $%d, true)", len(params)+1, len(params)+2)
		params = append(params, kv[0], kv[1])
	}
	if _, err := tx.Exec(ctx, sql.String(), params...); err != nil {
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
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return sqlError(pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Hint, req.authed)
	}
	if _, ok := errors.AsType[*apiError](err); ok {
		return err
	}
	return pgrst("PGRST000", err.Error(), "")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) //nolint:errchkjson // the status is sent; a failed write means the client left
}

// writeError writes PostgREST's error body (references/errors.rst), with
// Proxy-Status, and WWW-Authenticate for JWT errors.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = pgrst("PGRST000", err.Error(), "")
	}
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	w.Header().Set("Proxy-Status", "PostgREST; error="+ae.code)
	if ae.jwt {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+ae.message+`"`)
	}
	writeJSON(w, ae.status, map[string]any{
		"code": ae.code, "message": ae.message, "details": nullable(ae.details), "hint": nullable(ae.hint),
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
		return nil, pgrst("PGRST102", "Empty or invalid json: "+err.Error(), "")
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
		return pgrst("PGRST102", "Empty or invalid json", err.Error())
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
			err = s.withinHoisting(req, !sig.Volatile, sig.Hoisted, func(tx pgx.Tx) error {
				if err := tx.QueryRow(req.r.Context(), sig.CallSQLLimit(keys, s.cfg.MaxRows), params...).Scan(&result); err != nil {
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
	switch sigs := pgcall.Pick(v.([]*pgcall.Sig), keys); len(sigs) { //nolint:forcetypeassert // only []*pgcall.Sig is stored
	case 0:
		return nil, cached, pgrst("PGRST202", pgcall.NotFoundMessage(fn, keys), "")
	case 1:
		return sigs[0], cached, nil
	default:
		e := pgrst("PGRST203", pgcall.AmbiguousMessage(sigs), "")
		e.hint = pgcall.AmbiguousHint
		return nil, cached, e
	}
}

// staleSignature reports whether err is what an outdated cached signature
// gives: PGRST202 (no overload takes these names), PGRST203 (several do),
// 42883 (no function matches the call) or 42725 (several do).
func staleSignature(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.code {
	case "PGRST202", "PGRST203", "42883", "42725":
		return true
	}
	return false
}

func notSingular(n int, _ *request) error {
	return pgrst("PGRST116", "Cannot coerce the result to a single JSON object",
		fmt.Sprintf("The result contains %d rows", n))
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
