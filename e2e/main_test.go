package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// bin holds the paths of the binaries built once per test run.
var bin struct { //nolint:gochecknoglobals // set once in TestMain
	orchable, postgrest, fakegemini string
}

// TestMain builds the binaries once, runs the tests and removes the build
// directory. It does the goleak check of dbtest.Main itself, because the
// package needs its own clean-up after m.Run (dbtest.Main exits), and it uses
// no dbtest package database: every test creates its own database (one
// service per database, so sweepers never see another test's work).
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orchable-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin.orchable = filepath.Join(dir, "orchable")
	bin.postgrest = filepath.Join(dir, "postgresttest")
	bin.fakegemini = filepath.Join(dir, "fakegemini")
	builds := map[string]string{
		bin.orchable:   ".",
		bin.postgrest:  "./supabase/postgresttest/cmd/postgresttest",
		bin.fakegemini: "./model/geminitest/cmd/fakegemini",
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(builds))
	for out, pkg := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = ".."
			if b, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}
