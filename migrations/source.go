package migrations

// Engine SQL as source (docs/sql-source.md). Migrations are the history a
// project receives and never change once released; the functions of the SQL
// API also live as source files, one function per file under
// sql/functions/<schema>.<name>.sql, which a reader diffs like Go. The
// generator (go run ./migrations/cmd/sqlgen, `make sql`) writes the next
// migration from the source files that differ from the latest definition in
// the history, and TestFunctionSources fails when the two disagree.
// Privileges of every function are stated once, in sql/grants.txt.

import (
	"bufio"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// FunctionDef is one function definition: a create statement.
type FunctionDef struct {
	// Key is schema.name(argument types), normalised.
	Key string
	// Name is schema.name.
	Name string
	// Returns is the return type as written after RETURNS, normalised
	// (lower case, single spaces): a change of it alone cannot be made
	// with create or replace.
	Returns string
	// SQL is the statement as written, without its trailing semicolon.
	SQL string
	// Origin is the migration or source file it comes from.
	Origin string
}

var (
	createFnRE = regexp.MustCompile(`(?is)^create\s+(?:or\s+replace\s+)?function\s+([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\s*\(`)
	dropFnRE   = regexp.MustCompile(`(?is)^drop\s+function\s+(?:if\s+exists\s+)?([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\s*\(`)
	spaceRE    = regexp.MustCompile(`\s+`)
)

// LatestFunctions replays the history and returns the latest definition of
// every function created at the top level of a migration (not inside DO
// blocks) and not dropped later, by key.
func LatestFunctions(all []Migration) (map[string]FunctionDef, error) {
	out := map[string]FunctionDef{}
	for _, m := range all {
		for _, stmt := range SplitStatements(m.SQL) {
			body := StripLeadingComments(stmt)
			if c := createFnRE.FindStringSubmatchIndex(body); c != nil {
				name := strings.ToLower(body[c[2]:c[3]] + "." + body[c[4]:c[5]])
				args, ok := argList(body[c[1]-1:])
				if !ok {
					return nil, fmt.Errorf("%s: cannot read the arguments of %s", m.File, name)
				}
				key := name + "(" + strings.Join(argTypes(args, true), ",") + ")"
				returns := returnType(body[c[1]-1+len(args)+2:])
				out[key] = FunctionDef{Key: key, Name: name, Returns: returns, SQL: stmt, Origin: m.File}
				continue
			}
			if d := dropFnRE.FindStringSubmatchIndex(body); d != nil {
				name := strings.ToLower(body[d[2]:d[3]] + "." + body[d[4]:d[5]])
				args, ok := argList(body[d[1]-1:])
				if !ok {
					return nil, fmt.Errorf("%s: cannot read the arguments of a drop of %s", m.File, name)
				}
				delete(out, name+"("+strings.Join(argTypes(args, false), ",")+")")
			}
		}
	}
	return out, nil
}

// LoadSources reads the function source files (*.sql in fsys, one create
// statement each, leading comments allowed), by key.
func LoadSources(fsys fs.FS) (map[string]FunctionDef, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	out := map[string]FunctionDef{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		stmts := SplitStatements(string(b))
		if len(stmts) != 1 {
			return nil, fmt.Errorf("%s: a source file holds exactly one create function statement (found %d statements)", e.Name(), len(stmts))
		}
		defs, err := LatestFunctions([]Migration{{File: e.Name(), SQL: string(b)}})
		if err != nil {
			return nil, err
		}
		if len(defs) != 1 {
			return nil, fmt.Errorf("%s: not a create function statement", e.Name())
		}
		for k, d := range defs {
			if want := SourceFileName(d.Name); e.Name() != want {
				return nil, fmt.Errorf("%s: defines %s; name the file %s", e.Name(), d.Name, want)
			}
			if prev, dup := out[k]; dup {
				return nil, fmt.Errorf("%s and %s both define %s", prev.Origin, e.Name(), k)
			}
			out[k] = d
		}
	}
	return out, nil
}

// SourceFileName is the source file of a function (schema.name → schema.name.sql).
func SourceFileName(name string) string { return name + ".sql" }

// SameDefinition reports whether two statements define the same function
// body, ignoring leading comments and surrounding white space.
func SameDefinition(a, b string) bool {
	return strings.TrimSpace(StripLeadingComments(a)) == strings.TrimSpace(StripLeadingComments(b))
}

// StripLeadingComments drops the -- comment lines and blank lines before a
// statement.
func StripLeadingComments(stmt string) string {
	s := strings.TrimLeft(stmt, " \t\r\n")
	for strings.HasPrefix(s, "--") {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return ""
		}
		s = strings.TrimLeft(s[i+1:], " \t\r\n")
	}
	return s
}

