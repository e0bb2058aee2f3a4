package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What a window of work costs the database server. See docs/performance.md,
// "Database cost and scaling".
//
//   - CPU: utime+stime of PostgreSQL processes read from /proc (only when the
//     server runs on this host and /proc is readable; otherwise "n/a"). Two
//     figures: the backends of the bench database (pg_stat_activity, sampled
//     every costSampleEvery so that backends that start during the window are
//     counted), and the whole server (every child of the postmaster, plus the
//     postmaster's cutime+cstime, which holds the CPU of exited backends).
//     pg_stat_statements would attribute CPU per statement, but it needs
//     shared_preload_libraries, that is a server restart.
//   - WAL: pg_current_wal_lsn() before and after. It is server-wide: other
//     databases' writes in the window count too (the "other sessions busy"
//     figure says whether there were any).
//   - Row and index writes: pg_stat_all_tables of the bench database after
//     the window, minus before (the pool is closed around the window so
//     every backend has flushed its statistics).

// costSampleEvery is how often the meter samples the bench database's
// backends; a backend that exits loses at most this much of its CPU.
const costSampleEvery = 50 * time.Millisecond

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// dbCost is what one window cost.
type dbCost struct {
	Wall time.Duration
	// CPU of the bench database's backends and of the whole server;
	// CPUNA says why they are missing ("" when measured).
	DBCPU, ServerCPU time.Duration
	CPUNA            string
	// ProcCPU is the bench process's own CPU (user and system) in the
	// window: the engine's (or River's client's) goroutines, plus the
	// meter's sampler, which both runs share.
	ProcCPU time.Duration
	// DBFaults and ProcFaults are the minor page faults of the bench
	// database's backends and of the bench process in the window: memory
	// the kernel had to map (and zero) afresh. Their CPU is in DBCPU and
	// ProcCPU; what one costs depends on the machine (pageFaultCost).
	DBFaults, ProcFaults int64
	WAL                  int64
	// DBWAL is the bench database's own WAL records (pg_waldump); WALNA
	// says why it is missing.
	DBWAL walSum
	WALNA string
	// BusyOther is the share of samples in which a session of another
	// database was active (noise in WAL and server CPU).
	BusyOther float64
	Tables    []tableWrites
	// Indexes are the index entries written in the window per index, from
	// the WAL (nil when WALNA is set), most written first.
	Indexes []indexWrites
}

// indexWrites is how many entries one index got in the window.
type indexWrites struct {
	Table, Index string
	Entries      int64
}

// tableWrites is one table's row writes in the window.
type tableWrites struct {
	Name                  string
	Ins, Upd, HotUpd, Del int64
	DeadTup               int64
	SeqRead, IdxFetch     int64 // rows read by sequential scans, fetched by index scans
	IdxRead               int64 // index entries read by index scans (idx_tup_read of the table's indexes)
	// Shared-buffer block requests of the table and its indexes: found in
	// PostgreSQL's buffer cache (hits), or read in from the OS (misses).
	BlksHit, BlksRead    int64
	Indexes, FullIndexes int64
	Toast                bool
	IndexMax, IndexMin   int64 // index entries written, upper and lower bound
	HeapVersions         int64 // heap row versions written (ins + upd)
}

// costMeter measures one window of work on one bench database.
type costMeter struct {
	e      *env
	db     *database
	conn   *pgx.Conn // to the admin database: the sampler's
	selfPI int       // the sampler's backend pid
	pm     int       // the postmaster's pid, 0 when /proc cannot be used
	na     string
	wal    walSource

	start       time.Time
	startLSN    string
	startSrv    time.Duration
	startProc   time.Duration
	startFaults int64
	tables0     map[string]tableWrites
	stopCh      chan struct{}
	done        chan struct{}
	mu          sync.Mutex
	base        map[int]time.Duration // CPU of each backend when first seen
	last        map[int]time.Duration // and when last seen
	baseFaults  map[int]int64         // page faults of each backend when first seen
	lastFaults  map[int]int64         // and when last seen
	samples     int
	busyOther   int
	sampleErr   error
}

