package supabase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/supabase/internal/pgcall"
)

// DirectConfig configures a Direct transport.
type DirectConfig struct {
	// Timeout bounds one call, retries included. Default 30s.
	Timeout time.Duration
	// SearchPath is set for each call, like PostgREST's db-schemas plus
	// db-extra-search-path. Default "public, extensions" (Supabase's).
	SearchPath string
	// Retry configures retries of idempotent calls.
	Retry RetryConfig
	// Archetype gives the clock used to check the "exp" claim. Nil: the
	// wall clock.
	Archetype *baseservice.Archetype
	// Authenticator is the role whose settings (ALTER ROLE … SET, e.g.
	// Supabase's statement_timeout and lock_timeout of 8 s) every call
	// applies first, as PostgREST's login session has them; the called
	// role's settings and the function's own statement_timeout follow, as
	// PostgREST applies them. Default "authenticator".
	Authenticator string
	// Trace, when set, is called just before each call's statements are
	// sent, with the call's path ("/rpc/<fn>", "/<table>"), the process id
	// of the server backend that runs it and its JSON arguments ("" for
	// none); the function it returns is called when the call's transaction
	// has ended. For measurement: the bench's -call-cpu reads the backend's
	// CPU time around each call (docs/performance.md).
	Trace func(path string, backendPID uint32, args string) (done func())
}

// Direct is the direct-PostgreSQL transport: each call is one transaction
// run as the identity, exactly as PostgREST would run it (role from the
// "role" claim, request.jwt.claims, request.method, request.path), sent to
// the server as one pipelined batch, so a call costs one network round trip
// (plus one for the rollback when it fails). Function signatures are read
// from pg_catalog once and cached; a call that fails because the function
// was dropped or recreated with other arguments (PGRST202, 42883, 42725)
// refreshes the entry and is made once more.
//
// Direct trusts Identity.Claims: it does not verify Identity.Token. It
// rejects expired claims ("exp") and roles other than anon, authenticated
// and service_role.
type Direct struct {
	baseservice.BaseService

	pool       *pgxpool.Pool
	cfg        DirectConfig
	roundTrips atomic.Int64
	funcs      sync.Map // function name → []*pgcall.Sig

	settingsMu sync.Mutex
	settings   map[string][][2]string // role → its settings, once read
}

var _ DB = (*Direct)(nil)

// NewDirect returns a Direct transport over pool. cfg may be nil.
func NewDirect(pool *pgxpool.Pool, cfg *DirectConfig) *Direct {
	if pool == nil {
		panic("supabase.NewDirect: nil pool")
	}
	var c DirectConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.SearchPath == "" {
		c.SearchPath = "public, extensions"
	}
	if c.Authenticator == "" {
		c.Authenticator = "authenticator"
	}
	c.Retry = c.Retry.withDefaults()
	return baseservice.Init(c.Archetype, &Direct{pool: pool, cfg: c})
}

// RoundTrips returns how many batches (network round trips) Direct has sent
// to the server: one per call, plus one per rollback after a failure and one
// per signature lookup. Statement preparation by pgx's statement cache (the
// first time a statement text is seen on a connection) is not counted.
func (d *Direct) RoundTrips() int64 { return d.roundTrips.Load() }

// RPC implements DB.
func (d *Direct) RPC(ctx context.Context, id Identity, fn string, args any, out any) error {
	if !validIdent(fn) {
		return badRequest("PGRST100", fmt.Sprintf("invalid function name %q", fn))
	}
	body, keys, err := argsObject(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	var result []byte
	var params []any
	if len(keys) > 0 {
		params = []any{string(body)}
	}
	err = d.cfg.Retry.do(ctx, IsIdempotent(ctx), func() error {
		for fresh := false; ; fresh = true {
			sig, cached, err := d.signature(ctx, fn, keys)
			if err == nil {
				err = d.runHoisting(ctx, id, !sig.Volatile, http.MethodPost, "/rpc/"+fn, sig.Hoisted, sig.CallSQL(keys), params,
					func(r pgx.Row) error { return r.Scan(&result) })
			}
			if fresh || !cached || !staleSignature(err) {
				return err
			}
			// The function was dropped or recreated with another signature
			// since it was cached: the transaction was rolled back, so look
			// it up again and call once more.
			d.funcs.Delete(fn)
		}
	})
	if err != nil {
		return fmt.Errorf("rpc %s: %w", fn, err)
	}
	return decodeInto(result, out, "rpc "+fn)
}

// Select implements DB.
func (d *Direct) Select(ctx context.Context, id Identity, table string, q Query, out any) error {
	if err := q.validate(table); err != nil {
		return fmt.Errorf("select %s: %w", table, err)
	}
	sql, params := selectSQL(table, &q)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	var (
		n      int
		result []byte
	)
	err := d.cfg.Retry.do(ctx, true, func() error {
		return d.run(ctx, id, true, http.MethodGet, "/"+table, sql, params, func(r pgx.Row) error {
			return r.Scan(&n, &result)
		})
	})
	if err != nil {
		return fmt.Errorf("select %s: %w", table, err)
	}
	if q.Single && n != 1 {
		return fmt.Errorf("select %s: %w", table, notSingular(n))
	}
	return decodeInto(result, out, "select "+table)
}

// decodeInto unmarshals a JSON result into out; nil out or a null/empty
// result leaves out untouched.
func decodeInto(result []byte, out any, op string) error {
	if out == nil || len(result) == 0 || bytes.Equal(result, []byte("null")) {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], result...)
		return nil
	}
	if err := json.Unmarshal(result, out); err != nil {
		return fmt.Errorf("%s: decoding result: %w", op, err)
	}
	return nil
}

