package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/supabase/dbtest"
)

// Transports.
const (
	direct    = "direct"
	postgrest = "postgrest"
)

// geminiKey is the API key the fake Gemini server accepts.
const geminiKey = "AIzaE2E-operator-key"

// ---------------------------------------------------------------------------
// Processes

// proc is one child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts bin with args and env (nothing inherited but PATH and
// HOME), logging to a file in the test's temp dir. It is killed on cleanup.
func startProc(t *testing.T, logDir, name, binary string, args, env []string) *proc {
	t.Helper()
	f, err := os.CreateTemp(logDir, name+"-*.log")
	require.NoError(t, err)
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start(), "starting %s", name)
	p := &proc{name: name, cmd: cmd, log: f.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (if still running) and waits for the exit.
func (p *proc) kill() {
	if p.running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// exitWithin waits up to d for the process to exit and returns its exit code.
func (p *proc) exitWithin(d time.Duration) (int, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-timer.C:
		return 0, false
	}
}

// ---------------------------------------------------------------------------
// Helpers

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitFor polls cond every tick until it returns true or timeout passes; the
// test fails with cond's last message.
func waitFor(t *testing.T, timeout, tick time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			require.FailNowf(t, "timed out", "waiting %s for %s: %s", timeout, what, msg)
		}
		<-ticker.C
	}
}

// httpClient is shared by the helpers (loopback only).
var httpClient = &http.Client{Timeout: 30 * time.Second} //nolint:gochecknoglobals // stateless

// ---------------------------------------------------------------------------
// Stack

// stackOpts configures one stack.
type stackOpts struct {
	// Transport is direct (default) or postgrest.
	Transport string
	// NoDatabaseURL leaves DATABASE_URL out of the service's environment
	// (postgrest transport only): no LISTEN/NOTIFY, the sweeper alone.
	NoDatabaseURL bool
	// InProcGemini runs the fake Gemini in the test process (for Calls,
	// Stats and scripted replies) instead of the fakegemini binary.
	InProcGemini bool
	// GeminiLatency is the fakegemini binary's -latency.
	GeminiLatency time.Duration
	// DatabaseURL uses this server (a private cluster) instead of the
	// shared one; the test database is created on it.
	AdminURL string
	// Env overrides the service's environment.
	Env map[string]string
	// NoService does not start orchable serve.
	NoService bool
	// Original gives the database the original orchable schema
	// (migrations/testdata/original_schema.sql, after the local shim)
	// before orchable migrate, which upgrades it in place; migrate runs
	// twice.
	Original bool
	// NewKeys gives the project new-format API keys (sb_publishable_…,
	// sb_secret_…, not JWTs) instead of legacy JWT keys: the PostgREST test
	// server models the gateway (the apikey alone carries the key's role).
	NewKeys bool
	// GeminiKeys are more keys (key → Google project) the in-process fake
	// Gemini accepts, besides geminiKey.
	GeminiKeys map[string]string
}

// stack is one fresh database with the three processes around it.
type stack struct {
	t          *testing.T
	opts       stackOpts
	dir        string
	dbURL      string
	db         *pgxpool.Pool // as postgres (bypasses RLS): for assertions
	secret     string
	anonKey    string
	serviceKey string
	webhookKey string
	restURL    string // the PostgREST test server (SUPABASE_URL)
	gemini     *geminitest.Server
	geminiURL  string
	svcAddr    string
	svcEnv     []string
	svc        *proc
	procs      []*proc
	mu         sync.Mutex
}

