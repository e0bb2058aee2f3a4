// Package pgcall builds the SQL that calls a public function with named
// arguments taken from a JSON object, and encodes its result the way
// PostgREST does. The direct transport and the PostgREST test server share
// it, so both call functions identically.
package pgcall

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Sig is one public function's signature, read from pg_catalog.
type Sig struct {
	Name      string
	InNames   []string // input argument names, in order
	InTypes   []string // their types, as format_type prints them
	Required  int      // the first Required input arguments have no default
	RetSet    bool     // returns setof / table
	Composite bool     // returns a row type (or record through OUT parameters)
	Void      bool
	Volatile  bool
	// Hoisted are the function's own settings (CREATE FUNCTION … SET) that
	// PostgREST applies to the whole transaction before the call
	// (db-hoisted-tx-settings, default statement_timeout and
	// plan_filter.statement_cost_limit; PostgREST v12+): inside the function
	// they would come too late to bound the statement that calls it.
	Hoisted [][2]string

	sqls sync.Map // sorted arg keys joined by "," → call SQL
}

// Querier is what Lookup needs (a pool, a conn or a tx).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// sigSQL reads every overload of public.<name>. proargnames/proargmodes are
// indexed like proallargtypes when it is set, else like proargtypes.
const sigSQL = `
select p.proretset, p.provolatile = 'v', p.pronargdefaults::int, p.prorettype = 'void'::regtype,
  (rt.typtype = 'c' or p.prorettype = 'record'::regtype),
  coalesce(array(select coalesce(p.proargnames[a.ord], '') from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord) order by a.ord), '{}'),
  coalesce(array(select coalesce(p.proargmodes[a.ord]::text, 'i') from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord) order by a.ord), '{}'),
  coalesce(array(select format_type(a.typ, null) from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord) order by a.ord), '{}'),
  coalesce(array(select c from unnest(p.proconfig) c where split_part(c, '=', 1) in ('statement_timeout', 'plan_filter.statement_cost_limit')), '{}')
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
join pg_catalog.pg_type rt on rt.oid = p.prorettype
where n.nspname = 'public' and p.proname = $1 and p.prokind = 'f'`

// Lookup reads every overload of public.<fn> (none if it does not exist).
func Lookup(ctx context.Context, q Querier, fn string) ([]*Sig, error) {
	rows, err := q.Query(ctx, sigSQL, fn)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var sigs []*Sig
	for rows.Next() {
		var (
			s                   Sig
			defaults            int
			names, modes, types []string
			config              []string
		)
		if err := rows.Scan(&s.RetSet, &s.Volatile, &defaults, &s.Void, &s.Composite, &names, &modes, &types, &config); err != nil {
			return nil, err
		}
		for _, c := range config {
			name, value, _ := strings.Cut(c, "=")
			s.Hoisted = append(s.Hoisted, [2]string{name, value})
		}
		s.Name = fn
		for i, m := range modes {
			if m == "i" || m == "b" || m == "v" {
				s.InNames = append(s.InNames, names[i])
				s.InTypes = append(s.InTypes, types[i])
			}
		}
		s.Required = len(s.InNames) - defaults
		sigs = append(sigs, &s)
	}
	return sigs, rows.Err()
}

// Pick returns the overloads that accept keys. More than one is PostgREST's
// PGRST203 (Plan.hs findProc): it never picks one of several.
func Pick(sigs []*Sig, keys []string) []*Sig {
	var out []*Sig
	for _, s := range sigs {
		if s.Accepts(keys) {
			out = append(out, s)
		}
	}
	return out
}

// AmbiguousMessage is PostgREST's PGRST203 message for the overloads sigs.
func AmbiguousMessage(sigs []*Sig) string {
	parts := make([]string, len(sigs))
	for i, s := range sigs {
		args := make([]string, len(s.InNames))
		for j, n := range s.InNames {
			args[j] = n + " => " + s.InTypes[j]
		}
		parts[i] = "public." + s.Name + "(" + strings.Join(args, ", ") + ")"
	}
	return "Could not choose the best candidate function between: " + strings.Join(parts, ", ")
}

// AmbiguousHint is PostgREST's PGRST203 hint.
const AmbiguousHint = "Try renaming the parameters or the function itself in the database so function overloading can be resolved"

// NotFoundMessage is PostgREST's PGRST202 message.
func NotFoundMessage(fn string, keys []string) string {
	return fmt.Sprintf("Could not find the function public.%s(%s) in the schema cache", fn, strings.Join(keys, ", "))
}

// Accepts reports whether keys are input argument names of s and cover
// every argument without a default.
func (s *Sig) Accepts(keys []string) bool {
	for _, k := range keys {
		if !slices.Contains(s.InNames, k) {
			return false
		}
	}
	for _, n := range s.InNames[:s.Required] {
		if !slices.Contains(keys, n) {
			return false
		}
	}
	return true
}

// CallSQLLimit is CallSQL returning at most limit rows of a set-returning
// function (PostgREST's db-max-rows); limit <= 0 or a function that does not
// return a set is CallSQL.
func (s *Sig) CallSQLLimit(keys []string, limit int) string {
	if !s.RetSet || limit <= 0 {
		return s.CallSQL(keys)
	}
	call, from := s.callParts(keys)
	src := "select _r from " + call + " _r"
	if from != "" {
		src = "select _r" + from + " cross join lateral " + call + " _r"
	}
	return "select coalesce(json_agg(_l._r), '[]'::json) from (" + src + " limit " + strconv.Itoa(limit) + ") _l"
}

// callParts returns the call in named notation and the FROM clause reading
// its arguments (empty without arguments).
func (s *Sig) callParts(keys []string) (string, string) {
	var call, cols strings.Builder
	call.WriteString(pgx.Identifier{"public", s.Name}.Sanitize())
	call.WriteByte('(')
	for i, k := range keys {
		if i > 0 {
			call.WriteString(", ")
			cols.WriteString(", ")
		}
		q := pgx.Identifier{k}.Sanitize()
		call.WriteString(q + " => _a." + q)
		cols.WriteString(q + " " + s.InTypes[slices.Index(s.InNames, k)])
	}
	call.WriteByte(')')
	from := ""
	if len(keys) > 0 {
		from = " from json_to_record($1::json) as _a(" + cols.String() + ")"
	}
	return call.String(), from
}

// CallSQL is the statement calling s with the named arguments keys (sorted),
// read from the JSON object in $1 the way PostgREST does (json_to_record with
// the argument types, then named notation; references/api/functions.rst). It
// returns one row with one json column, encoded like PostgREST encodes
// results: a scalar → to_json, a set → JSON array, one composite → object,
// void → null.
func (s *Sig) CallSQL(keys []string) string {
	ck := strings.Join(keys, ",")
	if v, ok := s.sqls.Load(ck); ok {
		return v.(string) //nolint:forcetypeassert // only strings are stored
	}
	call, from := s.callParts(keys)
	lateral := func(sel string) string {
		if from == "" {
			return "select " + sel + " from " + call + " _r"
		}
		return "select " + sel + from + " cross join lateral " + call + " _r"
	}
	var sql string
	switch {
	case s.Void:
		sql = "select case when " + call + " is null then null::json end" + from
	case s.RetSet:
		sql = lateral("coalesce(json_agg(_r), '[]'::json)")
	case s.Composite:
		sql = lateral("to_json(_r)")
	default:
		sql = "select to_json(" + call + ")" + from
	}
	s.sqls.Store(ck, sql)
	return sql
}