// startCost quiesces the bench database (closes the pool's connections so
// that their statistics are flushed), reads the table statistics, the WAL
// position and the CPU counters, and starts sampling the database's
// backends. The pool reconnects on first use.
func (e *env) startCost(ctx context.Context, db *database) (*costMeter, error) {
	conn, err := pgx.Connect(ctx, e.o.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("error connecting the cost meter: %w", err)
	}
	m := &costMeter{
		e: e, db: db, conn: conn, base: map[int]time.Duration{}, last: map[int]time.Duration{},
		baseFaults: map[int]int64{}, lastFaults: map[int]int64{},
		stopCh: make(chan struct{}), done: make(chan struct{}),
	}
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&m.selfPI); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("error reading the meter's pid: %w", err)
	}
	m.pm, m.na = findPostmaster(ctx, conn, m.selfPI)
	m.wal = findWAL(ctx, conn, db.Name)
	if m.wal.na == "" {
		// A checkpoint in the window may recycle its first segments
		// before pg_waldump reads them: a temporary slot of this session
		// keeps them (it goes when the session ends).
		if _, err := conn.Exec(ctx, "select pg_create_physical_replication_slot($1, true, true)", "bench_cost_"+randSuffix()); err != nil {
			m.wal.na = "n/a (cannot reserve the window's WAL with a temporary replication slot: " + err.Error() + ")"
		}
	}
	if err := m.quiesce(ctx); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	if m.tables0, err = m.tableStats(ctx); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	// Reopen the pool's connections before the window, warmed as the
	// service warms them at start: a service's pool is warm, and backend
	// start-up and first calls would weigh on small windows.
	if err := warmPool(ctx, db); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	if m.pm != 0 {
		if m.startSrv, err = serverCPU(m.pm); err != nil {
			m.pm, m.na = 0, "n/a ("+err.Error()+")"
		}
	}
	if err := conn.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&m.startLSN); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("error reading the WAL position: %w", err)
	}
	m.start, m.startProc, m.startFaults = time.Now(), processCPU(), processFaults()
	if err := m.sample(ctx); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	go m.run(ctx)
	return m, nil
}

func (m *costMeter) run(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(costSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stopCh:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.sample(ctx); err != nil {
				m.mu.Lock()
				m.sampleErr = err
				m.mu.Unlock()
				return
			}
		}
	}
}