func newStack(t *testing.T, opts stackOpts) *stack {
	t.Helper()
	if opts.Transport == "" {
		opts.Transport = direct
	}
	s := &stack{t: t, opts: opts, dir: t.TempDir(), secret: "e2e-secret-" + randHex(24), webhookKey: "whsec-" + randHex(16)}
	// Registered first, so it runs last: print the logs of a failed test.
	t.Cleanup(s.dumpLogs)
	ctx := context.Background()

	// Database.
	admin := opts.AdminURL
	if admin == "" {
		admin = dbtest.AdminURL()
	}
	name := "e2e_" + randHex(6)
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err, "connecting to PostgreSQL at %s", admin)
	_, err = conn.Exec(ctx, "create database "+name)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	u, err := replaceDB(admin, name)
	require.NoError(t, err)
	s.dbURL = u
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(cctx, admin); err == nil {
			_, _ = c.Exec(cctx, "drop database if exists "+name+" with (force)")
			_ = c.Close(cctx)
		}
	})
	if opts.Original {
		createOriginalSchema(t, s.dbURL)
		out, err := runCmd(bin.orchable, []string{"migrate", "--local"}, []string{"DATABASE_URL=" + s.dbURL})
		require.NoError(t, err, "orchable migrate --local (upgrade):\n%s", out)
	}
	out, err := runCmd(bin.orchable, []string{"migrate", "--local"}, []string{"DATABASE_URL=" + s.dbURL})
	require.NoError(t, err, "orchable migrate --local:\n%s", out)
	s.db, err = pgxpool.New(ctx, s.dbURL)
	require.NoError(t, err)
	t.Cleanup(s.db.Close)

	// PostgREST test server.
	restAddr := freeAddr(t)
	s.restURL = "http://" + restAddr
	restArgs := []string{"-listen", restAddr, "-db", s.dbURL, "-jwt-secret", s.secret}
	if opts.NewKeys {
		s.anonKey, s.serviceKey = "sb_publishable_"+randHex(16), "sb_secret_"+randHex(16)
		restArgs = append(restArgs, "-publishable-key", s.anonKey, "-secret-key", s.serviceKey)
	} else {
		s.anonKey = s.sign(jwt.MapClaims{"role": "anon", "iss": "supabase", "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
		s.serviceKey = s.sign(jwt.MapClaims{"role": "service_role", "iss": "supabase", "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
		restArgs = append(restArgs, "-anon-key", s.anonKey+","+s.serviceKey)
	}
	s.procs = append(s.procs, startProc(t, s.dir, "postgresttest", bin.postgrest, restArgs, nil))
	waitFor(t, 20*time.Second, 20*time.Millisecond, "the PostgREST test server", func() (bool, string) {
		code, body := s.rest(s.serviceKey, http.MethodGet, "/rest/v1/task_batches?select=id&limit=1", nil)
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})

	// Fake Gemini.
	if opts.InProcGemini {
		keys := map[string]string{geminiKey: "proj-e2e"}
		maps.Copy(keys, opts.GeminiKeys)
		s.gemini = geminitest.New(geminitest.Config{Keys: keys})
		t.Cleanup(s.gemini.Close)
		s.geminiURL = s.gemini.URL
	} else {
		gaddr := freeAddr(t)
		args := []string{"-addr", gaddr, "-keys", geminiKey + "=proj-e2e"}
		if opts.GeminiLatency > 0 {
			args = append(args, "-latency", opts.GeminiLatency.String())
		}
		s.procs = append(s.procs, startProc(t, s.dir, "fakegemini", bin.fakegemini, args, nil))
		s.geminiURL = "http://" + gaddr
		waitFor(t, 20*time.Second, 20*time.Millisecond, "the fake Gemini server", func() (bool, string) {
			c, err := net.DialTimeout("tcp", gaddr, time.Second)
			if err != nil {
				return false, err.Error()
			}
			_ = c.Close()
			return true, ""
		})
	}

	// Service.
	s.svcAddr = freeAddr(t)
	env := map[string]string{
		"ORCHABLE_ADDR":           s.svcAddr,
		"ORCHABLE_TRANSPORT":      opts.Transport,
		"SUPABASE_URL":            s.restURL,
		"SUPABASE_ANON_KEY":       s.anonKey,
		"SUPABASE_JWT_SECRET":     s.secret,
		"JWKS_DISABLED":           "true",
		"SUPABASE_SECRET_KEY":     s.serviceKey,
		"WEBHOOK_SECRET":          s.webhookKey,
		"ORCHABLE_MODEL_PROVIDER": "gemini",
		"GEMINI_BASE_URL":         s.geminiURL,
		"GEMINI_API_KEY":          geminiKey,
		"GEMINI_API_KEY_PROJECT":  "proj-e2e",
		"SWEEP_INTERVAL":          "1s",
		"FOLD_INTERVAL":           "100ms",
		"RETRY_BACKOFF_BASE":      "100ms",
		"RETRY_BACKOFF_MAX":       "2s",
		"LOG_LEVEL":               "info",
		"WORKER_ID":               "e2e-" + randHex(3),
		// The service opens and warms every connection of its pool at
		// start; the packages' tests share one server of 100 connections.
		"DATABASE_MAX_CONNS": "10",
		// Hook targets in these tests are httptest servers on loopback.
		"HOOK_ALLOW_LOOPBACK_FOR_TESTS": "true",
	}
	if !opts.NoDatabaseURL {
		env["DATABASE_URL"] = s.dbURL
	}
	if opts.NewKeys {
		// The names a project with new keys uses.
		env["SUPABASE_ANON_KEY"], env["SUPABASE_PUBLISHABLE_KEY"] = "", s.anonKey
	}
	maps.Copy(env, opts.Env)
	for k, v := range env {
		if v != "" {
			s.svcEnv = append(s.svcEnv, k+"="+v)
		}
	}
	if !opts.NoService {
		s.startService()
	}
	return s
}

func replaceDB(raw, name string) (string, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return "", err
	}
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, net.JoinHostPort(host, strconv.FormatUint(uint64(cfg.Port), 10)), name), nil
}

func runCmd(binary string, args, env []string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startService starts orchable serve and waits for /readyz.
func (s *stack) startService() *proc { //nolint:unparam // the process, as from the other start functions
	s.t.Helper()
	p := startProc(s.t, s.dir, "orchable", bin.orchable, []string{"serve"}, s.svcEnv)
	s.mu.Lock()
	s.svc = p
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	waitFor(s.t, 30*time.Second, 25*time.Millisecond, "orchable /readyz", func() (bool, string) {
		if !p.running() {
			require.FailNowf(s.t, "orchable exited", "orchable serve exited before it was ready: %v", p.err)
		}
		resp, err := httpClient.Get(s.svcURL() + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, b)
	})
	return p
}

func (s *stack) svcURL() string { return "http://" + s.svcAddr }

// dumpLogs prints the tail of every process log when the test failed.
func (s *stack) dumpLogs() {
	if !s.t.Failed() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		b, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 150 {
			lines = append([]string{fmt.Sprintf("… %d lines skipped …", len(lines)-150)}, lines[len(lines)-150:]...)
		}
		s.t.Logf("==== %s log (%s) ====\n%s", p.name, filepath.Base(p.log), strings.Join(lines, "\n"))
	}
}

// sign signs claims with the shared HS256 secret.
func (s *stack) sign(claims jwt.MapClaims) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(s.secret))
	require.NoError(s.t, err)
	return tok
}

