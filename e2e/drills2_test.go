package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// privatePG is a PostgreSQL cluster of the test's own, so the drill can
// restart it without disturbing the other tests on the shared server.
type privatePG struct {
	t    *testing.T
	dir  string
	port string
	asPG bool // run the server commands as the postgres OS user
}

func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	_, err := os.Stat(filepath.Join(pgBin, "initdb"))
	require.NoError(t, err, "the PostgreSQL drill needs %s/initdb (package postgresql-15)", pgBin)
	dir, err := os.MkdirTemp("", "orchable-e2e-pg-") //nolint:usetesting // t.TempDir's parent is 0700; the postgres user must reach this one
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pg := &privatePG{t: t, dir: dir, asPG: os.Geteuid() == 0}
	if pg.asPG {
		u, err := user.Lookup("postgres")
		require.NoError(t, err, "running as root: the drill runs PostgreSQL as the postgres OS user")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	addr := freeAddr(t)
	pg.port = addr[strings.LastIndex(addr, ":")+1:]
	pg.run("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	pg.ctl("start")
	t.Cleanup(func() { _, _ = pg.cmd("pg_ctl", "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop") })
	return pg
}

func (pg *privatePG) cmd(name string, args ...string) (string, error) {
	var c *exec.Cmd
	if pg.asPG {
		c = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pgBin, name)}, args...)...)
	} else {
		c = exec.Command(filepath.Join(pgBin, name), args...)
	}
	c.Dir = pg.dir
	out, err := c.CombinedOutput()
	return string(out), err
}

func (pg *privatePG) run(name string, args ...string) {
	pg.t.Helper()
	out, err := pg.cmd(name, args...)
	require.NoError(pg.t, err, "%s %v:\n%s", name, args, out)
}

func (pg *privatePG) ctl(action string) {
	pg.t.Helper()
	pg.run("pg_ctl", "-D", filepath.Join(pg.dir, "data"), "-l", filepath.Join(pg.dir, "server.log"), "-m", "fast", "-w", "-t", "30",
		"-o", fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c max_connections=200", pg.port, pg.dir), action)
}

func (pg *privatePG) adminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", pg.port)
}

// TestDrillPostgresRestart restarts PostgreSQL (a private cluster) in the
// middle of a run: the service recovers (first task completed after the
// restart) within 10 s and nothing is lost or duplicated.
func TestDrillPostgresRestart(t *testing.T) {
	t.Parallel()
	rows := 100
	if fullScale() {
		rows = 3334 // ORC-09: 3 tasks per row ≈ 10,000
	}
	pg := startPrivatePG(t)
	s := newStack(t, stackOpts{AdminURL: pg.adminURL(), Env: map[string]string{
		"ORCHABLE_MODEL_PROVIDER": "offline", "ORCHABLE_OFFLINE_LATENCY": "100ms", "WORKER_CONCURRENCY": "10",
		"LEASE_DURATION": "10s", "MODEL_TIMEOUT": "30s", "SWEEP_INTERVAL": "200ms", "LOG_LEVEL": "warn",
	}})
	u := s.createUser()
	_, root := s.importBundle(u, fixtureDir("orc-09-code-review"))
	l := s.launchBatch(u, root, "pg restart", fixtureRows("pg", rows))
	waitFor(t, 60*time.Second, 20*time.Millisecond, "some progress before the restart", func() (bool, string) {
		c := s.statusCounts(l.BatchID)
		return c["completed"] >= 30, fmt.Sprint(c)
	})
	before := s.statusCounts(l.BatchID)
	restartStart := time.Now()
	pg.ctl("restart")
	restartDone := time.Now()
	var recovered time.Time
	waitFor(t, 30*time.Second, 20*time.Millisecond, "a task completed after the restart", func() (bool, string) {
		var n int
		if err := s.db.QueryRow(context.Background(), "select count(*) from public.ai_tasks where batch_id = $1 and completed_at > $2 and status = 'completed'",
			l.BatchID, restartDone).Scan(&n); err != nil {
			return false, err.Error()
		}
		if n > 0 {
			recovered = time.Now()
		}
		return n > 0, ""
	})
	s.waitSettled(3*time.Minute, l.BatchID)
	rep := s.checkTree(l.BatchID)
	recovery := recovered.Sub(restartDone)
	t.Logf("pg-restart: tasks=%d by_status=%v completed_before_restart=%d restart_took=%s recovery_after_restart=%s lost=%d duplicated=%d",
		rep.Tasks, rep.ByStatus, before["completed"], restartDone.Sub(restartStart).Round(time.Millisecond), recovery.Round(time.Millisecond), rep.Missing, rep.Duplicated)
	s.requireTree(rep)
	require.Equal(t, 3*rows, rep.Tasks)
	require.Equal(t, map[string]int{"completed": 3 * rows}, rep.ByStatus)
	require.Less(t, recovery, 10*time.Second, "recovery after the PostgreSQL restart")
}

