// Package pgcall builds the SQL that calls a public function with named
// arguments taken from a JSON object, and encodes its result the way
// PostgREST does. The direct transport and the PostgREST test server share
// it, so both call functions identically.
package pgcall

import (
	"context"
	"fmt"
	"slices"
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
  coalesce(array(select format_type(a.typ, null) from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord) order by a.ord), '{}')
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
		)
		if err := rows.Scan(&s.RetSet, &s.Volatile, &defaults, &s.Void, &s.Composite, &names, &modes, &types); err != nil {
			return nil, err
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

// Pick returns the overload that accepts keys, or nil.
func Pick(sigs []*Sig, keys []string) *Sig {
	for _, s := range sigs {
		if s.Accepts(keys) {
			return s
		}
	}
	return nil
}

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
	lateral := func(sel string) string {
		if from == "" {
			return "select " + sel + " from " + call.String() + " _r"
		}
		return "select " + sel + from + " cross join lateral " + call.String() + " _r"
	}
	var sql string
	switch {
	case s.Void:
		sql = "select case when " + call.String() + " is null then null::json end" + from
	case s.RetSet:
		sql = lateral("coalesce(json_agg(_r), '[]'::json)")
	case s.Composite:
		sql = lateral("to_json(_r)")
	default:
		sql = "select to_json(" + call.String() + ")" + from
	}
	s.sqls.Store(ck, sql)
	return sql
}
