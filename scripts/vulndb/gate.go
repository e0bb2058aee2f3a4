package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// message is one value of govulncheck's JSON stream; only the parts gate
// reads are declared.
type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

// reachable is one advisory that the scanned code calls into.
type reachable struct {
	id, module, version, fixed, summary string
}

func runGate(args []string, stdin io.Reader, stdout io.Writer) error {
	fset := flag.NewFlagSet("vulndb gate", flag.ContinueOnError)
	acceptList := fset.String("accept", "", "space-separated advisory IDs accepted without a fix (docs/vulnerabilities.md)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	accept := strings.Fields(*acceptList)

	summaries := map[string]string{}
	found := map[string]*reachable{}
	dec := json.NewDecoder(stdin)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("error reading govulncheck's JSON output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		// A finding whose innermost frame names a function is reachable;
		// the others only say that a vulnerable module or package is in the
		// build.
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			if found[f.OSV] == nil {
				found[f.OSV] = &reachable{id: f.OSV, module: f.Trace[0].Module, version: f.Trace[0].Version, fixed: f.FixedVersion}
			}
		}
	}

	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var failed []string
	for _, id := range ids {
		r := found[id]
		r.summary = summaries[id]
		verdict := "FAIL"
		switch {
		case slices.Contains(accept, id) && r.fixed == "":
			verdict = "accepted (no fix; docs/vulnerabilities.md)"
		case slices.Contains(accept, id):
			failed = append(failed, id+" (accepted, but fixed in "+r.fixed+": update)")
		default:
			failed = append(failed, id)
		}
		fixed := cmp.Or(r.fixed, "no fix")
		fmt.Fprintf(stdout, "%s %s@%s (%s): %s — %s\n", id, r.module, r.version, fixed, r.summary, verdict)
	}
	fmt.Fprintf(stdout, "vulndb gate: %d reachable advisories, %d failing\n", len(ids), len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("reachable vulnerabilities: %s", strings.Join(failed, ", "))
	}
	return nil
}
