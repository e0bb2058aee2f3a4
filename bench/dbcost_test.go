package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestSumDBWAL(t *testing.T) {
	t.Parallel()
	const dump = `rmgr: Heap        len (rec/tot):     54/    54, tx:        735, lsn: 0/01A2B3C8, prev 0/01A2B390, desc: HOT_UPDATE off 3, blkref #0: rel 1663/16384/16385 blk 0
rmgr: Heap        len (rec/tot):     60/    60, tx:        736, lsn: 0/01A2B400, prev 0/01A2B3C8, desc: INSERT off 4, blkref #0: rel 1663/5/1259 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/01A2B440, prev 0/01A2B400, desc: COMMIT 2026-12-04 12:41:28 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/01A2B468, prev 0/01A2B440, desc: COMMIT 2026-12-04 12:41:28 UTC
rmgr: Heap2       len (rec/tot):     64/  8256, tx:          0, lsn: 0/01A2B490, prev 0/01A2B468, desc: VISIBLE cutoff xid 1 flags 0x01, blkref #0: rel 1663/16384/46157 fork vm blk 0 FPW, blkref #1: rel 1663/16384/46157 blk 0
rmgr: Standby     len (rec/tot):     42/    42, tx:        737, lsn: 0/01A2C4E0, prev 0/01A2B490, desc: LOCK xid 737 db 16384 rel 46350
rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/01A2C510, prev 0/01A2C4E0, desc: RUNNING_XACTS nextXid 738
rmgr: Storage     len (rec/tot):     46/    46, tx:        738, lsn: 0/01A2C548, prev 0/01A2C510, desc: TRUNCATE base/16384/46350 to 0 blocks flags 7
rmgr: Btree       len (rec/tot):     90/    90, tx:        739, lsn: 0/01A2C580, prev 0/01A2C548, desc: NEWROOT lev 0, blkref #0: rel 1663/16384/16622 blk 1, blkref #2: rel 1663/16384/16622 blk 0
rmgr: Btree       len (rec/tot):     72/    72, tx:        739, lsn: 0/01A2C5E0, prev 0/01A2C580, desc: INSERT_LEAF off 1, blkref #0: rel 1663/16384/16622 blk 1
rmgr: Btree       len (rec/tot):     72/    72, tx:        739, lsn: 0/01A2C628, prev 0/01A2C5E0, desc: INSERT_POST off 7, blkref #0: rel 1663/16384/16622 blk 1
rmgr: Btree       len (rec/tot):     72/    72, tx:        739, lsn: 0/01A2C670, prev 0/01A2C628, desc: INSERT_LEAF off 2, blkref #0: rel 1663/5/16622 blk 1
rmgr: Btree       len (rec/tot):   1200/  1200, tx:        739, lsn: 0/01A2C6B8, prev 0/01A2C670, desc: SPLIT_R level 0, firstrightoff 120, newitemoff 200, postingoff 0, blkref #0: rel 1663/16384/16700 blk 4, blkref #1: rel 1663/16384/16700 blk 9
rmgr: Btree       len (rec/tot):    300/   300, tx:        739, lsn: 0/01A2CB68, prev 0/01A2C6B8, desc: SPLIT_L level 1, firstrightoff 20, newitemoff 3, postingoff 0, blkref #0: rel 1663/16384/16700 blk 2, blkref #1: rel 1663/16384/16700 blk 10
rmgr: Btree       len (rec/tot):     64/    64, tx:        739, lsn: 0/01A2CC98, prev 0/01A2CB68, desc: INSERT_UPPER off 3, blkref #0: rel 1663/16384/16700 blk 3
rmgr: Gin         len (rec/tot):    174/   174, tx:        739, lsn: 0/01A2CCD8, prev 0/01A2CC98, desc: UPDATE_META_PAGE , blkref #0: rel 1663/16384/16800 blk 0, blkref #1: rel 1663/16384/16800 blk 2
rmgr: Gin         len (rec/tot):     80/    80, tx:        739, lsn: 0/01A2CD88, prev 0/01A2CCD8, desc: DELETE_LISTPAGE ndeleted: 1, blkref #0: rel 1663/16384/16800 blk 0
first record is after 0/01A2B300, at 0/01A2B3C8, skipping over 200 bytes
`
	got, n, err := sumDBWAL(strings.NewReader(dump), 16384)
	if err != nil {
		t.Fatal(err)
	}
	// 54 + 34 (tx 735), 8256 (64 without its page image: ours), 42 (lock
	// in our db), 46 (truncate of ours);
	// not tx 736 (database 5) nor RUNNING_XACTS; tx 739's B-tree records,
	// the one of database 5 too (the transaction wrote ours).
	btree := int64(90 + 72 + 72 + 72 + 1200 + 300 + 64 + 174 + 80)
	want := walSum{Total: 54 + 34 + 8256 + 42 + 46 + btree, NoFPI: 54 + 34 + 64 + 42 + 46 + btree}
	if got.Total != want.Total || got.NoFPI != want.NoFPI || n != 17 {
		t.Fatalf("sumDBWAL = %+v over %d records, want %+v over 17", got, n, want)
	}
	// Leaf inserts and the leaf split carry an entry each; the new root,
	// the upper split and the upper insert add downlinks; database 5's
	// insert is not ours; a GIN pending-list append is one row's entry, and
	// cleaning the list adds none.
	if e := got.IndexEntries; len(e) != 3 || e[16622] != 2 || e[16700] != 1 || e[16800] != 1 || got.Entries() != 4 {
		t.Fatalf("index entries = %v, want 16622: 2, 16700: 1, 16800: 1", e)
	}
}

