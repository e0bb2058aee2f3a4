package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/orchable/orchable/supabase"
)

// -call-cpu: the server's CPU time of each call the engine makes, by
// function and size, while the scenario runs.
//
// The throughput scenarios measure the server's CPU over a whole run, and
// the SQL functions' statistics (-function-stats) give wall time, which on
// two shared cores is mostly time spent waiting for a core: neither says
// which calls the server's CPU went to under load. With -call-cpu the
// engine's direct transport reads its backend's CPU time
// (/proc/<pid>/schedstat, nanoseconds) before and after every call
// (supabase.DirectConfig.Trace), and each orchable database prints, when
// it is dropped, the calls' CPU by function and by size: the tasks a
// completion names, or the tasks a claim asks for (p_limit; it may get
// fewer). Compare with the sql-api scenario, which measures the same calls
// alone. With each call's CPU it tallies the backend's minor page faults
// (/proc/<pid>/stat): memory the call had the kernel map afresh. Four
// reads of /proc per call cost the bench process a few
// microseconds a call; the server's figures are its own.

// callTracer tallies the calls' backend CPU; nil when -call-cpu is off.
var callTracer *callCPU //nolint:gochecknoglobals // set once from the flag

// engineDirectConfig is the engine's direct transport configuration: the
// call tracer's hook when -call-cpu is on.
func engineDirectConfig() *supabase.DirectConfig {
	if callTracer == nil {
		return nil
	}
	return &supabase.DirectConfig{Trace: callTracer.trace}
}

type callCPU struct {
	mu     sync.Mutex
	tally  map[callKey]*callTally
	failed string // why a backend's CPU could not be read (the first reason)
}

type callKey struct {
	path string
	size int // the bucket's upper bound (callSizes)
}

type callTally struct {
	calls, items, ns, faults int64
}

// callSizes are the size buckets, by their upper bounds.
var callSizes = []int{0, 1, 10, 50, 100, 1000} //nolint:gochecknoglobals // constant table

func newCallCPU() *callCPU { return &callCPU{tally: map[callKey]*callTally{}} }

func (c *callCPU) trace(path string, pid uint32, args string) func() {
	start, err := readSchedstat(int(pid))
	if err != nil {
		c.fail(err)
		return func() {}
	}
	st0, err := readStat(int(pid))
	if err != nil {
		c.fail(err)
		return func() {}
	}
	items := callItems(path, args)
	return func() {
		end, err := readSchedstat(int(pid))
		if err != nil {
			c.fail(err)
			return
		}
		st1, err := readStat(int(pid))
		if err != nil {
			c.fail(err)
			return
		}
		size := callSizes[len(callSizes)-1]
		for _, s := range callSizes {
			if items <= s {
				size = s
				break
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		k := callKey{path: path, size: size}
		t := c.tally[k]
		if t == nil {
			t = &callTally{}
			c.tally[k] = t
		}
		t.calls++
		t.items += int64(items)
		t.ns += end - start
		t.faults += st1.minflt - st0.minflt
	}
}

func (c *callCPU) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == "" {
		c.failed = err.Error()
	}
}

// callItems is the tasks a call is about: the items of complete_tasks, one
// for complete_task, the p_limit a claim asks for, else 0.
func callItems(path, args string) int {
	switch path {
	case "/rpc/complete_tasks":
		return strings.Count(args, `"task_id":`)
	case "/rpc/complete_task":
		return 1
	case "/rpc/claim_tasks":
		var a struct {
			Limit int `json:"p_limit"`
		}
		if json.Unmarshal([]byte(args), &a) == nil {
			return a.Limit
		}
	}
	return 0
}

// print writes the tally since the last print to w, then clears it.
func (c *callCPU) print(w io.Writer, db string) {
	c.mu.Lock()
	tally, failed := c.tally, c.failed
	c.tally, c.failed = map[callKey]*callTally{}, ""
	c.mu.Unlock()
	if len(tally) == 0 && failed == "" {
		return
	}
	fmt.Fprintf(w, "server CPU of the engine's calls in %s, by function and size (tasks named; a claim: tasks asked for):\n", db)
	if failed != "" {
		fmt.Fprintf(w, "  some calls not measured: %s\n", failed)
	}
	keys := make([]callKey, 0, len(tally))
	var all int64
	for k, t := range tally {
		keys = append(keys, k)
		all += t.ns
	}
	slices.SortFunc(keys, func(a, b callKey) int {
		if c := strings.Compare(a.path, b.path); c != 0 {
			return c
		}
		return a.size - b.size
	})
	fmt.Fprintf(w, "  %-26s %9s %8s %9s %10s %12s %12s %7s %15s\n", "call", "size ≤", "calls", "tasks", "CPU ms", "µs per call", "µs per task", "share", "faults per task")
	for _, k := range keys {
		t := tally[k]
		perTask, faults := "-", "-"
		if t.items > 0 {
			perTask = fmt.Sprintf("%.1f", float64(t.ns)/1e3/float64(t.items))
			faults = fmt.Sprintf("%.2f", float64(t.faults)/float64(t.items))
		}
		fmt.Fprintf(w, "  %-26s %9d %8d %9d %10.1f %12.1f %12s %6.1f%% %15s\n", k.path, k.size, t.calls, t.items,
			float64(t.ns)/1e6, float64(t.ns)/1e3/float64(t.calls), perTask, 100*float64(t.ns)/float64(max(all, 1)), faults)
	}
}