// TestDrillWebhookStorm sends duplicated, reordered and replayed webhooks
// (INSERT replays with stale rows, UPDATE echoes of our own writes) while a
// batch runs: the fake Gemini server sees one call per task (plus any
// recorded regeneration) and no child is duplicated.
func TestDrillWebhookStorm(t *testing.T) {
	t.Parallel()
	target, rows := 2000, 40
	if fullScale() {
		target, rows = 10000, 200
	}
	s := newStack(t, stackOpts{InProcGemini: true, Env: map[string]string{"SWEEP_INTERVAL": "1s", "LOG_LEVEL": "warn"}})
	u := s.createUser()
	_, root := s.importBundle(u, fixtureDir("orc-09-code-review"))
	l := s.launchBatch(u, root, "webhook storm", fixtureRows("storm", rows))
	seed := drillSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))        // drill randomness
	firstRows := map[uuid.UUID]json.RawMessage{} // the INSERT record, replayed later
	var sent, non202 atomic.Int64
	sendAll := func(bodies [][]byte) {
		rng.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
		ch := make(chan []byte)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for b := range ch {
					code, err := s.webhook(b)
					sent.Add(1)
					if err != nil || code != http.StatusAccepted {
						non202.Add(1)
					}
				}
			})
		}
		for _, b := range bodies {
			ch <- b
		}
		close(ch)
		wg.Wait()
	}
	start := time.Now()
	for sent.Load() < int64(target) || time.Since(start) < time.Second {
		var bodies [][]byte
		for _, tk := range s.tasks("batch_id = $1", l.BatchID) {
			cur := s.row(tk.ID)
			if _, ok := firstRows[tk.ID]; !ok {
				var m map[string]any
				require.NoError(t, json.Unmarshal(cur, &m))
				m["status"], m["output_data"], m["locked_by"], m["locked_until"] = "plan", nil, nil, nil
				first, _ := json.Marshal(m)
				firstRows[tk.ID] = first
			}
			ins := webhookBody("INSERT", firstRows[tk.ID], nil)
			bodies = append(bodies, ins, ins) // duplicated
			if tk.Status != "plan" {
				bodies = append(bodies, webhookBody("UPDATE", cur, firstRows[tk.ID])) // echo of our own write
			}
		}
		if rem := int64(target) - sent.Load(); rem < int64(len(bodies)) && rem > 0 {
			bodies = bodies[:rem]
		}
		sendAll(bodies)
		if ok, _ := s.batchSettled(l.BatchID); ok && sent.Load() >= int64(target) {
			break
		}
	}
	s.waitSettled(2*time.Minute, l.BatchID)
	// One more replay of every INSERT after the batch finished.
	var replay [][]byte
	for _, r := range firstRows {
		replay = append(replay, webhookBody("INSERT", r, nil))
	}
	sendAll(replay)
	s.waitSettled(30*time.Second, l.BatchID)
	rep := s.checkTree(l.BatchID)
	var regenerations int
	require.NoError(t, s.db.QueryRow(context.Background(), "select coalesce(sum((extra->>'regenerations')::int), 0) from public.ai_tasks where batch_id = $1",
		l.BatchID).Scan(&regenerations))
	calls := s.gemini.Stats().Requests
	t.Logf("webhook-storm: webhooks=%d non_202=%d tasks=%d model_calls=%d regenerations=%d duplicate_calls=%d lost=%d duplicated=%d",
		sent.Load(), non202.Load(), rep.Tasks, calls, regenerations, calls-rep.Tasks-regenerations, rep.Missing, rep.Duplicated)
	s.requireTree(rep)
	require.Zero(t, non202.Load())
	require.Equal(t, 3*rows, rep.Tasks)
	require.LessOrEqual(t, calls, rep.Tasks+regenerations, "model calls beyond one per task and regeneration")
}

var drillMarker = regexp.MustCompile(`\[\[drill:([a-z_]+)\]\] (row-\d+)`)