// argsObject marshals args to a JSON object and returns its keys, sorted.
func argsObject(args any) ([]byte, []string, error) {
	var body []byte
	switch a := args.(type) {
	case nil:
		return []byte("{}"), nil, nil
	case EncodedArgs:
		b, keys, err := a.EncodeArgs()
		if err != nil {
			return nil, nil, fmt.Errorf("supabase: encoding rpc args: %w", err)
		}
		return b, keys, nil
	case map[string]any:
		// What the engine passes: the keys are the map's, so the encoded
		// body need not be read back (for a completion of 100 items that
		// read was about a third of the encoding's cost).
		b, err := json.Marshal(a)
		if err != nil {
			return nil, nil, fmt.Errorf("supabase: encoding rpc args: %w", err)
		}
		return b, slices.Sorted(maps.Keys(a)), nil
	case json.RawMessage:
		body = a
	case []byte:
		body = a
	default:
		b, err := json.Marshal(args)
		if err != nil {
			return nil, nil, fmt.Errorf("supabase: encoding rpc args: %w", err)
		}
		body = b
	}
	return argsObjectOf(body)
}

// argsObjectOf checks that body is a JSON object and returns its keys,
// sorted.
func argsObjectOf(body []byte) ([]byte, []string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, nil, badRequest("PGRST102", "rpc args must be a JSON object: "+err.Error())
	}
	return body, slices.Sorted(maps.Keys(m)), nil
}

// claimsInfo is what the transport reads from the claims.
type claimsInfo struct {
	Role string       `json:"role"`
	Exp  *json.Number `json:"exp"`
}

// allowedRoles are the roles a token may select (PostgREST lets any role the
// authenticator can switch to; Supabase tokens only carry these).
func allowedRole(r string) bool {
	return r == "anon" || r == "authenticated" || r == "service_role"
}

// jwtClockSkew is PostgREST's leeway for exp/nbf/iat (references/auth.rst).
const jwtClockSkew = 30 * time.Second

// identityRole returns the role and the claims JSON to store.
func (d *Direct) identityRole(id Identity) (string, string, error) {
	if len(bytes.TrimSpace(id.Claims)) == 0 {
		return "anon", `{"role":"anon"}`, nil
	}
	var c claimsInfo
	dec := json.NewDecoder(bytes.NewReader(id.Claims))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return "", "", NewError("PGRST301", "JWT claims are not a JSON object", err.Error(), "", false)
	}
	if c.Exp != nil {
		exp, err := c.Exp.Float64()
		if err != nil {
			return "", "", NewError("PGRST303", "JWT exp claim is not a number", "", "", false)
		}
		expAt := time.Unix(0, int64(exp*float64(time.Second)))
		if d.Time.Now().After(expAt.Add(jwtClockSkew)) {
			return "", "", NewError("PGRST303", "JWT expired", "", "", false)
		}
	}
	role := c.Role
	if role == "" {
		role = "anon"
	}
	if !allowedRole(role) {
		return "", "", NewError("PGRST303", fmt.Sprintf("role %q is not allowed", role), "", "", false)
	}
	return role, string(id.Claims), nil
}

const (
	beginRW = "begin isolation level read committed read write"
	beginRO = "begin isolation level read committed read only"
	// setIdentity is what PostgREST sets per request (references/transactions.rst).
	setIdentity = "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
		"set_config('request.method', $3, true), set_config('request.path', $4, true), " +
		"set_config('search_path', $5, true)"
)

