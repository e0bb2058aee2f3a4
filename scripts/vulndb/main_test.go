package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The database layout is what govulncheck v1 reads: index/db.json,
// index/modules.json (sorted, one entry per affected module) and ID/<ID>.json
// unchanged.
func TestBuild(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write := func(id, body string) {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(src, id+".json"), []byte(body), 0o600))
	}
	write("GO-2026-0002", `{"id":"GO-2026-0002","modified":"0001-01-01T00:00:00Z","aliases":["CVE-2026-2"],
		"affected":[{"package":{"name":"example.com/b"}},{"package":{"name":"example.com/a"}}]}`)
	write("GO-2026-0001", `{"id":"GO-2026-0001","modified":"0001-01-01T00:00:00Z",
		"affected":[{"package":{"name":"example.com/a"}},{"package":{"name":"example.com/a"}}]}`)
	released := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)

	out := filepath.Join(t.TempDir(), "db")
	n, err := build(src, out, released)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, path))
		require.NoError(t, err)
		return string(b)
	}
	require.JSONEq(t, `{"modified":"2026-11-05T23:49:57Z"}`, read("index/db.json"))
	require.JSONEq(t, `[
		{"path":"example.com/a","vulns":[{"id":"GO-2026-0001","modified":"0001-01-01T00:00:00Z"},{"id":"GO-2026-0002","modified":"0001-01-01T00:00:00Z"}]},
		{"path":"example.com/b","vulns":[{"id":"GO-2026-0002","modified":"0001-01-01T00:00:00Z"}]}]`, read("index/modules.json"))
	require.JSONEq(t, `[{"id":"GO-2026-0001","modified":"0001-01-01T00:00:00Z"},
		{"id":"GO-2026-0002","modified":"0001-01-01T00:00:00Z","aliases":["CVE-2026-2"]}]`, read("index/vulns.json"))
	orig, err := os.ReadFile(filepath.Join(src, "GO-2026-0002.json"))
	require.NoError(t, err)
	require.Equal(t, string(orig), read("ID/GO-2026-0002.json"))

	t.Run("RefusesAMisnamedEntry", func(t *testing.T) {
		t.Parallel()
		bad := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(bad, "GO-2026-0003.json"), []byte(`{"id":"GO-2026-0004"}`), 0o600))
		_, err := build(bad, filepath.Join(t.TempDir(), "db"), released)
		require.ErrorContains(t, err, "want <ID>.json")
	})
}

func TestGate(t *testing.T) {
	t.Parallel()
	stream := func(findings ...map[string]any) string {
		t.Helper()
		var b strings.Builder
		for _, f := range findings {
			raw, err := json.Marshal(map[string]any{"finding": f})
			require.NoError(t, err)
			b.Write(raw)
			b.WriteByte('\n')
		}
		return `{"config":{"go_version":"go1.26.11"}}` + "\n" +
			`{"osv":{"id":"GO-2026-0001","summary":"bad thing"}}` + "\n" + b.String()
	}
	reachable := func(id, fixed string) map[string]any {
		return map[string]any{"osv": id, "fixed_version": fixed, "trace": []map[string]any{
			{"module": "example.com/a", "version": "v1.0.0", "package": "example.com/a", "function": "F"},
		}}
	}
	imported := func(id string) map[string]any {
		return map[string]any{"osv": id, "trace": []map[string]any{{"module": "example.com/a", "version": "v1.0.0", "package": "example.com/a"}}}
	}

	for _, tt := range []struct {
		name        string
		givenAccept string
		givenStream string
		expectErr   string
		expectOut   string
	}{
		{name: "NothingReachable", givenStream: stream(imported("GO-2026-0001")), expectOut: "0 reachable advisories, 0 failing"},
		{name: "ReachableWithAFix", givenStream: stream(reachable("GO-2026-0001", "v1.0.1")), expectErr: "GO-2026-0001", expectOut: "example.com/a@v1.0.0 (v1.0.1): bad thing — FAIL"},
		{name: "AcceptedWithoutAFix", givenAccept: "GO-2026-0001", givenStream: stream(reachable("GO-2026-0001", "")), expectOut: "1 reachable advisories, 0 failing"},
		{name: "AcceptedButNowFixed", givenAccept: "GO-2026-0001", givenStream: stream(reachable("GO-2026-0001", "v1.0.1")), expectErr: "accepted, but fixed in v1.0.1"},
		{name: "NotAccepted", givenAccept: "GO-2026-0009", givenStream: stream(reachable("GO-2026-0001", "")), expectErr: "GO-2026-0001"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := runGate([]string{"-accept", tt.givenAccept}, strings.NewReader(tt.givenStream), &out)
			if tt.expectErr != "" {
				require.ErrorContains(t, err, tt.expectErr)
			} else {
				require.NoError(t, err)
			}
			require.Contains(t, out.String(), tt.expectOut)
		})
	}
}