func TestReadStat(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() || st.startTicks <= 0 {
		t.Fatalf("readStat(self) = %+v, want ppid %d", st, os.Getppid())
	}
	// Touching fresh memory is counted as minor faults (field 10), in
	// /proc as in getrusage.
	b, err := syscall.Mmap(-1, 0, 4<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Munmap(b) }()
	smallPages(b)
	self := processFaults()
	for i := 0; i < len(b); i += syscall.Getpagesize() {
		b[i] = 1
	}
	after, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pages := int64(len(b) / syscall.Getpagesize())
	if d := after.minflt - st.minflt; d < pages {
		t.Fatalf("minflt grew by %d over %d fresh pages", d, pages)
	}
	if d := processFaults() - self; d < pages {
		t.Fatalf("processFaults grew by %d over %d fresh pages", d, pages)
	}
}

// What a fault costs here is measured, not assumed.
func TestPageFaultCost(t *testing.T) {
	t.Parallel()
	d, err := pageFaultCost()
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > time.Millisecond {
		t.Fatalf("pageFaultCost() = %v, want a few microseconds or less", d)
	}
}

// A server whose processes cannot be read (remote) gives named n/a figures,
// not zeros that look measured.
func TestCostFiguresNA(t *testing.T) {
	t.Parallel()
	na := dbCost{
		Wall: time.Second, CPUNA: "n/a (server not on this host: no process 42)", WALNA: "n/a (pg_wal not readable here)", WAL: 1000,
		Tables: []tableWrites{{Name: "ai_tasks", Upd: 20, Indexes: 15, FullIndexes: 8, IndexMax: 300, IndexMin: 160, HeapVersions: 20}},
	}
	figs := costFigures("test", na, 10, &na, 10)
	var cpu, faults, wal bool
	for _, f := range figs {
		if strings.Contains(f.Name, "CPU") && strings.Contains(f.Note, "n/a (server not on this host") {
			cpu = true
		}
		if strings.HasPrefix(f.Name, "page faults/task, bench DB backends") && strings.Contains(f.Note, "n/a (server not on this host") {
			faults = true
		}
		if strings.Contains(f.Name, "pg_waldump") && strings.Contains(f.Note, "n/a (pg_wal not readable") {
			wal = true
		}
		if strings.HasPrefix(f.Name, "index entries written/task, upper bound") && f.Value != 30 {
			t.Errorf("%s = %v, want 30", f.Name, f.Value)
		}
	}
	if !cpu || !faults || !wal {
		t.Fatalf("missing n/a reasons in %+v", figs)
	}
}

// serverCPU adds up the CPU of the postmaster, its reaped children and its
// live ones. Backends start and exit all the time (an earlier scenario's pool
// closing), and a child reaped in the middle of a read was once in neither
// total: a window's server CPU came out negative. Read while connections
// come and go, the total never goes back.
func TestServerCPUNeverGoesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := t.Context()
	url := envOr("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var backend int
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	pm, na := findPostmaster(ctx, conn, backend)
	if pm == 0 {
		t.Skip(na)
	}

	// Connections that each do a little work and exit, so the postmaster
	// reaps children throughout the reads.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					errs <- err
					return
				}
				_, err = c.Exec(ctx, "select count(*) from generate_series(1, 20000)")
				_ = c.Close(context.WithoutCancel(ctx))
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	prev, err := serverCPU(pm)
	if err == nil {
		for i := range 300 {
			var cur time.Duration
			if cur, err = serverCPU(pm); err != nil {
				break
			}
			if cur < prev {
				err = fmt.Errorf("read %d: the server's CPU went back from %v to %v", i+1, prev, cur)
				break
			}
			prev = cur
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatal(err)
	}
	for err := range errs {
		t.Fatal(err)
	}
}