// roleSettingsSQL reads the settings of the API roles and the
// authenticator that a user may change (what PostgREST reads:
// Config/Database.hs queryRoleSettings).
const roleSettingsSQL = `
select r.rolname::text, split_part(c.setting, '=', 1), substr(c.setting, strpos(c.setting, '=') + 1)
from pg_roles r cross join lateral unnest(r.rolconfig) c(setting)
join pg_settings ps on ps.name = split_part(c.setting, '=', 1) and ps.context = 'user'
where r.rolname = any($1)`

// roleSettings returns the settings every call as role applies: the
// authenticator's, then the role's. They are read once.
func (d *Direct) roleSettings(ctx context.Context, role string) ([][2]string, error) {
	d.settingsMu.Lock()
	defer d.settingsMu.Unlock()
	if d.settings == nil {
		d.roundTrips.Add(1)
		rows, err := d.pool.Query(ctx, roleSettingsSQL, []string{"anon", "authenticated", "service_role", d.cfg.Authenticator})
		if err != nil {
			return nil, err
		}
		m := map[string][][2]string{}
		for rows.Next() {
			var r, name, value string
			if err := rows.Scan(&r, &name, &value); err != nil {
				rows.Close()
				return nil, err
			}
			m[r] = append(m[r], [2]string{name, value})
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		d.settings = m
	}
	return append(slices.Clone(d.settings[d.cfg.Authenticator]), d.settings[role]...), nil
}

// run executes sql (which must return exactly one row, read by scan) in a
// transaction as the identity, pipelined in one batch.
func (d *Direct) run(ctx context.Context, id Identity, readOnly bool, method, path, sql string, params []any, scan func(pgx.Row) error) error {
	return d.runHoisting(ctx, id, readOnly, method, path, nil, sql, params, scan)
}

// runHoisting is run with a function's hoisted settings applied after the
// role's.
func (d *Direct) runHoisting(ctx context.Context, id Identity, readOnly bool, method, path string, hoisted [][2]string,
	sql string, params []any, scan func(pgx.Row) error,
) error {
	authed, setSQL, setParams, err := d.identitySQL(ctx, id, method, path, hoisted)
	if err != nil {
		return err
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return d.mapErr(ctx, err, authed)
	}
	defer conn.Release()

	b := &pgx.Batch{}
	if readOnly {
		b.Queue(beginRO)
	} else {
		b.Queue(beginRW)
	}
	b.Queue(setSQL, setParams...)
	b.Queue(sql, params...)
	b.Queue("commit")

	if d.cfg.Trace != nil {
		var args string
		if strings.HasPrefix(path, "/rpc/") && len(params) > 0 {
			args, _ = params[0].(string) // an RPC's one parameter: its arguments
		}
		defer d.cfg.Trace(path, conn.Conn().PgConn().PID(), args)()
	}
	d.roundTrips.Add(1)
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := scan(br.QueryRow()); err != nil {
			return err
		}
		_, err := br.Exec()
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			// Roll back explicitly so the connection returns to the pool
			// clean (the pool would otherwise destroy it).
			d.roundTrips.Add(1)
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "rollback")
			rcancel()
		}
		return d.mapErr(ctx, err, authed)
	}
	return nil
}

// identitySQL is the statement that makes the rest of a transaction run as
// id, with its parameters (PostgREST's per-request settings, then the
// role's, then the function's hoisted ones), and whether id is signed in.
func (d *Direct) identitySQL(ctx context.Context, id Identity, method, path string, hoisted [][2]string) (bool, string, []any, error) {
	role, claims, err := d.identityRole(id)
	if err != nil {
		return false, "", nil, err
	}
	authed := role != "anon"
	settings, err := d.roleSettings(ctx, role)
	if err != nil {
		return false, "", nil, d.mapErr(ctx, err, authed)
	}
	settings = append(settings, hoisted...)
	var setSQL strings.Builder
	setSQL.WriteString(setIdentity)
	setParams := []any{role, claims, method, path, d.cfg.SearchPath}
	for _, kv := range settings {
		fmt.Fprintf(&setSQL, ", set_config($%d, $%d, true)", len(setParams)+1, len(setParams)+2)
		setParams = append(setParams, kv[0], kv[1])
	}
	return authed, setSQL.String(), setParams, nil
}

// mapErr turns a driver error into *Error with PostgREST's status.
func (d *Direct) mapErr(ctx context.Context, err error, authed bool) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		e := NewError(pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Hint, authed)
		e.err = err
		return e
	}
	if _, ok := errors.AsType[*Error](err); ok {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("supabase: %w (%w)", context.Cause(ctx), err)
	}
	// Anything else from the batch is the connection failing.
	return unavailable("database", err)
}

