package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/supabase/dbtest"
)

// TestTransactionPooler runs a stack whose service reaches PostgreSQL only
// through PgBouncer in transaction mode (Debian's pgbouncer on loopback, as
// Supabase's transaction pooler on port 6543 behaves: consecutive
// transactions of one client connection run on different server
// connections, so named prepared statements and LISTEN do not work there).
// The URL carries pgbouncer=true, as the dashboard's transaction-pooler
// string does. migrate refuses it; serve detects it, says LISTEN is off and
// runs a pipeline to completion with the sweeper alone (nothing is
// announced by webhook), with twenty client connections sharing three
// server connections.
func TestTransactionPooler(t *testing.T) {
	t.Parallel()
	binary := pgbouncerPath(t)
	s := newStack(t, stackOpts{NoService: true, Env: map[string]string{"SWEEP_INTERVAL": "300ms"}})
	poolerURL, adminConsole := startPgBouncer(t, s, binary)

	// migrate refuses the transaction pooler and names the URLs to use.
	out, err := runCmd(bin.orchable, []string{"migrate"}, []string{"DATABASE_URL=" + poolerURL})
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, out)
	require.Equal(t, 1, exitErr.ExitCode(), out)
	for _, want := range []string{"orchable migrate needs a session", "transaction-mode pooler", "direct connection", "session pooler"} {
		require.Contains(t, out, want)
	}

	// serve (and import, with the same environment) through the pooler.
	s.svcEnv = append(s.svcEnv, "DATABASE_URL="+poolerURL, "DATABASE_MAX_CONNS=20")
	s.startService()
	require.True(t, s.serviceLogContains("LISTEN is off"), "serve warns that LISTEN is off")
	require.True(t, s.serviceLogContains(`"database_pooler":"transaction"`))

	user := s.createUser()
	_, root := s.importBundle(user, fixtureDir("orc-02-lesson-plan"))
	l := s.launchBatch(user, root, "pooler", fixtureRows("pooler", 3))
	s.waitSettled(2*time.Minute, l.BatchID)
	tasks := s.tasks("batch_id = $1", l.BatchID)
	require.Greater(t, len(tasks), 3, "the pipeline spawned successors")
	for _, tk := range tasks {
		require.Equal(t, "completed", tk.Status, "task %s (%s): %v", tk.ID, tk.StageKey, tk.ErrorMessage)
	}

	// The work really went through PgBouncer: its statistics (refreshed
	// every second) count the stack database's transactions.
	dbCfg, err := pgx.ParseConfig(s.dbURL)
	require.NoError(t, err)
	waitFor(t, 10*time.Second, 100*time.Millisecond, "PgBouncer's transaction count", func() (bool, string) {
		xacts, err := pgbouncerXacts(t.Context(), adminConsole, dbCfg.Database)
		if err != nil {
			return false, err.Error()
		}
		return xacts > int64(len(tasks)), fmt.Sprintf("%d transactions through PgBouncer for %d tasks", xacts, len(tasks))
	})
}

// pgbouncerXacts reads total_xact_count of database from PgBouncer's SHOW
// STATS.
func pgbouncerXacts(ctx context.Context, adminConsole, database string) (int64, error) {
	conn, err := pgx.Connect(ctx, adminConsole)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SHOW STATS")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var xacts int64
	for rows.Next() {
		// The simple protocol answers in text; PgBouncer types the counts
		// as numeric.
		raw := rows.RawValues()
		var db string
		var n int64
		for i, f := range rows.FieldDescriptions() {
			switch f.Name {
			case "database":
				db = string(raw[i])
			case "total_xact_count":
				n, _ = strconv.ParseInt(string(raw[i]), 10, 64)
			}
		}
		if db == database {
			xacts = n
		}
	}
	return xacts, rows.Err()
}

// pgbouncerPath finds PgBouncer, or skips (outside CI) or fails (in CI).
func pgbouncerPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"pgbouncer", "/usr/sbin/pgbouncer"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("PgBouncer is not installed (apt-get install -y pgbouncer); .ci/run installs it and CI runs this test")
	}
	require.FailNow(t, "PgBouncer is not installed, and CI is set: .ci/run must install the pgbouncer package")
	return ""
}

// startPgBouncer starts PgBouncer in transaction mode on a loopback port in
// front of the stack's PostgreSQL, with three server connections per
// database, and returns the service's URL through it (pgbouncer=true) and
// the URL of its admin console. PgBouncer refuses to run as root; as root it
// runs as nobody.
func startPgBouncer(t *testing.T, s *stack, binary string) (string, string) {
	t.Helper()
	admin, err := pgx.ParseConfig(dbtest.AdminURL())
	require.NoError(t, err)
	host := admin.Host
	if strings.HasPrefix(host, "/") {
		host = "127.0.0.1"
	}
	dir, err := os.MkdirTemp("", "orchable-pgbouncer-") //nolint:usetesting // t.TempDir's parent is 0700; the unprivileged PgBouncer must reach this one
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755)) // readable by the unprivileged PgBouncer
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d user=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
admin_users = %[3]s
stats_users = %[3]s
ignore_startup_parameters = extra_float_digits
stats_period = 1
`, host, admin.Port, admin.User, port)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	require.NoError(t, os.WriteFile(iniPath, []byte(ini), 0o644)) // no secret (trust on loopback)

	logf, err := os.CreateTemp(s.dir, "pgbouncer-*.log")
	require.NoError(t, err)
	cmd := exec.Command(binary, iniPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	require.NoError(t, cmd.Start())
	p := &proc{name: "pgbouncer", cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()

	dbCfg, err := pgx.ParseConfig(s.dbURL)
	require.NoError(t, err)
	poolerURL := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&pgbouncer=true", admin.User, addr, dbCfg.Database)
	adminConsole := fmt.Sprintf("postgres://%s@%s/pgbouncer?sslmode=disable&default_query_exec_mode=simple_protocol", admin.User, addr)
	waitFor(t, 20*time.Second, 20*time.Millisecond, "PgBouncer", func() (bool, string) {
		if !p.running() {
			require.FailNowf(t, "pgbouncer exited", "%v", p.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminConsole)
		if err != nil {
			return false, err.Error()
		}
		_ = c.Close(ctx)
		return true, ""
	})
	return poolerURL, adminConsole
}
