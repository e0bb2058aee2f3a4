package main

import (
	"os"
	"strings"
	"testing"
	"time"
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
first record is after 0/01A2B300, at 0/01A2B3C8, skipping over 200 bytes
`
	got, n, err := sumDBWAL(strings.NewReader(dump), 16384)
	if err != nil {
		t.Fatal(err)
	}
	// 54 + 34 (tx 735), 8256 (64 without its page image: ours), 42 (lock
	// in our db), 46 (truncate of ours);
	// not tx 736 (database 5) nor RUNNING_XACTS.
	want := walSum{Total: 54 + 34 + 8256 + 42 + 46, NoFPI: 54 + 34 + 64 + 42 + 46}
	if got != want || n != 8 {
		t.Fatalf("sumDBWAL = %+v over %d records, want %+v over 8", got, n, want)
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
	var cpu, wal bool
	for _, f := range figs {
		if strings.Contains(f.Name, "CPU") && strings.Contains(f.Note, "n/a (server not on this host") {
			cpu = true
		}
		if strings.Contains(f.Name, "pg_waldump") && strings.Contains(f.Note, "n/a (pg_wal not readable") {
			wal = true
		}
		if strings.HasPrefix(f.Name, "index entries written/task, upper bound") && f.Value != 30 {
			t.Errorf("%s = %v, want 30", f.Name, f.Value)
		}
	}
	if !cpu || !wal {
		t.Fatalf("missing n/a reasons in %+v", figs)
	}
}
