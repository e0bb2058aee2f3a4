package postgresttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// builder accumulates SQL parameters.
type builder struct {
	params []any
	authed bool
}

func (b *builder) param(v any) string {
	b.params = append(b.params, v)
	return "$" + strconv.Itoa(len(b.params))
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// where builds the conditions of the query's filters on alias _t.
func (s *Server) where(b *builder, q url.Values) (string, error) {
	var conds []string
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range q[k] {
			var (
				c   string
				err error
			)
			switch k {
			case "select", "order", "limit", "offset", "columns", "on_conflict", "apikey":
				continue
			case "or", "and", "not.or", "not.and":
				neg := strings.HasPrefix(k, "not.")
				c, err = b.logic(strings.TrimPrefix(k, "not."), v, neg)
			default:
				if strings.Contains(k, ".") {
					return "", pgrst("PGRST100", "filters on embedded resources are not supported by this test server: "+k, "")
				}
				c, err = b.cond(k, v)
			}
			if err != nil {
				return "", err
			}
			conds = append(conds, c)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " where " + strings.Join(conds, " and "), nil
}

// logic builds or=(…)/and=(…) (references/api/tables_views.rst "Logical operators").
func (b *builder) logic(op, v string, neg bool) (string, error) {
	inner, ok := strings.CutPrefix(v, "(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", pgrst("PGRST100", "\""+v+"\" is not a valid logic tree", "")
	}
	inner = inner[:len(inner)-1]
	var parts []string
	for _, item := range splitTop(inner) {
		item = strings.TrimSpace(item)
		var (
			c   string
			err error
		)
		switch {
		case strings.HasPrefix(item, "and(") || strings.HasPrefix(item, "or("):
			name, rest, _ := strings.Cut(item, "(")
			c, err = b.logic(name, "("+rest, false)
		case strings.HasPrefix(item, "not.and(") || strings.HasPrefix(item, "not.or("):
			name, rest, _ := strings.Cut(strings.TrimPrefix(item, "not."), "(")
			c, err = b.logic(name, "("+rest, true)
		default:
			col, expr, found := strings.Cut(item, ".")
			if !found {
				return "", pgrst("PGRST100", "\""+item+"\" is not a valid filter", "")
			}
			c, err = b.cond(col, expr)
		}
		if err != nil {
			return "", err
		}
		parts = append(parts, c)
	}
	if len(parts) == 0 {
		return "true", nil
	}
	sql := "(" + strings.Join(parts, " "+op+" ") + ")"
	if neg {
		sql = "not " + sql
	}
	return sql, nil
}

// splitTop splits on commas outside parentheses and double quotes.
func splitTop(s string) []string {
	var (
		out     []string
		depth   int
		inQuote bool
		start   int
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '(' && !inQuote:
			depth++
		case c == ')' && !inQuote:
			depth--
		case c == ',' && !inQuote && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// unquote removes PostgREST's double quotes and backslash escapes.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
	return s
}

var cmpOps = map[string]string{ //nolint:gochecknoglobals // constant table
	"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
	"like": "like", "ilike": "ilike", "cs": "@>", "cd": "<@",
}

// cond builds "col op.value" (references/api/tables_views.rst "Operators").
// Values are text parameters; PostgreSQL casts them to the column's type.
func (b *builder) cond(col, expr string) (string, error) {
	neg := false
	if rest, ok := strings.CutPrefix(expr, "not."); ok {
		neg, expr = true, rest
	}
	op, val, ok := strings.Cut(expr, ".")
	if !ok {
		return "", pgrst("PGRST100", "\""+expr+"\" is not a valid filter for "+col, "")
	}
	c := "_t." + ident(col)
	var sql string
	switch op {
	case "in":
		inner, ok := strings.CutPrefix(val, "(")
		if !ok || !strings.HasSuffix(inner, ")") {
			return "", pgrst("PGRST100", "in needs a list: "+val, "")
		}
		items := splitTop(inner[:len(inner)-1])
		if len(items) == 0 {
			sql = "false"
			break
		}
		ps := make([]string, len(items))
		for i, it := range items {
			ps[i] = b.param(unquote(it))
		}
		sql = c + " in (" + strings.Join(ps, ", ") + ")"
	case "is":
		// PostgREST before v13 knows only these four (not_null came in
		// v13.0.0, #3747); a project on v12 refuses is.not_null, so this
		// server does too: not.is.null works everywhere.
		kw := map[string]string{"null": "null", "true": "true", "false": "false", "unknown": "unknown"}[strings.ToLower(val)]
		if kw == "" {
			return "", pgrst("PGRST100", `"failed to parse filter (is.`+val+`)" (line 1, column 4)`,
				`unexpected "`+val+`" expecting null or trilean value (unknown, true, false)`)
		}
		sql = c + " is " + kw
	default:
		o, ok := cmpOps[op]
		if !ok {
			return "", pgrst("PGRST100", "unsupported operator "+op, "")
		}
		if op == "like" || op == "ilike" {
			val = strings.ReplaceAll(val, "*", "%")
		}
		sql = c + " " + o + " " + b.param(val)
	}
	if neg {
		sql = "not (" + sql + ")"
	}
	return sql, nil
}

// orderBy builds order=col.asc|desc[.nullsfirst|nullslast],….
func (b *builder) orderBy(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	var parts []string
	for item := range strings.SplitSeq(v, ",") {
		fields := strings.Split(item, ".")
		var sql strings.Builder
		sql.WriteString("_t." + ident(fields[0]))
		for _, f := range fields[1:] {
			switch f {
			case "asc":
			case "desc":
				sql.WriteString(" desc")
			case "nullsfirst":
				sql.WriteString(" nulls first")
			case "nullslast":
				sql.WriteString(" nulls last")
			default:
				return "", pgrst("PGRST100", "invalid order "+item, "")
			}
		}
		parts = append(parts, sql.String())
	}
	return " order by " + strings.Join(parts, ", "), nil
}

// selectList builds the select list over alias of table from select=
// (references/api/resource_embedding.rst): columns, alias:column, * and
// relation(…) / alias:relation!hint(…) embeddings through foreign keys.
func (s *Server) selectList(ctx context.Context, b *builder, table, alias, sel string, depth int) (string, error) {
	if sel == "" {
		sel = "*"
	}
	var out []string
	for _, item := range splitTop(sel) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name := item
		as := ""
		if a, rest, ok := strings.Cut(item, ":"); ok && !strings.HasPrefix(rest, ":") {
			as, name = a, rest
		}
		if open := strings.IndexByte(name, '('); open >= 0 && strings.HasSuffix(name, ")") {
			sub, err := s.embed(ctx, b, table, alias, name[:open], as, name[open+1:len(name)-1], depth)
			if err != nil {
				return "", err
			}
			out = append(out, sub)
			continue
		}
		if name == "*" {
			out = append(out, alias+".*")
			continue
		}
		if cast, _, ok := strings.Cut(name, "::"); ok {
			name = cast // casts are not supported; select the column
		}
		col := alias + "." + ident(name)
		if as != "" {
			col += " as " + ident(as)
		}
		out = append(out, col)
	}
	if len(out) == 0 {
		return alias + ".*", nil
	}
	return strings.Join(out, ", "), nil
}

type foreignKey struct {
	name, src, dst   string
	srcCols, dstCols []string
}

const fkSQL = `
select c.conname, s.relname, d.relname,
  array(select a.attname::text from unnest(c.conkey) with ordinality k(n, o) join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.o),
  array(select a.attname::text from unnest(c.confkey) with ordinality k(n, o) join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n order by k.o)
from pg_constraint c
join pg_class s on s.oid = c.conrelid
join pg_class d on d.oid = c.confrelid
where c.contype = 'f' and s.relnamespace = 'public'::regnamespace and d.relnamespace = 'public'::regnamespace`

func (s *Server) foreignKeys(ctx context.Context) ([]foreignKey, error) {
	s.fkOnce.Do(func() {
		rows, err := s.pool.Query(ctx, fkSQL)
		if err != nil {
			s.fkErr = err
			return
		}
		defer rows.Close()
		for rows.Next() {
			var fk foreignKey
			if err := rows.Scan(&fk.name, &fk.src, &fk.dst, &fk.srcCols, &fk.dstCols); err != nil {
				s.fkErr = err
				return
			}
			s.fks = append(s.fks, fk)
		}
		s.fkErr = rows.Err()
	})
	return s.fks, s.fkErr
}

// embed builds the subquery for relation rel (with optional !hint) of table.
func (s *Server) embed(ctx context.Context, b *builder, table, alias, rel, as, sel string, depth int) (string, error) {
	if depth > 3 {
		return "", pgrst("PGRST100", "embedding too deep", "")
	}
	rel, hint, _ := strings.Cut(rel, "!")
	if hint == "inner" || hint == "left" {
		hint = ""
	}
	fks, err := s.foreignKeys(ctx)
	if err != nil {
		return "", err
	}
	type match struct {
		fk       foreignKey
		toParent bool // many-to-one: table references rel
	}
	var ms []match
	for _, fk := range fks {
		ok := hint == "" || fk.name == hint || (len(fk.srcCols) == 1 && fk.srcCols[0] == hint)
		if !ok {
			continue
		}
		if fk.src == table && fk.dst == rel {
			ms = append(ms, match{fk, true})
		} else if fk.src == rel && fk.dst == table {
			ms = append(ms, match{fk, false})
		}
	}
	switch len(ms) {
	case 0:
		return "", pgrst("PGRST200", "Could not find a relationship between '"+table+"' and '"+rel+"' in the schema cache", "")
	case 1:
	default:
		return "", pgrst("PGRST201", "Could not embed because more than one relationship was found for '"+table+"' and '"+rel+"'", "")
	}
	m := ms[0]
	sub := "_e" + strconv.Itoa(depth)
	cols, err := s.selectList(ctx, b, rel, sub, sel, depth+1)
	if err != nil {
		return "", err
	}
	var on []string
	for i := range m.fk.srcCols {
		if m.toParent {
			on = append(on, sub+"."+ident(m.fk.dstCols[i])+" = "+alias+"."+ident(m.fk.srcCols[i]))
		} else {
			on = append(on, sub+"."+ident(m.fk.srcCols[i])+" = "+alias+"."+ident(m.fk.dstCols[i]))
		}
	}
	inner := "select " + cols + " from " + ident("public", rel) + " " + sub + " where " + strings.Join(on, " and ")
	if !m.toParent && s.cfg.MaxRows > 0 {
		// db-max-rows limits every node of the read plan (Plan.hs
		// treeRestrictRange).
		inner += " limit " + strconv.Itoa(s.cfg.MaxRows)
	}
	name := ident(rel)
	if as != "" {
		name = ident(as)
	}
	if m.toParent {
		return "(select to_json(_x) from (" + inner + ") _x) as " + name, nil
	}
	return "coalesce((select json_agg(_x) from (" + inner + ") _x), '[]'::json) as " + name, nil
}

// read serves GET/HEAD /<table>.
func (s *Server) read(w http.ResponseWriter, req *request, table string) error {
	ctx := req.r.Context()
	q := req.r.URL.Query()
	b := &builder{authed: req.authed}
	cols, err := s.selectList(ctx, b, table, "_t", q.Get("select"), 0)
	if err != nil {
		return err
	}
	wh, err := s.where(b, q)
	if err != nil {
		return err
	}
	ord, err := b.orderBy(q.Get("order"))
	if err != nil {
		return err
	}
	whereParams := slices.Clone(b.params)
	limit, offset := "", 0
	lim := s.cfg.MaxRows
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil {
			return pgrst("PGRST100", "invalid limit "+v, "")
		}
		if l < 0 {
			return pgrst("PGRST103", "Requested range not satisfiable", "Limit should be greater than or equal to zero.")
		}
		if lim <= 0 || l < lim {
			lim = l // db-max-rows caps what the client asks for
		}
	}
	if lim >= 0 {
		limit = " limit " + b.param(lim)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return pgrst("PGRST100", "invalid offset "+v, "")
		}
		offset = n
		limit += " offset " + b.param(n)
	}
	from := " from " + ident("public", table) + " _t"
	sql := "select count(*)::int, coalesce(json_agg(_s), '[]'::json) from (select " + cols + from + wh + ord + limit + ") _s"
	var (
		n     int
		body  []byte
		total = "*"
	)
	err = s.within(req, true, func(tx pgx.Tx) error {
		var err error
		n, body, err = s.result(tx, req, sql, b.params)
		if err != nil {
			return err
		}
		if req.prefer["count"] == "exact" {
			var t int
			if err := tx.QueryRow(ctx, "select count(*)::int"+from+wh, whereParams...).Scan(&t); err != nil {
				return s.dbErr(err, req)
			}
			total = strconv.Itoa(t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Range", contentRange(offset, n, total))
	status := http.StatusOK
	if total != "*" {
		if t, _ := strconv.Atoi(total); offset > t {
			// RangeQuery.hs rangeStatus: an offset past the end is 416.
			return pgrst("PGRST103", "Requested range not satisfiable",
				fmt.Sprintf("An offset of %d was requested, but there are only %s rows.", offset, total))
		}
		w.Header().Set("Preference-Applied", "count=exact")
		if t, _ := strconv.Atoi(total); n < t-offset || offset > 0 && n < t {
			status = http.StatusPartialContent // Response.hs rangeStatus
		}
	}
	writeBody(w, req, status, body)
	return nil
}

// primaryKey returns table's primary key columns.
func (s *Server) primaryKey(ctx context.Context, table string) ([]string, error) {
	s.pkMu.Lock()
	defer s.pkMu.Unlock()
	if pk, ok := s.pks[table]; ok {
		return pk, nil
	}
	var pk []string
	err := s.pool.QueryRow(ctx, `
select coalesce(array(select a.attname::text from pg_index i
  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
  where i.indrelid = ('public.' || quote_ident($1))::regclass and i.indisprimary), '{}')`, table).Scan(&pk)
	if err != nil {
		return nil, err
	}
	s.pks[table] = pk
	return pk, nil
}

// write finishes an INSERT/UPDATE/DELETE … RETURNING <alias> AS _r,
// <inserted> AS _ins statement (in CTE _w) with the select= representation,
// singular check and status.
func (s *Server) write(w http.ResponseWriter, req *request, b *builder, table, cte string, okStatus int) error {
	ctx := req.r.Context()
	cols, err := s.selectList(ctx, b, table, "_t", req.r.URL.Query().Get("select"), 0)
	if err != nil {
		return err
	}
	sql := "with _w as (" + cte + ") select count(*)::int, coalesce(json_agg(_s), '[]'::json), " +
		"(select count(*) from _w where _ins)::int from (select " + cols + " from (select (_r).* from _w) _t) _s"
	var (
		n, inserted int
		body        []byte
	)
	err = s.within(req, false, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, sql, b.params...).Scan(&n, &body, &inserted); err != nil {
			return s.dbErr(err, req)
		}
		var err error
		body, err = singularBody(req, n, body)
		return err
	})
	if err != nil {
		return err
	}
	if req.r.Method == http.MethodPost && req.prefer["resolution"] == "merge-duplicates" && inserted == 0 {
		// An upsert that only updated rows (Response.hs: 200 unless a row
		// was inserted).
		okStatus = http.StatusOK
	}
	if req.r.Method == http.MethodPost {
		w.Header().Set("Content-Range", "*/*")
	} else {
		w.Header().Set("Content-Range", contentRange(0, n, "*"))
	}
	ret := req.prefer["return"]
	if ret != "" {
		// One header listing every applied preference, as PostgREST sends it.
		applied := append(w.Header().Values("Preference-Applied"), "return="+ret)
		w.Header().Set("Preference-Applied", strings.Join(applied, ", "))
	}
	if ret != "representation" {
		if okStatus == http.StatusOK {
			okStatus = http.StatusNoContent
		}
		w.WriteHeader(okStatus)
		return nil
	}
	writeBody(w, req, okStatus, body)
	return nil
}

// What write expects a statement to return: the row, and whether it was
// inserted (xmax = 0) rather than updated by ON CONFLICT.
const (
	returningRow    = " returning _t as _r, false as _ins"
	returningInsert = " returning _i as _r, (_i.xmax = 0) as _ins"
)

// insert serves POST /<table>: one object or an array, columns=,
// on_conflict=, Prefer resolution (references/api/tables_views.rst).
func (s *Server) insert(w http.ResponseWriter, req *request, table string) error {
	body, err := readBody(w, req, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var rows []map[string]json.RawMessage
	if trimmed := strings.TrimSpace(string(body)); strings.HasPrefix(trimmed, "[") {
		err = json.Unmarshal(body, &rows)
	} else {
		var one map[string]json.RawMessage
		err = json.Unmarshal(body, &one)
		rows = []map[string]json.RawMessage{one}
		body, _ = json.Marshal(rows) //nolint:errchkjson // re-encodes what was just decoded
	}
	if err != nil {
		return pgrst("PGRST102", "Empty or invalid json", err.Error())
	}
	q := req.r.URL.Query()
	var keys []string
	if c := q.Get("columns"); c != "" {
		for k := range strings.SplitSeq(c, ",") {
			keys = append(keys, strings.Trim(strings.TrimSpace(k), `"`))
		}
	} else {
		// Without columns=, every object must have the same keys
		// (ApiRequest/Payload.hs: "All object keys must match").
		for i, r := range rows {
			if i == 0 {
				for k := range r {
					keys = append(keys, k)
				}
				continue
			}
			same := len(r) == len(keys)
			for _, k := range keys {
				if _, ok := r[k]; !ok {
					same = false
				}
			}
			if !same {
				return pgrst("PGRST102", "All object keys must match", "")
			}
		}
		slices.Sort(keys)
	}
	b := &builder{authed: req.authed}
	target := ident("public", table)
	var cte string
	if len(keys) == 0 {
		cte = "insert into " + target + " as _i default values" + returningInsert
	} else {
		qk := make([]string, len(keys))
		for i, k := range keys {
			qk[i] = ident(k)
		}
		list := strings.Join(qk, ", ")
		cte = "insert into " + target + " as _i (" + list + ") select " + list +
			" from json_populate_recordset(null::" + target + ", " + b.param(string(body)) + "::json)"
		if res := req.prefer["resolution"]; res == "merge-duplicates" || res == "ignore-duplicates" {
			conflict, err := s.conflictColumns(req, table, q.Get("on_conflict"))
			if err != nil {
				return err
			}
			cte += " on conflict (" + strings.Join(conflict, ", ") + ")"
			var sets []string
			for _, k := range qk {
				if !slices.Contains(conflict, k) {
					sets = append(sets, k+" = excluded."+k)
				}
			}
			if res == "ignore-duplicates" || len(sets) == 0 {
				cte += " do nothing"
			} else {
				cte += " do update set " + strings.Join(sets, ", ")
			}
			w.Header().Add("Preference-Applied", "resolution="+res)
		}
		cte += returningInsert
	}
	return s.write(w, req, b, table, cte, http.StatusCreated)
}

func (s *Server) conflictColumns(req *request, table, onConflict string) ([]string, error) {
	var cols []string
	if onConflict != "" {
		cols = strings.Split(onConflict, ",")
	} else {
		pk, err := s.primaryKey(req.r.Context(), table)
		if err != nil {
			return nil, s.dbErr(err, req)
		}
		cols = pk
	}
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = ident(strings.TrimSpace(c))
	}
	return out, nil
}

// update serves PATCH /<table>?filters with a JSON object.
func (s *Server) update(w http.ResponseWriter, req *request, table string) error {
	body, err := readBody(w, req, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return pgrst("PGRST102", "Empty or invalid json", err.Error())
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := &builder{authed: req.authed}
	payload := b.param(string(body))
	wh, err := s.where(b, req.r.URL.Query())
	if err != nil {
		return err
	}
	target := ident("public", table)
	if len(keys) == 0 {
		// Nothing to set: PostgREST answers as if no row matched.
		return s.write(w, req, b, table, "select _t as _r, false as _ins from "+target+" _t where false and "+payload+"::text is null", http.StatusOK)
	}
	sets := make([]string, len(keys))
	for i, k := range keys {
		sets[i] = ident(k) + " = _b." + ident(k)
	}
	cte := "update " + target + " as _t set " + strings.Join(sets, ", ") +
		" from json_populate_record(null::" + target + ", " + payload + "::json) _b" + wh + returningRow
	return s.write(w, req, b, table, cte, http.StatusOK)
}

// delete serves DELETE /<table>?filters.
func (s *Server) delete(w http.ResponseWriter, req *request, table string) error {
	b := &builder{authed: req.authed}
	wh, err := s.where(b, req.r.URL.Query())
	if err != nil {
		return err
	}
	return s.write(w, req, b, table, "delete from "+ident("public", table)+" as _t"+wh+returningRow, http.StatusOK)
}