// selectSQL builds the read of q over table: one row of (count, JSON).
// Identifiers were validated by q.validate and are quoted; values are
// parameters sent as text, which PostgreSQL casts to the column's type the
// way PostgREST's literals are.
func selectSQL(table string, q *Query) (string, []any) {
	var (
		b      strings.Builder
		params []any
	)
	param := func(v any) string {
		params = append(params, v)
		return "$" + strconv.Itoa(len(params))
	}
	b.WriteString("select count(*)::int, ")
	if q.Single {
		b.WriteString("case when count(*) = 1 then json_agg(_t) -> 0 else '[]'::json end")
	} else {
		b.WriteString("coalesce(json_agg(_t), '[]'::json)")
	}
	b.WriteString(" from (select ")
	if len(q.Columns) == 0 {
		b.WriteString("*")
	} else {
		for i, c := range q.Columns {
			if i > 0 {
				b.WriteString(", ")
			}
			if c == "*" {
				b.WriteString("*")
			} else {
				b.WriteString(pgx.Identifier{c}.Sanitize())
			}
		}
	}
	b.WriteString(" from ")
	b.WriteString(pgx.Identifier{"public", table}.Sanitize())
	for i, f := range q.Filters {
		if i == 0 {
			b.WriteString(" where ")
		} else {
			b.WriteString(" and ")
		}
		col := pgx.Identifier{f.Column}.Sanitize()
		switch f.Op {
		case OpIn:
			vs, _ := f.Value.([]any)
			if len(vs) == 0 {
				b.WriteString("false")
				continue
			}
			b.WriteString(col + " in (")
			for j, v := range vs {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(param(formatValue(v)))
			}
			b.WriteString(")")
		case OpIs:
			kw, _ := isKeyword(f.Value)
			b.WriteString(col + " is " + strings.ReplaceAll(kw, "_", " "))
		case OpLike, OpILike:
			b.WriteString(col + " " + string(f.Op) + " " + param(likePattern(formatValue(f.Value))))
		default:
			b.WriteString(col + " " + sqlOps[f.Op] + " " + param(formatValue(f.Value)))
		}
	}
	for i, o := range q.Order {
		if i == 0 {
			b.WriteString(" order by ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{o.Column}.Sanitize())
		if o.Desc {
			b.WriteString(" desc")
		}
		switch o.Nulls {
		case NullsFirst:
			b.WriteString(" nulls first")
		case NullsLast:
			b.WriteString(" nulls last")
		}
	}
	if q.Limit > 0 {
		b.WriteString(" limit " + param(q.Limit))
	}
	if q.Offset > 0 {
		b.WriteString(" offset " + param(q.Offset))
	}
	b.WriteString(") _t")
	return b.String(), params
}

var sqlOps = map[Op]string{ //nolint:gochecknoglobals // constant lookup table
	OpEq: "=", OpNeq: "<>", OpGt: ">", OpGte: ">=", OpLt: "<", OpLte: "<=",
}

// signature returns the overload of fn accepting the named arguments keys,
// from the cache or pg_catalog (one extra round trip, once per function),
// and whether it came from the cache.
func (d *Direct) signature(ctx context.Context, fn string, keys []string) (*pgcall.Sig, bool, error) {
	v, cached := d.funcs.Load(fn)
	if !cached {
		d.roundTrips.Add(1)
		sigs, err := pgcall.Lookup(ctx, d.pool, fn)
		if err != nil {
			return nil, false, d.mapErr(ctx, err, true)
		}
		if len(sigs) > 0 {
			d.funcs.Store(fn, sigs)
		}
		v = sigs
	}
	switch sigs := pgcall.Pick(v.([]*pgcall.Sig), keys); len(sigs) { //nolint:forcetypeassert // only []*pgcall.Sig is stored
	case 0:
		return nil, cached, &Error{Status: http.StatusNotFound, Code: "PGRST202", Message: pgcall.NotFoundMessage(fn, keys), rows: -1}
	case 1:
		return sigs[0], cached, nil
	default:
		// PostgREST never picks one of several overloads (PGRST203).
		return nil, cached, NewError("PGRST203", pgcall.AmbiguousMessage(sigs), "", pgcall.AmbiguousHint, true)
	}
}

// staleSignature reports whether err is what calling through an outdated
// cached signature gives: no overload takes these argument names
// (PGRST202), or the call matched no (42883) or several (42725) functions.
// A signature change that none of these reveal (same argument names and
// types, another return type or volatility) needs a new Direct.
func staleSignature(err error) bool {
	var se *Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case "PGRST202", "PGRST203", "42883", "42725":
		return true
	}
	return false
}