// userJWT mints a Supabase access token of the user.
func (s *stack) userJWT(user uuid.UUID) string {
	now := time.Now()
	return s.sign(jwt.MapClaims{
		"sub": user.String(), "role": "authenticated", "aud": "authenticated",
		"iss": s.restURL + "/auth/v1", "iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
		"email": user.String() + "@example.test", "session_id": uuid.NewString(),
	})
}

// createUser inserts an auth.users row.
func (s *stack) createUser() uuid.UUID {
	return dbtest.CreateUser(context.Background(), s.t, s.db)
}

// rest calls the PostgREST test server with a token.
func (s *stack) rest(token, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.restURL+path, rd)
	require.NoError(s.t, err)
	if strings.HasPrefix(token, "sb_") {
		// A new-format key is not a JWT: it goes in apikey alone.
		req.Header.Set("apikey", token)
	} else {
		req.Header.Set("apikey", s.anonKey)
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var importRE = regexp.MustCompile(`config ([0-9a-f-]{36}), (\d+) templates, root template (\S+)`)

// importBundle runs `orchable import --owner` with the service's
// configuration and returns the config id and the root template id.
func (s *stack) importBundle(owner uuid.UUID, dir string) (configID, rootTemplate string) {
	s.t.Helper()
	out, err := runCmd(bin.orchable, []string{"import", "--owner", owner.String(), dir}, s.svcEnv)
	require.NoError(s.t, err, "orchable import %s:\n%s", dir, out)
	m := importRE.FindStringSubmatch(out)
	require.NotNil(s.t, m, "unexpected import output: %s", out)
	return m[1], m[3]
}

// launch is launch_batch's result.
type launch struct {
	BatchID  uuid.UUID   `json:"batch_id"`
	LaunchID uuid.UUID   `json:"launch_id"`
	TaskIDs  []uuid.UUID `json:"task_ids"`
}

// launchBatch calls launch_batch as the user through the PostgREST server.
func (s *stack) launchBatch(user uuid.UUID, templateID, name string, rows []map[string]any) launch {
	s.t.Helper()
	code, body := s.rest(s.userJWT(user), http.MethodPost, "/rest/v1/rpc/launch_batch",
		map[string]any{"p_template_id": templateID, "p_rows": rows, "p_name": name})
	require.Equal(s.t, http.StatusOK, code, "launch_batch: %s", body)
	var l launch
	require.NoError(s.t, json.Unmarshal(body, &l))
	require.Len(s.t, l.TaskIDs, len(rows))
	return l
}

// row reads a task row as JSON, as pg_net's record carries it.
func (s *stack) row(id uuid.UUID) json.RawMessage {
	s.t.Helper()
	var b []byte
	require.NoError(s.t, s.db.QueryRow(context.Background(), "select to_jsonb(t) from public.ai_tasks t where id = $1", id).Scan(&b))
	return b
}

// webhookBody is the Supabase Database Webhook payload.
func webhookBody(typ string, record, old json.RawMessage) []byte {
	if old == nil {
		old = json.RawMessage("null")
	}
	b, _ := json.Marshal(map[string]any{"type": typ, "table": "ai_tasks", "schema": "public", "record": record, "old_record": old})
	return b
}

// webhook posts a payload exactly as pg_net does and returns the status.
func (s *stack) webhook(body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, s.svcURL()+"/webhooks/supabase", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "pg_net/0.14.0")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Supabase-Webhook-Source", s.webhookKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// insertWebhooks sends an INSERT webhook for each task (the row read back).
func (s *stack) insertWebhooks(ids []uuid.UUID) {
	s.t.Helper()
	for _, id := range ids {
		code, err := s.webhook(webhookBody("INSERT", s.row(id), nil))
		require.NoError(s.t, err)
		require.Equal(s.t, http.StatusAccepted, code)
	}
}

// ---------------------------------------------------------------------------
// Reading the results

// task is an ai_tasks row as the assertions read it.
type task struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	BatchID       *uuid.UUID
	ParentID      *uuid.UUID
	RootID        *uuid.UUID
	Path          []string
	StageKey      string
	TemplateID    string
	Step          int
	Status        string
	Input         json.RawMessage
	Output        json.RawMessage
	Edited        json.RawMessage
	Tokens        *int64
	ErrorMessage  *string
	Idempotency   *string
	LockedBy      *string
	LockedUntil   *time.Time
	RetryCount    int
	CreatedAt     time.Time
	CompletedAtOK bool
}