// TestDrillModelFaults scripts model faults on the fake Gemini server (429
// storms with RetryInfo, 503 bursts, timeouts, invalid JSON, safety and
// other blocks) and checks each task's final state and error_message.
func TestDrillModelFaults(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{InProcGemini: true, Env: map[string]string{
		"GEMINI_REQUEST_TIMEOUT": "2s", "SWEEP_INTERVAL": "200ms", "RETRY_BACKOFF_BASE": "50ms", "RETRY_BACKOFF_MAX": "500ms",
	}})
	var mu sync.Mutex
	calls := map[string]int{}
	s.gemini.SetHandler(func(c geminitest.Call) (geminitest.Reply, bool) {
		m := drillMarker.FindStringSubmatch(c.Prompt)
		if m == nil {
			return geminitest.Reply{}, false
		}
		mu.Lock()
		calls[m[2]]++
		n := calls[m[2]]
		mu.Unlock()
		switch m[1] {
		case "rate_limit":
			if n <= 3 {
				return geminitest.Reply{
					Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED",
					Message: "You exceeded your current quota, please check your plan and billing details.",
					Details: []map[string]any{
						{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []map[string]any{{
							"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
							"quotaId":     "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
						}}},
						{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
					},
				}, true
			}
		case "unavailable":
			if n <= 2 {
				return geminitest.Reply{Kind: geminitest.ReplyError, Status: 503, StatusText: "UNAVAILABLE", Message: "The model is overloaded. Please try again later."}, true
			}
		case "timeout":
			if n == 1 {
				return geminitest.Reply{Kind: geminitest.ReplySlow}, true
			}
		case "invalid_once":
			if n == 1 {
				return geminitest.Reply{Kind: geminitest.ReplyInvalidJSON}, true
			}
		case "invalid_json":
			return geminitest.Reply{Kind: geminitest.ReplyInvalidJSON}, true
		case "safety":
			return geminitest.Reply{Kind: geminitest.ReplySafety}, true
		case "recitation":
			return geminitest.Reply{Kind: geminitest.ReplyRecitation}, true
		case "prompt_blocked":
			return geminitest.Reply{Kind: geminitest.ReplyPromptBlocked}, true
		case "max_tokens":
			return geminitest.Reply{Kind: geminitest.ReplyMaxTokens}, true
		}
		return geminitest.Reply{}, false
	})
	type want struct {
		status   string
		errRE    string // matched case-insensitively against error_message (failed only)
		calls    int    // exact model calls, 0 = at least one
		minCalls int
	}
	cases := map[string]want{
		"ok":           {status: "completed", calls: 1},
		"rate_limit":   {status: "completed", calls: 4},
		"unavailable":  {status: "completed", calls: 3},
		"timeout":      {status: "completed", calls: 2},
		"invalid_once": {status: "completed", calls: 2},
		// 1 + MAX_REGENERATIONS per attempt; an attempt cut short by a transient
		// "no key free" (the 429 row blocks the shared project) starts a new
		// regeneration budget, so more calls are possible (see the report).
		"invalid_json":   {status: "failed", errRE: `json|schema|pars`, minCalls: 3},
		"safety":         {status: "failed", errRE: `safety`, calls: 1},
		"recitation":     {status: "failed", errRE: `recitation`, calls: 1},
		"prompt_blocked": {status: "failed", errRE: `block`, calls: 1},
		"max_tokens":     {status: "failed", errRE: `max_tokens`, calls: 1},
	}
	u := s.createUser()
	_, root := s.importBundle(u, localBundle("e2e-faults"))
	var rowsIn []map[string]any
	kindOf := map[string]string{}
	i := 0
	for kind := range cases {
		tag := fmt.Sprintf("row-%d", i)
		kindOf[tag] = kind
		rowsIn = append(rowsIn, map[string]any{"input_data": fmt.Sprintf("[[drill:%s]] %s", kind, tag)})
		i++
	}
	start := time.Now()
	l := s.launchBatch(u, root, "model faults", rowsIn)
	s.insertWebhooks(l.TaskIDs)
	s.waitSettled(90*time.Second, l.BatchID)
	var figures []string
	for _, tk := range s.tasks("batch_id = $1", l.BatchID) {
		m := drillMarker.FindStringSubmatch(string(tk.Input))
		require.NotNil(t, m)
		kind := kindOf[m[2]]
		w := cases[kind]
		mu.Lock()
		n := calls[m[2]]
		mu.Unlock()
		msg := ""
		if tk.ErrorMessage != nil {
			msg = *tk.ErrorMessage
		}
		figures = append(figures, fmt.Sprintf("%s=%s/calls:%d/retries:%d", kind, tk.Status, n, tk.RetryCount))
		t.Logf("model-faults: %-14s status=%-9s calls=%d retry_count=%d error_message=%q", kind, tk.Status, n, tk.RetryCount, msg)
		require.Equal(t, w.status, tk.Status, "%s: error_message %q", kind, msg)
		if w.errRE != "" {
			require.Regexp(t, "(?i)"+w.errRE, msg, "%s: error_message", kind)
		}
		if w.calls > 0 {
			require.Equal(t, w.calls, n, "%s: model calls", kind)
		}
		require.GreaterOrEqual(t, n, max(1, w.minCalls), "%s: model calls", kind)
	}
	t.Logf("model-faults: %s total=%s", strings.Join(figures, " "), time.Since(start).Round(time.Millisecond))
}