// argList returns the text between the parenthesis that s starts with and
// its match.
func argList(s string) (string, bool) {
	if !strings.HasPrefix(s, "(") {
		return "", false
	}
	depth := 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[1:i], true
			}
		}
	}
	return "", false
}

// returnKeywordRE is where a RETURNS clause ends: the next clause of a
// create function statement.
var returnKeywordRE = regexp.MustCompile(`(?i)^(language|as|immutable|stable|volatile|set|security|strict|called|parallel|cost|rows|leakproof|not|window|support|transform|external)\b`)

// returnType reads the type of the RETURNS clause at the start of s (what
// follows the argument list), normalised; "" when there is none.
func returnType(s string) string {
	s = strings.TrimLeft(s, " \t\r\n")
	if len(s) < len("returns") || !strings.EqualFold(s[:len("returns")], "returns") {
		return ""
	}
	s = s[len("returns"):]
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], "--") {
			// A line comment is no part of the type (one between RETURNS and
			// the next clause read as a changed return type, and the
			// function was dropped and created again).
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				break
			}
			i += end - 1 // the newline is read next
			b.WriteByte(' ')
			continue
		}
		if depth == 0 && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t' || s[i-1] == '\n' || s[i-1] == '\r') && returnKeywordRE.MatchString(s[i:]) {
			break
		}
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		}
		b.WriteByte(s[i])
	}
	return strings.ToLower(strings.TrimSpace(spaceRE.ReplaceAllString(b.String(), " ")))
}

var typeSynonyms = map[string]string{ //nolint:gochecknoglobals // a lookup table
	"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
	"varchar": "character varying", "timestamptz": "timestamp with time zone", "float8": "double precision",
}

// argTypes turns an argument list into normalised input types. named says
// whether each argument starts with a name (create) or is a bare type (drop).
func argTypes(args string, named bool) []string {
	var out []string
	for _, a := range splitTopLevel(args) {
		a = strings.ToLower(strings.TrimSpace(spaceRE.ReplaceAllString(a, " ")))
		if a == "" {
			continue
		}
		if i := strings.Index(a, " default "); i >= 0 {
			a = a[:i]
		}
		if i := strings.Index(a, " = "); i >= 0 {
			a = a[:i]
		}
		fields := strings.Fields(a)
		mode := ""
		if len(fields) > 1 && slices.Contains([]string{"in", "out", "inout", "variadic"}, fields[0]) {
			mode, fields = fields[0], fields[1:]
		}
		if mode == "out" {
			continue
		}
		if named && len(fields) > 1 {
			fields = fields[1:]
		}
		t := strings.Join(fields, " ")
		if syn, ok := typeSynonyms[strings.TrimSuffix(t, "[]")]; ok {
			t = syn + t[len(strings.TrimSuffix(t, "[]")):]
		}
		out = append(out, t)
	}
	return out
}

func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Grant is one line of sql/grants.txt: a function and the roles that may
// execute it (besides its owner).
type Grant struct {
	Name  string   // schema.name
	Roles []string // subset of authenticated, service_role; empty for none
}

// GrantableRoles are the roles a grant line may name.
var GrantableRoles = []string{"authenticated", "service_role"} //nolint:gochecknoglobals // a constant list

// ParseGrants reads sql/grants.txt: one function a line, "schema.name
// role role…" or "schema.name -" for nobody; # starts a comment.
func ParseGrants(text string) (map[string]Grant, error) {
	out := map[string]Grant{}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("grants.txt:%d: want \"schema.name role…\" or \"schema.name -\"", n)
		}
		g := Grant{Name: f[0]}
		for _, r := range f[1:] {
			switch {
			case r == "-" && len(f) == 2:
			case slices.Contains(GrantableRoles, r):
				g.Roles = append(g.Roles, r)
			default:
				return nil, fmt.Errorf("grants.txt:%d: unknown role %q (use %s, or - for none)", n, r, strings.Join(GrantableRoles, ", "))
			}
		}
		if _, dup := out[g.Name]; dup {
			return nil, fmt.Errorf("grants.txt:%d: %s is listed twice", n, g.Name)
		}
		out[g.Name] = g
	}
	return out, sc.Err()
}

// GrantSQL states a function's privileges exactly: revoked from everyone,
// then granted to the listed roles. sig is schema.name(types).
func GrantSQL(sig string, g Grant) string {
	s := fmt.Sprintf("revoke execute on function %s from public, anon, authenticated, service_role;\n", sig)
	if len(g.Roles) > 0 {
		s += fmt.Sprintf("grant execute on function %s to %s;\n", sig, strings.Join(g.Roles, ", "))
	}
	return s
}
