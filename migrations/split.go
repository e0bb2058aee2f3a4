package migrations

import "strings"

// SplitStatements splits a SQL script into statements the way the Supabase
// CLI records them in schema_migrations.statements: on top-level semicolons,
// ignoring those inside quotes, dollar-quoted bodies and comments. Empty
// statements are dropped; each statement is trimmed and keeps no trailing
// semicolon.
func SplitStatements(sql string) []string {
	var (
		out   []string
		start int
		i     int
		n     = len(sql)
	)
	flush := func(end int) {
		s := strings.TrimSpace(sql[start:end])
		if s != "" && !onlyComments(s) {
			out = append(out, s)
		}
		start = end + 1
	}
	for i < n {
		c := sql[i]
		switch {
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			depth := 0
			for i < n {
				if i+1 < n && sql[i] == '/' && sql[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if i+1 < n && sql[i] == '*' && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				i++
			}
		case c == '\'' || c == '"':
			i++
			for i < n {
				if sql[i] == c {
					if i+1 < n && sql[i+1] == c { // doubled quote
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
		case c == '$':
			tag, ok := dollarTag(sql[i:])
			if !ok {
				i++
				continue
			}
			end := strings.Index(sql[i+len(tag):], tag)
			if end < 0 {
				i = n
				continue
			}
			i += len(tag) + end + len(tag)
		case c == ';':
			flush(i)
			i++
		default:
			i++
		}
	}
	if start < n {
		flush(n)
	}
	return out
}

// dollarTag returns the opening tag ($$ or $name$) at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		ch := s[j]
		if ch == '$' {
			return s[:j+1], true
		}
		if ch != '_' && (ch < 'a' || ch > 'z') && (ch < 'A' || ch > 'Z') && (j <= 1 || ch < '0' || ch > '9') {
			return "", false
		}
	}
	return "", false
}

func onlyComments(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}