// sample reads which backends serve the bench database (and whether
// another database's session is active) and their CPU so far.
func (m *costMeter) sample(ctx context.Context) error {
	rows, err := m.conn.Query(ctx, `select pid, datname = $1, coalesce(state = 'active', false) from pg_stat_activity
		where pid <> pg_backend_pid() and datname is not null`, m.db.Name)
	if err != nil {
		return fmt.Errorf("error sampling pg_stat_activity: %w", err)
	}
	var ours []int
	other := false
	for rows.Next() {
		var pid int
		var mine, active bool
		if err := rows.Scan(&pid, &mine, &active); err != nil {
			return fmt.Errorf("error sampling pg_stat_activity: %w", err)
		}
		switch {
		case mine:
			ours = append(ours, pid)
		case active:
			other = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error sampling pg_stat_activity: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	if other {
		m.busyOther++
	}
	if m.pm == 0 {
		return nil
	}
	for _, pid := range ours {
		st, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		if st.ppid != m.pm {
			continue
		}
		cpu := st.utime + st.stime
		if _, ok := m.base[pid]; !ok {
			if m.samples == 1 {
				m.base[pid] = cpu // existed when the window opened
				m.baseFaults[pid] = st.minflt
			} else {
				m.base[pid] = 0 // started inside the window
				m.baseFaults[pid] = 0
			}
		}
		m.last[pid] = cpu
		m.lastFaults[pid] = st.minflt
	}
	return nil
}

// stop ends the window: it takes a last sample, the WAL position and the
// server's CPU, then closes the pool's connections (their statistics are
// flushed when they exit) and reads the table statistics.
func (m *costMeter) stop(ctx context.Context) (dbCost, error) {
	defer m.conn.Close(context.WithoutCancel(ctx))
	close(m.stopCh)
	<-m.done
	c := dbCost{Wall: time.Since(m.start), ProcCPU: processCPU() - m.startProc, ProcFaults: processFaults() - m.startFaults}
	if err := m.sample(ctx); err != nil {
		return c, err
	}
	var endLSN string
	if err := m.conn.QueryRow(ctx, "select pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint", m.startLSN).Scan(&endLSN, &c.WAL); err != nil {
		return c, fmt.Errorf("error reading the WAL position: %w", err)
	}
	if v, err := m.wal.dbWAL(ctx, m.startLSN, endLSN); err != nil {
		c.WALNA = err.Error()
		if !strings.HasPrefix(c.WALNA, "n/a") {
			c.WALNA = "n/a (" + c.WALNA + ")"
		}
	} else {
		c.DBWAL = v
	}
	m.mu.Lock()
	if m.sampleErr != nil {
		m.mu.Unlock()
		return c, m.sampleErr
	}
	c.CPUNA = m.na
	if m.pm != 0 {
		for pid, last := range m.last {
			c.DBCPU += max(0, last-m.base[pid])
		}
		for pid, last := range m.lastFaults {
			c.DBFaults += max(0, last-m.baseFaults[pid])
		}
		srv, err := serverCPU(m.pm)
		if err != nil {
			c.CPUNA = "n/a (" + err.Error() + ")"
		} else {
			c.ServerCPU = srv - m.startSrv
		}
	}
	if m.samples > 0 {
		c.BusyOther = float64(m.busyOther) / float64(m.samples)
	}
	m.mu.Unlock()
	if err := m.quiesce(ctx); err != nil {
		return c, err
	}
	t1, err := m.tableStats(ctx)
	if err != nil {
		return c, err
	}
	if c.WALNA == "" {
		if c.Indexes, err = m.indexNames(ctx, c.DBWAL.IndexEntries); err != nil {
			return c, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t1)) {
		a, b := m.tables0[name], t1[name]
		w := tableWrites{
			Name: name, Ins: b.Ins - a.Ins, Upd: b.Upd - a.Upd, HotUpd: b.HotUpd - a.HotUpd, Del: b.Del - a.Del,
			DeadTup: b.DeadTup - a.DeadTup, SeqRead: b.SeqRead - a.SeqRead, IdxFetch: b.IdxFetch - a.IdxFetch, IdxRead: b.IdxRead - a.IdxRead,
			BlksHit: b.BlksHit - a.BlksHit, BlksRead: b.BlksRead - a.BlksRead,
			Indexes: b.Indexes, FullIndexes: b.FullIndexes, Toast: b.Toast,
		}
		if w.Ins == 0 && w.Upd == 0 && w.Del == 0 && w.SeqRead == 0 && w.IdxFetch == 0 && w.IdxRead == 0 && w.BlksHit == 0 && w.BlksRead == 0 {
			continue
		}
		nonHot := w.Ins + w.Upd - w.HotUpd
		w.IndexMax, w.IndexMin, w.HeapVersions = nonHot*w.Indexes, nonHot*w.FullIndexes, w.Ins+w.Upd
		c.Tables = append(c.Tables, w)
	}
	return c, nil
}

// quiesce closes the pool's idle connections and waits until no backend
// serves the bench database any more, so that every backend's pending
// statistics have been flushed (a backend flushes them when it exits).
func (m *costMeter) quiesce(ctx context.Context) error {
	m.db.Pool.Reset()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := m.conn.QueryRow(ctx, "select count(*) from pg_stat_activity where datname = $1", m.db.Name).Scan(&n); err != nil {
			return fmt.Errorf("error counting the bench database's sessions: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			// Name what is left, for whoever reads the error.
			var left []string
			rows, err := m.conn.Query(ctx, `select format('pid %s %s (%s, %s): %s', pid, coalesce(application_name, ''), coalesce(state, ''),
					coalesce(wait_event_type || '/' || wait_event, 'no wait'), left(coalesce(query, ''), 200))
				from pg_stat_activity where datname = $1`, m.db.Name)
			if err == nil {
				left, _ = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			return fmt.Errorf("%d sessions of %s still open after closing the pool: %s", n, m.db.Name, strings.Join(left, "; "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tableStats reads the cumulative row counters of the bench database's
// tables (TOAST tables are folded into their owners' figures by name) and
// how many indexes each has, and how many of those are not partial.
func (m *costMeter) tableStats(ctx context.Context) (map[string]tableWrites, error) {
	conn, err := pgx.Connect(ctx, m.e.dbURL(m.db.Name))
	if err != nil {
		return nil, fmt.Errorf("error connecting to %s: %w", m.db.Name, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		select coalesce(o.relname, s.relname) || case when s.schemaname = 'pg_toast' then ' (toast)' else '' end,
		       s.schemaname = 'pg_toast',
		       s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del, s.n_dead_tup,
		       coalesce(s.seq_tup_read, 0), coalesce(s.idx_tup_fetch, 0),
		       (select coalesce(sum(x.idx_tup_read), 0)::bigint from pg_stat_all_indexes x where x.relid = s.relid),
		       (select count(*) from pg_index i where i.indrelid = s.relid),
		       (select count(*) from pg_index i where i.indrelid = s.relid and i.indpred is null),
		       coalesce(io.heap_blks_hit, 0) + coalesce(io.idx_blks_hit, 0),
		       coalesce(io.heap_blks_read, 0) + coalesce(io.idx_blks_read, 0)
		from pg_stat_all_tables s
		left join pg_class o on s.schemaname = 'pg_toast' and o.reltoastrelid = s.relid
		left join pg_statio_all_tables io on io.relid = s.relid
		where s.schemaname not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		return nil, fmt.Errorf("error reading table statistics: %w", err)
	}
	out := map[string]tableWrites{}
	for rows.Next() {
		var w tableWrites
		if err := rows.Scan(&w.Name, &w.Toast, &w.Ins, &w.Upd, &w.HotUpd, &w.Del, &w.DeadTup, &w.SeqRead, &w.IdxFetch, &w.IdxRead, &w.Indexes, &w.FullIndexes, &w.BlksHit, &w.BlksRead); err != nil {
			return nil, fmt.Errorf("error reading table statistics: %w", err)
		}
		out[w.Name] = w
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error reading table statistics: %w", err)
	}
	return out, nil
}

// indexNames names the index files that got entries in the window (a TOAST
// table's index under its owner's name). An entry of a file that no index
// of the database has any more (dropped in the window) is kept under its
// number.
func (m *costMeter) indexNames(ctx context.Context, entries map[uint32]int64) ([]indexWrites, error) {
	conn, err := pgx.Connect(ctx, m.e.dbURL(m.db.Name))
	if err != nil {
		return nil, fmt.Errorf("error connecting to %s: %w", m.db.Name, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		select x.relfilenode::bigint, coalesce(o.relname || ' (toast)', t.relname), x.relname
		from pg_index i
		join pg_class x on x.oid = i.indexrelid
		join pg_class t on t.oid = i.indrelid
		left join pg_class o on o.reltoastrelid = t.oid
		where x.relfilenode <> 0`)
	if err != nil {
		return nil, fmt.Errorf("error reading index names: %w", err)
	}
	names := map[uint32]indexWrites{}
	for rows.Next() {
		var node int64
		var w indexWrites
		if err := rows.Scan(&node, &w.Table, &w.Index); err != nil {
			return nil, fmt.Errorf("error reading index names: %w", err)
		}
		names[uint32(node)] = w //nolint:gosec // relfilenodes are 32-bit OIDs
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error reading index names: %w", err)
	}
	out := make([]indexWrites, 0, len(entries))
	for node, n := range entries {
		w, ok := names[node]
		if !ok {
			w = indexWrites{Table: "?", Index: fmt.Sprintf("relfilenode %d", node)}
		}
		w.Entries = n
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b indexWrites) int {
		if a.Entries != b.Entries {
			return cmp.Compare(b.Entries, a.Entries)
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return out, nil
}

// entries sums the index entries written to the indexes of the tables
// whose name passes keep, and names them with their share per task.
func (c dbCost) entries(keep func(string) bool, n int) (int64, string) {
	var sum int64
	var parts []string
	for _, w := range c.Indexes {
		if keep(w.Table) {
			sum += w.Entries
			parts = append(parts, fmt.Sprintf("%s %s", w.Index, num(perTask(float64(w.Entries), n))))
		}
	}
	return sum, strings.Join(parts, ", ")
}

// procStat is what the bench reads from /proc/<pid>/stat.
type procStat struct {
	ppid                         int
	minflt                       int64 // minor page faults so far
	utime, stime, cutime, cstime time.Duration
	startTicks                   int64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field k is f[k-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	n := func(k int) int64 {
		v, _ := strconv.ParseInt(f[k-3], 10, 64)
		return v
	}
	tick := func(k int) time.Duration { return time.Duration(n(k)) * time.Second / clockTicks }
	return procStat{ppid: int(n(4)), minflt: n(10), utime: tick(14), stime: tick(15), cutime: tick(16), cstime: tick(17), startTicks: n(22)}, nil
}

// findPostmaster returns the pid of the server's postmaster (the parent of
// the meter's backend), or 0 and why /proc cannot be used: the server is on
// another host or in another pid namespace, /proc is not readable, or the
// process found is not the server's (its start time differs from
// pg_postmaster_start_time()).
func findPostmaster(ctx context.Context, conn *pgx.Conn, backend int) (int, string) {
	st, err := readStat(backend)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, "n/a (server not on this host: no process " + strconv.Itoa(backend) + ")"
		}
		return 0, "n/a (/proc of the server not readable: " + err.Error() + ")"
	}
	pm, err := readStat(st.ppid)
	if err != nil {
		return 0, "n/a (/proc of the postmaster not readable: " + err.Error() + ")"
	}
	var started time.Time
	if err := conn.QueryRow(ctx, "select pg_postmaster_start_time()").Scan(&started); err != nil {
		return 0, "n/a (" + err.Error() + ")"
	}
	boot, err := bootTime()
	if err != nil {
		return 0, "n/a (" + err.Error() + ")"
	}
	procStart := boot.Add(time.Duration(pm.startTicks) * time.Second / clockTicks)
	if d := started.Sub(procStart); d < -2*time.Second || d > 30*time.Second {
		return 0, "n/a (process " + strconv.Itoa(st.ppid) + " is not this server's postmaster: server not on this host)"
	}
	return st.ppid, ""
}

func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/stat not readable: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("/proc/stat: bad btime: %w", err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat: no btime")
}

// processCPU is the CPU (user and system) this process has used so far, 0
// if it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processFaults is the minor page faults this process has taken so far, 0
// if they cannot be read.
func processFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}

// serverCPU is the CPU used so far by the postmaster, its live children and
// (cutime+cstime) its exited children.
func serverCPU(pm int) (time.Duration, error) {
	// A child the postmaster reaps between the read of its reaped children's
	// total and the walk of /proc is in neither, and a window that ended on
	// such a read came out negative (backends of an earlier scenario's pool
	// exit at any time). So the walk is taken only when the total is the
	// same before and after it.
	for range 100 {
		before, err := readStat(pm)
		if err != nil {
			return 0, fmt.Errorf("postmaster gone: %w", err)
		}
		live, err := childrenCPU(pm)
		if err != nil {
			return 0, err
		}
		after, err := readStat(pm)
		if err != nil {
			return 0, fmt.Errorf("postmaster gone: %w", err)
		}
		if after.cutime+after.cstime == before.cutime+before.cstime {
			return before.utime + before.stime + before.cutime + before.cstime + live, nil
		}
	}
	return 0, errors.New("the postmaster reaped a child during each of 100 reads")
}

// childrenCPU is the CPU so far of the postmaster's live children (an exited
// one not yet reaped included: its stat stays until it is).
func childrenCPU(pm int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("/proc not readable: %w", err)
	}
	var total time.Duration
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != pm {
			continue
		}
		total += st.utime + st.stime
	}
	return total, nil
}

// perTask divides by n (0 when n is 0).
func perTask(v float64, n int) float64 {
	if n == 0 {
		return 0
	}
	return v / float64(n)
}

// sum adds up the figures of the tables whose name passes keep.
func (c dbCost) sum(keep func(string) bool) tableWrites {
	var t tableWrites
	for _, w := range c.Tables {
		if keep(w.Name) {
			t.Ins, t.Upd, t.HotUpd, t.Del, t.DeadTup = t.Ins+w.Ins, t.Upd+w.Upd, t.HotUpd+w.HotUpd, t.Del+w.Del, t.DeadTup+w.DeadTup
			t.SeqRead, t.IdxFetch, t.IdxRead = t.SeqRead+w.SeqRead, t.IdxFetch+w.IdxFetch, t.IdxRead+w.IdxRead
			t.IndexMax, t.IndexMin, t.HeapVersions = t.IndexMax+w.IndexMax, t.IndexMin+w.IndexMin, t.HeapVersions+w.HeapVersions
			t.BlksHit, t.BlksRead = t.BlksHit+w.BlksHit, t.BlksRead+w.BlksRead
		}
	}
	return t
}

func allTables(string) bool { return true }

// costFigures compares what orchable's window cost per task with what
// River's cost per job (river nil: no baseline). label names the work.
func costFigures(label string, orch dbCost, nOrch int, river *dbCost, nRiver int) []Figure {
	var r dbCost
	if river != nil {
		r = *river
	}
	ot, rt := orch.sum(allTables), r.sum(allTables)
	cpuNA := orch.CPUNA
	if cpuNA == "" && river != nil {
		cpuNA = r.CPUNA
	}
	walNA := orch.WALNA
	if walNA == "" && river != nil {
		walNA = r.WALNA
	}
	hot := func(t tableWrites) float64 { return 100 * perTask(float64(t.HotUpd), int(t.Upd)) }
	const base = "River per job"
	figs := []Figure{
		{
			Name: "DB CPU/task, bench DB backends, " + label, Unit: "ms", Note: cpuNA,
			Value: ms(orch.DBCPU) / float64(max(nOrch, 1)), Baseline: ms(r.DBCPU) / float64(max(nRiver, 1)), BaselineName: base,
		},
		{
			Name: "server CPU/task, all postgres processes, " + label, Unit: "ms", Note: cpuNA,
			Value: ms(orch.ServerCPU) / float64(max(nOrch, 1)), Baseline: ms(r.ServerCPU) / float64(max(nRiver, 1)), BaselineName: base,
		},
		{
			// The client side of the same window: orchable's engine, River's
			// client (and the meter's sampler in both).
			Name: "bench process CPU/task (engine; River's client), " + label, Unit: "µs",
			Value: 1000 * ms(orch.ProcCPU) / float64(max(nOrch, 1)), Baseline: 1000 * ms(r.ProcCPU) / float64(max(nRiver, 1)), BaselineName: base,
		},
		{
			// Fresh memory the server's backends mapped: a call that frees a
			// large allocation gives it back to the kernel (glibc trims the
			// heap), and the next call faults it in again.
			Name: "page faults/task, bench DB backends, " + label, Unit: "faults", Note: cpuNA,
			Value: perTask(float64(orch.DBFaults), nOrch), Baseline: perTask(float64(r.DBFaults), nRiver), BaselineName: base,
		},
		{
			Name: "page faults/task, bench process (engine; River's client), " + label, Unit: "faults",
			Value: perTask(float64(orch.ProcFaults), nOrch), Baseline: perTask(float64(r.ProcFaults), nRiver), BaselineName: base,
		},
		{
			Name: "WAL/task, bench DB's records (pg_waldump), " + label, Unit: "bytes", Note: walNA,
			Value: perTask(float64(orch.DBWAL.Total), nOrch), Baseline: perTask(float64(r.DBWAL.Total), nRiver), BaselineName: base,
		},
		{
			Name: "  the same without full-page images", Unit: "bytes", Note: walNA,
			Value: perTask(float64(orch.DBWAL.NoFPI), nOrch), Baseline: perTask(float64(r.DBWAL.NoFPI), nRiver), BaselineName: base,
		},
		{
			Name: "WAL/task, server-wide LSN delta, " + label, Unit: "bytes",
			Value: perTask(float64(orch.WAL), nOrch), Baseline: perTask(float64(r.WAL), nRiver), BaselineName: base,
		},
		{
			Name: "heap row versions written/task (ins+upd)", Unit: "rows",
			Value: perTask(float64(ot.HeapVersions), nOrch), Baseline: perTask(float64(rt.HeapVersions), nRiver), BaselineName: base,
		},
		{
			Name: "index entries written/task (leaf inserts in the WAL)", Unit: "entries", Note: walNA,
			Value: perTask(float64(orch.DBWAL.Entries()), nOrch), Baseline: perTask(float64(r.DBWAL.Entries()), nRiver), BaselineName: base,
		},
		{
			Name: "index entries written/task, upper bound (every index)", Unit: "entries",
			Value: perTask(float64(ot.IndexMax), nOrch), Baseline: perTask(float64(rt.IndexMax), nRiver), BaselineName: base,
		},
		{
			Name: "index entries written/task, lower bound (non-partial indexes)", Unit: "entries",
			Value: perTask(float64(ot.IndexMin), nOrch), Baseline: perTask(float64(rt.IndexMin), nRiver), BaselineName: base,
		},
		{Name: "HOT updates, % of updates", Unit: "%", Value: hot(ot), Baseline: hot(rt), BaselineName: base, HigherIsBetter: true},
		{
			Name: "dead row versions left/task", Unit: "rows",
			Value: perTask(float64(ot.DeadTup), nOrch), Baseline: perTask(float64(rt.DeadTup), nRiver), BaselineName: base,
		},
	}
	// Per table, at fixed positions so that medians line up across runs.
	is := func(names ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(names, n) }
	}
	isOrch := is("ai_tasks", "ai_tasks (toast)", "task_batches", "task_batches (toast)")
	perTable := func(c dbCost, n int, name string, keep func(string) bool) Figure {
		w := c.sum(keep)
		idx := []string{}
		for _, t := range c.Tables {
			if keep(t.Name) && !strings.HasSuffix(t.Name, "(toast)") {
				idx = append(idx, fmt.Sprintf("%s %d indexes, %d partial", t.Name, t.Indexes, t.Indexes-t.FullIndexes))
			}
		}
		p := func(v int64) string { return num(perTask(float64(v), n)) }
		note := append([]string{fmt.Sprintf("rows/task ins %s upd %s (HOT %s) del %s", p(w.Ins), p(w.Upd), p(w.HotUpd), p(w.Del))}, idx...)
		if c.WALNA != "" || c.Indexes == nil {
			return Figure{Name: "  " + name + ": index entries/task, upper bound", Unit: "entries", Value: perTask(float64(w.IndexMax), n), Note: strings.Join(note, "; ")}
		}
		sum, per := c.entries(keep, n)
		if per != "" {
			note = append(note, "written per index: "+per)
		}
		return Figure{Name: "  " + name + ": index entries/task (WAL)", Unit: "entries", Value: perTask(float64(sum), n), Note: strings.Join(note, "; ")}
	}
	figs = append(figs,
		perTable(orch, nOrch, "ai_tasks", is("ai_tasks", "ai_tasks (toast)")),
		perTable(orch, nOrch, "task_batches", is("task_batches", "task_batches (toast)")),
		perTable(orch, nOrch, "other orchable tables", func(n string) bool { return !isOrch(n) }))
	if river != nil {
		figs = append(figs,
			perTable(r, nRiver, "River river_job (per job)", is("river_job", "river_job (toast)")),
			perTable(r, nRiver, "River other tables (per job)", func(n string) bool { return n != "river_job" && n != "river_job (toast)" }))
	}
	figs = append(figs, Figure{Name: "  noise: other DBs' sessions active, % of samples (orchable)", Unit: "%", Value: 100 * orch.BusyOther})
	if river != nil {
		figs = append(figs, Figure{Name: "  noise: other DBs' sessions active, % of samples (River)", Unit: "%", Value: 100 * r.BusyOther})
	}
	return figs
}

// foldCounters folds the batch counter deltas the setup left (as the
// sweeper would), so that the measured window does not fold them.
func foldCounters(ctx context.Context, db *database) error {
	if _, err := db.Pool.Exec(ctx, "select public.fold_batch_counters()"); err != nil {
		return fmt.Errorf("error folding the batch counters: %w", err)
	}
	return nil
}

// warmPool opens every connection of the pool and, on orchable's, makes
// the engine's first calls (warmEngineConns).
func warmPool(ctx context.Context, db *database) error {
	if !db.River {
		// As the engine warms its connections at start.
		return warmEngineConns(ctx, db.Pool)
	}
	conns := make([]*pgxpool.Conn, 0, db.Pool.Config().MaxConns)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range db.Pool.Config().MaxConns {
		c, err := db.Pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("error opening the pool's connections: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}