const taskCols = `id, user_id, batch_id, parent_task_id, root_task_id, coalesce(hierarchy_path, '[]'::jsonb), coalesce(stage_key, ''),
 coalesce(prompt_template_id, ''), coalesce(step_number, 0), status::text, coalesce(input_data, 'null'::jsonb), coalesce(output_data, 'null'::jsonb),
 coalesce(edited_output_data, 'null'::jsonb), total_token_count, error_message, idempotency_key, locked_by, locked_until, coalesce(retry_count, 0), created_at, completed_at is not null`

func (s *stack) tasks(where string, args ...any) []task {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), "select "+taskCols+" from public.ai_tasks where "+where+" order by step_number, created_at, id", args...)
	require.NoError(s.t, err)
	defer rows.Close()
	var out []task
	for rows.Next() {
		var tk task
		var path []byte
		var tokens *int64
		require.NoError(s.t, rows.Scan(&tk.ID, &tk.UserID, &tk.BatchID, &tk.ParentID, &tk.RootID, &path, &tk.StageKey, &tk.TemplateID, &tk.Step,
			&tk.Status, &tk.Input, &tk.Output, &tk.Edited, &tokens, &tk.ErrorMessage, &tk.Idempotency, &tk.LockedBy, &tk.LockedUntil,
			&tk.RetryCount, &tk.CreatedAt, &tk.CompletedAtOK))
		tk.Tokens = tokens
		var anyPath []any
		require.NoError(s.t, json.Unmarshal(path, &anyPath))
		for _, p := range anyPath {
			tk.Path = append(tk.Path, fmt.Sprint(p))
		}
		out = append(out, tk)
	}
	require.NoError(s.t, rows.Err())
	return out
}

