package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const memoryChildArg = "memory-child"

// memoryReport is what the child process prints.
type memoryReport struct {
	IdleRSSKB  int64  `json:"idle_rss_kb"`
	PeakRSSKB  int64  `json:"peak_rss_kb"` // VmHWM
	InFlight   int    `json:"in_flight"`
	HeapInuse  uint64 `json:"heap_inuse"`
	Goroutines int    `json:"goroutines"`
}

// memory: peak RSS of a fresh process running the engine with 1,000 model
// calls in flight (a stub sleeping 5 s), read from /proc/self/status
// (VmHWM). The engine runs in a child process (this binary, re-executed) so
// the other scenarios' memory does not count.
func memory(ctx context.Context, e *env) ([]Figure, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("error finding the bench binary: %w", err)
	}
	calls := 1000
	cmd := exec.CommandContext(ctx, exe, memoryChildArg, "-db", e.o.AdminURL, "-template", e.orchTmpl,
		"-calls", strconv.Itoa(calls), "-conns", strconv.Itoa(int(e.o.Conns)))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("memory child: %w", err)
	}
	var r memoryReport
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("memory child printed %q: %w", out, err)
	}
	peak := float64(r.PeakRSSKB) / 1024
	return []Figure{
		{Name: fmt.Sprintf("peak RSS (VmHWM), %d model calls in flight", r.InFlight), Unit: "MB", Value: peak, Baseline: 150, BaselineName: "target",
			Target: "< 150 MB", Met: boolPtr(peak < 150 && r.InFlight >= calls)},
		{Name: "RSS before the load (same process)", Unit: "MB", Value: float64(r.IdleRSSKB) / 1024},
		{Name: "Go heap in use at peak", Unit: "MB", Value: float64(r.HeapInuse) / (1 << 20)},
		{Name: "goroutines at peak", Unit: "", Value: float64(r.Goroutines)},
	}, nil
}

// memoryChild is the child process of the memory scenario.
func memoryChild(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet(memoryChildArg, flag.ContinueOnError)
	var (
		o     options
		conns int
		calls int
	)
	fs.StringVar(&o.AdminURL, "db", "", "admin URL")
	tmpl := fs.String("template", "", "migrated template database")
	fs.IntVar(&calls, "calls", 1000, "model calls in flight")
	fs.IntVar(&conns, "conns", 20, "pool size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Conns = int32(conns) //nolint:gosec // small flag value
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	admin, err := pgx.Connect(ctx, o.AdminURL)
	if err != nil {
		return fmt.Errorf("error connecting: %w", err)
	}
	e := &env{o: &o, log: log, admin: admin, orchTmpl: *tmpl}
	defer func() { _ = admin.Close(context.WithoutCancel(ctx)) }()
	db, err := e.freshDB(ctx, false, o.Conns)
	if err != nil {
		return err
	}
	defer db.close()
	user, err := createUser(ctx, db.Pool)
	if err != nil {
		return err
	}
	if err := createTemplates(ctx, db.Pool, user, stageDef{ID: "noop", Key: "noop", Prompt: "Answer with ok."}); err != nil {
		return err
	}
	if _, err := copyTasks(ctx, db.Pool, []uuid.UUID{user}, "noop", "noop", "plan", calls); err != nil {
		return err
	}
	if err := analyze(ctx, db.Pool, "public.ai_tasks"); err != nil {
		return err
	}
	var r memoryReport
	r.IdleRSSKB = procStatus("VmRSS")
	gen := newStampModel(5*time.Second, 0)
	eng := newEngine(db.Pool, gen, engineConfig{Workers: calls, Listen: true}, log)
	eng.start(ctx)
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		gen.mu.Lock()
		n := gen.inFlight
		gen.mu.Unlock()
		if n >= calls {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // every call is in its sleep
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gen.mu.Lock()
	r.InFlight = gen.maxInFlight
	gen.mu.Unlock()
	r.HeapInuse, r.Goroutines = ms.HeapInuse, runtime.NumGoroutine()
	if err := eng.waitFinished(ctx, int64(calls), 30*time.Second); err != nil {
		eng.stop(ctx)
		return fmt.Errorf("memory: %w", err)
	}
	eng.stop(ctx)
	r.PeakRSSKB = procStatus("VmHWM")
	return json.NewEncoder(w).Encode(r)
}

// procStatus reads a kB field of /proc/self/status (0 when unavailable).
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
