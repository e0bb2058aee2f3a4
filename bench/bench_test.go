package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the memory scenario re-execute the test binary as its child.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == memoryChildArg {
		if err := memoryChild(context.Background(), os.Args[2:], os.Stdout); err != nil {
			_, _ = os.Stderr.WriteString("memory child: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every scenario once at a tiny size against the local
// server (BENCH_DATABASE_URL, default postgres@127.0.0.1:5432). It checks
// that the scenarios run and report, not the figures.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	out := t.TempDir()
	var log testWriter
	log.t = t
	if err := run(t.Context(), []string{"-runs", "1", "-quick", "-out", out, "all"}, &log); err != nil {
		t.Fatal(err)
	}
	for _, s := range scenarios() {
		b, err := os.ReadFile(filepath.Join(out, s.name+"-latest.json"))
		if err != nil {
			t.Fatalf("%s: no result: %v", s.name, err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(r.Figures) == 0 {
			t.Errorf("%s: no figures", s.name)
		}
		for _, f := range r.Figures {
			if f.Value < 0 {
				t.Errorf("%s: %s = %v", s.name, f.Name, f.Value)
			}
		}
		checkCostFigures(t, s.name, r.Figures)
	}
}

// checkCostFigures checks that the database-cost figures are there; the
// row counts come from pg_stat_all_tables, so they are measured on any
// server (CPU and WAL may be n/a on a remote one, with a reason).
func checkCostFigures(t *testing.T, scenario string, figs []Figure) {
	t.Helper()
	want := map[string][]string{
		"throughput-noop": {
			"DB CPU/task", "server CPU/task", "WAL/task, bench DB's records", "WAL/task, server-wide", "index entries written/task, upper bound",
			"floor tasks/s", "orchable tasks/s against the floor", "floor DB CPU/task",
		},
		"throughput-pipeline": {"DB CPU/task", "WAL/task, bench DB's records", "index entries written/task, upper bound", "floor tasks/s", "floor DB CPU/task"},
		"scaling":             {"N:1 merge over", "users ×", "DB CPU/completion", "rows read/completion", "index entries read/completion", "completion latency p99", "finished batches behind it", "of task_batches"},
	}[scenario]
	for _, name := range want {
		var found *Figure
		for i := range figs {
			if strings.Contains(figs[i].Name, name) {
				found = &figs[i]
				break
			}
		}
		switch {
		case found == nil:
			t.Errorf("%s: no figure %q", scenario, name)
		case strings.HasPrefix(found.Note, "n/a"):
			t.Logf("%s: %s: %s", scenario, found.Name, found.Note)
		case strings.HasSuffix(name, "tasks/s") && found.Value <= 0:
			t.Errorf("%s: %s = %v, want a rate", scenario, found.Name, found.Value)
		case strings.Contains(name, "index entries") && found.Value < 2:
			t.Errorf("%s: %s = %v, want at least 2 (two updates per task)", scenario, found.Name, found.Value)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