// batchSettled reports whether every task of the batches is terminal and the
// folded counters equal a recount.
func (s *stack) batchSettled(batchIDs ...uuid.UUID) (bool, string) {
	ctx := context.Background()
	var open int
	if err := s.db.QueryRow(ctx, `select count(*) from public.ai_tasks where batch_id = any($1)
		and status::text not in ('completed','approved','skipped','failed','cancelled')`, batchIDs).Scan(&open); err != nil {
		return false, err.Error()
	}
	if open > 0 {
		return false, fmt.Sprintf("%d tasks not terminal", open)
	}
	mismatch, msg := s.counterMismatch(batchIDs...)
	return !mismatch, msg
}

// counterMismatch compares task_batches counters and status with a recount.
func (s *stack) counterMismatch(batchIDs ...uuid.UUID) (bool, string) {
	rows, err := s.db.Query(context.Background(), `
select b.id, b.status::text, b.total_tasks, b.pending_tasks, b.processing_tasks, b.completed_tasks, b.failed_tasks,
       count(t.id),
       count(t.id) filter (where public.task_status_bucket(t.status) = 'pending'),
       count(t.id) filter (where public.task_status_bucket(t.status) = 'processing'),
       count(t.id) filter (where public.task_status_bucket(t.status) = 'completed'),
       count(t.id) filter (where public.task_status_bucket(t.status) = 'failed')
from public.task_batches b left join public.ai_tasks t on t.batch_id = b.id
where b.id = any($1) group by b.id`, batchIDs)
	if err != nil {
		return true, err.Error()
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var id uuid.UUID
		var status string
		var c, r [5]int
		if err := rows.Scan(&id, &status, &c[0], &c[1], &c[2], &c[3], &c[4], &r[0], &r[1], &r[2], &r[3], &r[4]); err != nil {
			return true, err.Error()
		}
		want := "completed"
		if r[4] > 0 {
			want = "failed"
		}
		if c != r || (r[1] == 0 && r[2] == 0 && status != want) {
			return true, fmt.Sprintf("batch %s: status %s counters total/pending/processing/completed/failed %v, recount %v", id, status, c, r)
		}
	}
	if n != len(batchIDs) {
		return true, fmt.Sprintf("found %d of %d batches", n, len(batchIDs))
	}
	return false, ""
}

// waitSettled waits until the batches settle (all terminal, counters folded).
func (s *stack) waitSettled(timeout time.Duration, batchIDs ...uuid.UUID) {
	s.t.Helper()
	waitFor(s.t, timeout, 50*time.Millisecond, "the batches to settle", func() (bool, string) {
		if s.svc != nil && !s.svc.running() {
			require.FailNowf(s.t, "orchable exited", "orchable serve exited: %v", s.svc.err)
		}
		return s.batchSettled(batchIDs...)
	})
}

// statusCounts counts the tasks of the batches by status.
func (s *stack) statusCounts(batchIDs ...uuid.UUID) map[string]int {
	rows, err := s.db.Query(context.Background(), "select status::text, count(*) from public.ai_tasks where batch_id = any($1) group by 1", batchIDs)
	require.NoError(s.t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		require.NoError(s.t, rows.Scan(&st, &n))
		out[st] = n
	}
	return out
}

// serviceLogContains reports whether any orchable log line contains sub.
func (s *stack) serviceLogContains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.name != "orchable" {
			continue
		}
		f, err := os.Open(p.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), sub) {
				_ = f.Close()
				return true
			}
		}
		_ = f.Close()
	}
	return false
}
