// Command bench runs orchable's performance scenarios (SPEC §13) against the
// local PostgreSQL and prints every figure as a ratio against a baseline
// measured in the same run on the same server. See docs/performance.md.
//
//	cd bench && go run . [flags] <scenario>|all
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orchable/orchable/config"
)

// Figure is one measured value and what it is compared with.
type Figure struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
	Baseline float64 `json:"baseline,omitempty"`
	// BaselineName says what Baseline is (River, the target, direct, …).
	BaselineName string `json:"baseline_name,omitempty"`
	// HigherIsBetter orients the ratio: Value/Baseline when true (throughput,
	// quota used), Baseline/Value otherwise (latency, memory), so a ratio
	// ≥ 1 always means "at least as good as the baseline".
	HigherIsBetter bool    `json:"higher_is_better"`
	Ratio          float64 `json:"ratio,omitempty"`
	// Target is the SPEC §13 target in words; Met is whether it holds.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Note is a detail printed in the target column (a breakdown, a reason).
	Note string `json:"note,omitempty"`
}

func (f *Figure) computeRatio() {
	switch {
	case f.Baseline == 0 || f.Value == 0:
		f.Ratio = 0
	case f.HigherIsBetter:
		f.Ratio = f.Value / f.Baseline
	default:
		f.Ratio = f.Baseline / f.Value
	}
}

// Result is one scenario's report (medians over its runs).
type Result struct {
	Scenario   string     `json:"scenario"`
	Runs       int        `json:"runs"`
	Started    time.Time  `json:"started"`
	Elapsed    string     `json:"elapsed"`
	Conditions string     `json:"conditions"`
	Figures    []Figure   `json:"figures"`
	PerRun     [][]Figure `json:"per_run"`
}

// scenario measures once; the harness repeats it and reports medians.
type scenario struct {
	name string
	run  func(ctx context.Context, e *env) ([]Figure, error)
	// runs overrides -runs (0: -runs).
	runs func(o *options) int
}

func scenarios() []scenario {
	return []scenario{
		{"throughput-noop", throughputNoop, nil},
		{"throughput-pipeline", throughputPipeline, nil},
		{"throughput-postgrest", throughputPostgREST, nil},
		{"stage-overhead", stageOverhead, nil},
		{"webhook-ack", webhookAck, nil},
		{"wakeup", wakeup, nil},
		{"keypool", keypool, nil},
		{"memory", memory, nil},
		{"scaling", scaling, func(o *options) int { return o.ScaleRuns }},
		{"sql-api", sqlAPI, nil},
		{"slow-tasks", slowTasks, nil},
	}
}

