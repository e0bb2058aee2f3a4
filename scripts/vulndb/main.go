// Command vulndb runs govulncheck offline (`make vuln`; docs/vulnerabilities.md).
// vuln.go.dev, govulncheck's default database, is not reachable from every
// machine that runs our checks; the Go module proxy is, and it serves the
// golang.org/x/vulndb module that the database is published from.
//
//	go run ./scripts/vulndb build -out DIR [-version V]   build the database (default: newest advisories)
//	govulncheck -db file://DIR -format json ./... > F
//	go run ./scripts/vulndb gate -accept 'ID ...' < F     fail on a reachable finding not accepted
//
// # build
//
// The module holds one OSV file per advisory in data/osv/<ID>.json. DIR gets
// the layout of govulncheck's v1 database schema (go.dev/security/vuln/database):
//
//	index/db.json       {"modified": newest entry time (the module's commit time when entries carry none)}
//	index/modules.json  [{"path": module, "vulns": [{"id", "modified"}]}], sorted by path then id
//	index/vulns.json    [{"id", "modified", "aliases"}], sorted by id
//	ID/<ID>.json        the OSV entry, unchanged
//
// The "fixed" field of modules.json is optional and left out: govulncheck
// uses it only to skip reading entries that cannot affect the version in
// use, and it checks every entry it reads against the entry's own ranges.
// DIR is replaced as a whole, so a failed build never leaves a partial
// database behind.
//
// # gate
//
// gate reads govulncheck's JSON stream and lists every finding at the
// symbol level (code that calls into the vulnerable module or package; for
// advisories that name no symbols, any call into the module). It fails when
// one is not in -accept, or when an accepted one has a fixed version: an
// accepted advisory is one without a fix whose reason is written down in
// docs/vulnerabilities.md, and a fix means it is time to update instead.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const vulndbModule = "golang.org/x/vulndb"

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: vulndb build -out DIR [-version V] | vulndb gate -accept 'ID ...' < govulncheck.json")
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:])
	case "gate":
		return runGate(args[1:], os.Stdin, os.Stdout)
	default:
		return fmt.Errorf("unknown command %q (want build or gate)", args[0])
	}
}

func runBuild(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("vulndb build", flag.ContinueOnError)
	out := fset.String("out", "", "directory to write the database to (replaced)")
	version := fset.String("version", "latest", "version of "+vulndbModule+" to build from")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	mod, err := download(ctx, *version)
	if err != nil {
		return err
	}
	n, err := build(filepath.Join(mod.Dir, "data", "osv"), *out, mod.Time)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vulndb: %d advisories from %s@%s in %s\n", n, vulndbModule, mod.Version, *out)
	return nil
}

// module is what `go mod download -json` reports about one module version.
type module struct {
	Version string
	Dir     string
	Info    string
	Error   string
	Time    time.Time `json:"-"`
}

// download fetches the vulndb module through the module proxy (or finds it
// in the module cache) and returns where it is.
func download(ctx context.Context, version string) (*module, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", vulndbModule+"@"+version) //nolint:gosec // no shell; the version is the developer's own flag
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var mod module
	if err := json.Unmarshal(stdout.Bytes(), &mod); err != nil { //nolint:musttag // the go command writes Go field names
		return nil, fmt.Errorf("error downloading %s@%s: %w: %s", vulndbModule, version, errors.Join(runErr, err), stderr.String())
	}
	if mod.Error != "" {
		return nil, fmt.Errorf("error downloading %s@%s: %s", vulndbModule, version, mod.Error)
	}
	if runErr != nil {
		return nil, fmt.Errorf("error downloading %s@%s: %w: %s", vulndbModule, version, runErr, stderr.String())
	}
	info, err := os.ReadFile(mod.Info)
	if err != nil {
		return nil, fmt.Errorf("error reading module info: %w", err)
	}
	var meta struct{ Time time.Time }
	if err := json.Unmarshal(info, &meta); err != nil { //nolint:musttag // the go command writes Go field names
		return nil, fmt.Errorf("error decoding module info %s: %w", mod.Info, err)
	}
	mod.Time = meta.Time
	return &mod, nil
}

// entry is the part of an OSV entry the indexes need.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// build writes the database for the OSV files in src to out and returns the
// number of entries.
func build(src, out string, released time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", src)
	}
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp(parent, ".vulndb-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp) // best effort; nothing is left after the rename below
	if err := os.Mkdir(filepath.Join(tmp, "ID"), 0o755); err != nil {
		return 0, err
	}

	db := dbMeta{}
	modules := map[string]*moduleMeta{}
	vulns := make([]vulnMeta, 0, len(files))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("error decoding %s: %w", file, err)
		}
		if filepath.Base(file) != e.ID+".json" {
			return 0, fmt.Errorf("%s holds entry %q; want <ID>.json", file, e.ID)
		}
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name}
				modules[a.Package.Name] = m
			}
			if !slices.ContainsFunc(m.Vulns, func(v moduleVuln) bool { return v.ID == e.ID }) {
				m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
			}
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), b, 0o644); err != nil { //nolint:gosec // public advisories
			return 0, err
		}
	}
	// The module's files carry no modification times (vuln.go.dev adds them
	// when it publishes); the module's commit time stands in for the
	// database's.
	if db.Modified.IsZero() {
		db.Modified = released
	}

	byPath := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		byPath = append(byPath, m)
	}
	slices.SortFunc(byPath, func(a, b *moduleMeta) int { return cmp.Compare(a.Path, b.Path) })
	slices.SortFunc(vulns, func(a, b vulnMeta) int { return cmp.Compare(a.ID, b.ID) })

	if err := os.Mkdir(filepath.Join(tmp, "index"), 0o755); err != nil {
		return 0, err
	}
	for name, v := range map[string]any{"db.json": db, "modules.json": byPath, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", name), b, 0o644); err != nil { //nolint:gosec // public advisories
			return 0, err
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	return len(files), nil
}
