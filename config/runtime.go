package config

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercentDefault is the garbage collector's target (GOGC) the service runs
// with when GOGC is unset: a collection when the heap has grown to five times
// what the last one left, not Go's twice.
//
// The engine's live heap is small (about 4 MB while it works a backlog), so
// under Go's default it collected every 4-5 MB allocated, and each
// collection scans every goroutine's stack. With 400 the bench's engine
// spends 14-29 % less CPU per task (docs/performance.md, twelfth round), and
// its peak RSS with 1,000 model calls in flight stays within 1 MB of the
// default's: the goroutines' stacks and the runtime weigh more than the
// heap's extra room.
const GCPercentDefault = 400

// MemoryLimitShare is the share of the memory the process may use that
// becomes its soft memory limit (GOMEMLIMIT) when that is unset: near it the
// collector runs as often as it must, whatever GOGC says, so a large live
// heap (a merge of thousands of outputs) does not grow five-fold into the
// machine's last megabytes.
const MemoryLimitShare = 0.8

// RuntimeGC is what TuneRuntime did to the collector (the bench prints it;
// the service logs the settings in force from runtime/metrics).
type RuntimeGC struct {
	// GCPercent is the target now in force and GCPercentFrom where it came
	// from: "GOGC" when set in the environment (the runtime applied it),
	// "default" when TuneRuntime set GCPercentDefault.
	GCPercent     int
	GCPercentFrom string
	// MemoryLimit is the soft limit in bytes TuneRuntime set (0 when it set
	// none) and MemoryLimitFrom where it came from: "GOMEMLIMIT" (the
	// runtime applied it; MemoryLimit is 0), the file the memory was read
	// from, or "" when no memory size could be read (no limit).
	MemoryLimit     int64
	MemoryLimitFrom string
}

// TuneRuntime sets the collector for the service's process where the
// environment leaves it to orchable: GOGC unset → GCPercentDefault, and
// GOMEMLIMIT unset → MemoryLimitShare of the memory the process may use (its
// cgroup's limit, else the machine's). The Go runtime itself applies GOGC and
// GOMEMLIMIT when they are set; an operator sets GOGC=100 for Go's default.
// It changes process-wide settings: main calls it once, and the bench, to
// measure what the service runs with; never a library (its test puts the
// settings back).
func TuneRuntime(getenv func(string) string) RuntimeGC {
	g := runtimeGC(getenv, os.DirFS("/"))
	if g.GCPercentFrom == "default" {
		debug.SetGCPercent(g.GCPercent)
	}
	if g.MemoryLimit > 0 {
		debug.SetMemoryLimit(g.MemoryLimit)
	}
	return g
}

// runtimeGC decides what TuneRuntime sets, reading the memory size from root
// (the file system's root).
func runtimeGC(getenv func(string) string, root fs.FS) RuntimeGC {
	g := RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default"}
	if v := strings.TrimSpace(getenv("GOGC")); v != "" {
		// What the runtime made of it: "off", a number, or Go's default
		// for anything else.
		g.GCPercentFrom = "GOGC"
		switch n, err := strconv.Atoi(v); {
		case v == "off":
			g.GCPercent = -1
		case err == nil:
			g.GCPercent = max(n, -1)
		default:
			g.GCPercent = 100
		}
	}
	if strings.TrimSpace(getenv("GOMEMLIMIT")) != "" {
		g.MemoryLimitFrom = "GOMEMLIMIT"
		return g
	}
	if n, from := memoryAvailable(root); n > 0 {
		g.MemoryLimit, g.MemoryLimitFrom = int64(float64(n)*MemoryLimitShare), from
	}
	return g
}

// memoryAvailable is the memory the process may use in bytes and the file
// that said so: the cgroup's limit (v2, then v1) when it is lower than the
// machine's memory, else the machine's (/proc/meminfo). 0 when none can be
// read.
func memoryAvailable(root fs.FS) (int64, string) {
	total, totalFrom := memTotal(root)
	for _, name := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := fs.ReadFile(root, name)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil || n <= 0 { // "max": no limit
			continue
		}
		// cgroup v1 writes an unlimited group as a huge number.
		if total == 0 || n < total {
			return n, "/" + name
		}
	}
	return total, totalFrom
}

// memTotal reads MemTotal from /proc/meminfo.
func memTotal(root fs.FS) (int64, string) {
	f, err := root.Open("proc/meminfo")
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), "MemTotal:")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(rest), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n <= 0 || unit != "kB" {
			return 0, ""
		}
		return n << 10, "/proc/meminfo"
	}
	return 0, ""
}