// options are the command-line settings shared by all scenarios.
type options struct {
	AdminURL     string
	Runs         int
	Quick        bool
	Tasks        int // throughput-noop size
	Workers      []int
	ClaimBatch   int
	DBCalls      int
	Linger       time.Duration
	WriteQueue   int
	Conns        int32
	SyncCommit   string
	Out          string
	CPUProfile   string
	MemProfile   string
	gc           config.RuntimeGC // what config.TuneRuntime set
	SkipBaseline bool
	SkipFloor    bool
	Proposed     bool
	FuncStats    int // print the top N SQL functions by self time of each orchable run (0: off)
	// scaling's sizes (see scaling.go)
	ScaleMerge []int
	ScaleBatch int
	ScaleUsers int
	ScaleWork  int
	ScaleRuns  int
	// the owner's history case (history.go): finished batches behind the
	// old owner, and the roots each owner runs in its window
	ScaleHistory, ScaleHistoryRoots int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	// The collector as the service sets it (main calls the same), in the
	// memory scenario's child too; River's client runs in this process
	// under the same settings.
	gc := config.TuneRuntime(os.Getenv)
	if len(args) > 0 && args[0] == memoryChildArg {
		return memoryChild(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var workers string
	fs.StringVar(&o.AdminURL, "db", envOr("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), "admin URL of the PostgreSQL server (a role that can create databases)")
	fs.IntVar(&o.Runs, "runs", 3, "runs per scenario (the median is reported)")
	fs.BoolVar(&o.Quick, "quick", false, "tiny sizes: a smoke run")
	fs.IntVar(&o.Tasks, "tasks", 20000, "tasks (and River jobs) of throughput-noop; the other scenarios scale from it (the issue asks 200000: see docs/performance.md)")
	fs.StringVar(&workers, "workers", "100,1000", "worker counts of throughput-noop")
	fs.IntVar(&o.ClaimBatch, "claim-batch", 0, "DispatcherConfig.ClaimBatch (0: the engine default)")
	fs.IntVar(&o.DBCalls, "db-calls", 0, "RunnerConfig.DBCalls, the service's ENGINE_DB_CALLS (0: the engine default, 4; -1: no bound)")
	fs.DurationVar(&o.Linger, "completion-linger", 0, "RunnerConfig.CompletionLinger, the service's ENGINE_COMPLETION_LINGER (0: the engine default, 50ms; negative: none)")
	fs.IntVar(&o.WriteQueue, "write-queue", 0, "DispatcherConfig.WriteQueue, results written at once after their tasks gave back their slots (0: the engine default, max(workers, 1000) + 1000; negative: the workers alone, as before the thirty-third round)")
	var conns int
	fs.IntVar(&conns, "conns", 20, "pgx pool size (the service default DATABASE_MAX_CONNS; River gets the same)")
	fs.StringVar(&o.SyncCommit, "synchronous-commit", "", "set synchronous_commit on the bench databases (default: the server's, on)")
	fs.StringVar(&o.Out, "out", "results", "directory for the JSON results")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write an allocation profile of the whole run to this file (read it with -sample_index=alloc_space)")
	fs.BoolVar(&o.SkipBaseline, "skip-baseline", false, "skip the River baselines (profiling)")
	fs.BoolVar(&o.SkipFloor, "skip-floor", false, "skip the floor runs of throughput-noop and throughput-pipeline (profiling)")
	var merge string
	fs.StringVar(&merge, "scale-merge", "1000,10000,50000", "scaling: N:1 merge scopes (tasks per batch)")
	fs.IntVar(&o.ScaleBatch, "scale-batch", 10000, "scaling: rows of each user's batch, and of the new owner's batch")
	fs.IntVar(&o.ScaleUsers, "scale-users", 20, "scaling: concurrent users with a batch each")
	fs.IntVar(&o.ScaleWork, "scale-work", 1000, "scaling: completions measured per case (the rest of each scope is completed before the window)")
	fs.IntVar(&o.ScaleHistory, "scale-history", 5000, "scaling: finished batches behind the owner of the history case (0: skip the case)")
	fs.IntVar(&o.ScaleHistoryRoots, "scale-history-roots", 300, "scaling: roots (13 pipeline tasks each) each owner runs in the history case's windows")
	fs.IntVar(&o.ScaleRuns, "scale-runs", 1, "scaling: runs (it measures several sizes per run, so -runs does not apply)")
	fs.IntVar(&o.FuncStats, "function-stats", 0, "profiling: track_functions = all on orchable's run databases; print each run's top N SQL functions by self time before dropping it")
	callCPU := fs.Bool("call-cpu", false, "profiling: read the server backend's CPU time around each of the engine's calls and print each orchable database's calls by function and size when it is dropped")
	fs.BoolVar(&o.Proposed, "proposed", false, "apply the proposed SQL changes (proposed/*.sql) to the bench databases")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run . [flags] <scenario>|all\nscenarios:")
		for _, s := range scenarios() {
			fmt.Fprintf(fs.Output(), " %s", s.name)
		}
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *callCPU {
		callTracer = newCallCPU()
	}
	o.Conns = int32(conns) //nolint:gosec // small flag value
	for _, w := range strings.Split(workers, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(w), &n); err != nil || n < 1 {
			return fmt.Errorf("-workers: bad count %q", w)
		}
		o.Workers = append(o.Workers, n)
	}
	for _, m := range strings.Split(merge, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(m), &n); err != nil || n < 1 {
			return fmt.Errorf("-scale-merge: bad size %q", m)
		}
		o.ScaleMerge = append(o.ScaleMerge, n)
	}
	if o.ScaleBatch < 100 || o.ScaleUsers < 1 || o.ScaleWork < 1 || o.ScaleRuns < 1 || o.ScaleHistory < 0 || o.ScaleHistoryRoots < 1 {
		return errors.New("-scale-batch must be ≥ 100, -scale-users, -scale-work, -scale-runs, -scale-history-roots ≥ 1 and -scale-history ≥ 0")
	}
	if o.Quick {
		o.Tasks = min(o.Tasks, 2000)
		o.ScaleMerge = []int{100, 400}
		o.ScaleBatch, o.ScaleUsers, o.ScaleWork = min(o.ScaleBatch, 400), min(o.ScaleUsers, 3), min(o.ScaleWork, 60)
		o.ScaleHistory, o.ScaleHistoryRoots = min(o.ScaleHistory, 100), min(o.ScaleHistoryRoots, 10)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("name one scenario or all")
	}
	var todo []scenario
	for _, s := range scenarios() {
		if fs.Arg(0) == "all" || fs.Arg(0) == s.name {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		fs.Usage()
		return fmt.Errorf("unknown scenario %q", fs.Arg(0))
	}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("error creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("error starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.MemProfile != "" {
		defer func() {
			if err := writeMemProfile(o.MemProfile); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	o.gc = gc

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := newEnv(ctx, &o, log)
	if err != nil {
		return err
	}
	defer e.close()

	var results []Result
	for _, s := range todo {
		r, err := e.measure(ctx, s)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		results = append(results, r)
		printTable(stdout, []Result{r})
		if err := writeJSON(o.Out, r); err != nil {
			return err
		}
	}
	if len(results) > 1 {
		fmt.Fprintln(stdout, "\n== summary")
		printTable(stdout, results)
	}
	return nil
}

func (e *env) measure(ctx context.Context, s scenario) (Result, error) {
	start := time.Now()
	runs := e.o.Runs
	if s.runs != nil {
		runs = s.runs(e.o)
	}
	r := Result{Scenario: s.name, Started: start, Runs: runs, Conditions: e.conditions(runs)}
	for i := range runs {
		e.log.Info("bench: run", slog.String("scenario", s.name), slog.Int("run", i+1))
		figs, err := s.run(ctx, e)
		if err != nil {
			return r, err
		}
		for j := range figs {
			figs[j].computeRatio()
		}
		r.PerRun = append(r.PerRun, figs)
	}
	r.Figures = medians(r.PerRun)
	r.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return r, nil
}

// medians takes, per figure name, the median of values, baselines and ratios.
func medians(runs [][]Figure) []Figure {
	if len(runs) == 0 {
		return nil
	}
	out := make([]Figure, 0, len(runs[0]))
	for i, f := range runs[0] {
		var vs, bs, rs []float64
		for _, run := range runs {
			if i < len(run) {
				vs, bs, rs = append(vs, run[i].Value), append(bs, run[i].Baseline), append(rs, run[i].Ratio)
			}
		}
		m := f
		m.Value, m.Baseline, m.Ratio = median(vs), median(bs), median(rs)
		m.Met = nil
		if f.Met != nil {
			met := true
			for _, run := range runs {
				if i < len(run) && run[i].Met != nil && !*run[i].Met {
					met = false
				}
			}
			// The target is judged on the median run.
			met = judgeMedian(runs, i, met)
			m.Met = &met
		}
		out = append(out, m)
	}
	return out
}

// judgeMedian reports whether the run holding the median value met its target.
func judgeMedian(runs [][]Figure, i int, fallback bool) bool {
	type kv struct {
		v   float64
		met *bool
	}
	var all []kv
	for _, run := range runs {
		if i < len(run) {
			all = append(all, kv{run[i].Value, run[i].Met})
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].v < all[b].v })
	if m := all[len(all)/2]; m.met != nil {
		return *m.met
	}
	return fallback
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func printTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfigure\tvalue\tunit\tbaseline\tbaseline is\tratio\ttarget\tmet\t")
	for _, r := range results {
		for _, f := range r.Figures {
			met := ""
			if f.Met != nil {
				met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
			}
			base, ratio := "", ""
			if f.Baseline != 0 {
				base, ratio = num(f.Baseline), fmt.Sprintf("%.2f", f.Ratio)
			}
			target := f.Target
			if target == "" {
				target = f.Note
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, f.Name, num(f.Value), f.Unit, base, f.BaselineName, ratio, target, met)
		}
	}
	_ = tw.Flush()
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func writeJSON(dir string, r Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("error creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("error encoding the result of %s: %w", r.Scenario, err)
	}
	name := filepath.Join(dir, r.Scenario+"-"+r.Started.UTC().Format("20060102T150405Z")+".json")
	if err := os.WriteFile(name, b, 0o644); err != nil { //nolint:gosec // results are not secret
		return fmt.Errorf("error writing %s: %w", name, err)
	}
	latest := filepath.Join(dir, r.Scenario+"-latest.json")
	if err := os.WriteFile(latest, b, 0o644); err != nil { //nolint:gosec // results are not secret
		return fmt.Errorf("error writing %s: %w", latest, err)
	}
	return nil
}

func (e *env) conditions(runs int) string {
	limit := "none"
	if e.o.gc.MemoryLimit > 0 {
		limit = fmt.Sprintf("%.0f MiB", float64(e.o.gc.MemoryLimit)/(1<<20))
	} else if e.o.gc.MemoryLimitFrom != "" {
		limit = e.o.gc.MemoryLimitFrom
	}
	return fmt.Sprintf("%s/%s, %d CPUs, GOMAXPROCS %d, GOGC %d (%s), memory limit %s, a page fault %s, PostgreSQL %s, synchronous_commit=%s, pool %d conns, runs %d, quick=%v, proposed SQL=%v",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), e.o.gc.GCPercent, e.o.gc.GCPercentFrom, limit, e.faultCost,
		e.pgVersion, e.syncCommit(), e.o.Conns, runs, e.o.Quick, e.o.Proposed)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func boolPtr(b bool) *bool { return &b }

// percentile returns the p-quantile (0..1) of d (nearest rank).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeMemProfile writes the allocations of the whole run (the heap profile
// holds every sample since the start; alloc_space reads them all).
func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("error creating the allocation profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("error writing the allocation profile: %w", err)
	}
	return nil
}
