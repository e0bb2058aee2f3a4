package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The server-wide LSN delta counts every database's WAL. When pg_waldump
// and the server's pg_wal directory are readable from here (a local server,
// run as root or as the postgres user), the meter also sums the WAL records
// of the bench database alone: records whose block references name its OID,
// plus every record of a transaction that wrote such a record (its commit,
// locks). Records of no database (checkpoints, RUNNING_XACTS) are left out.

// walSource says where to read the server's WAL, or why it cannot be read.
type walSource struct {
	waldump, dir string
	timeline     int
	dbOID        uint32
	na           string
}

func findWAL(ctx context.Context, conn *pgx.Conn, db string) walSource {
	var w walSource
	var dataDir, bindir string
	var major int
	if err := conn.QueryRow(ctx, "select oid from pg_database where datname = $1", db).Scan(&w.dbOID); err != nil {
		return walSource{na: "n/a (" + err.Error() + ")"}
	}
	if err := conn.QueryRow(ctx, "select current_setting('data_directory'), current_setting('server_version_num')::int / 10000, timeline_id from pg_control_checkpoint()").
		Scan(&dataDir, &major, &w.timeline); err != nil {
		return walSource{na: "n/a (data_directory not readable: " + err.Error() + ")"}
	}
	w.dir = filepath.Join(dataDir, "pg_wal")
	if _, err := os.ReadDir(w.dir); err != nil {
		return walSource{na: "n/a (pg_wal not readable here: server not on this host or no permission)"}
	}
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		bindir = strings.TrimSpace(string(out))
	}
	for _, c := range []string{filepath.Join("/usr/lib/postgresql", strconv.Itoa(major), "bin", "pg_waldump"), filepath.Join(bindir, "pg_waldump")} {
		if _, err := os.Stat(c); err == nil {
			w.waldump = c
			break
		}
	}
	if w.waldump == "" {
		return walSource{na: fmt.Sprintf("n/a (pg_waldump %d not found)", major)}
	}
	return w
}

// walRecord matches one pg_waldump line: the record's length without and
// with its full-page images, and its transaction.
var walRecord = regexp.MustCompile(`len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+),`)

// leafInsert matches a record that adds a row's entry to an index:
//   - B-tree: an insert into a leaf page (also into a posting list) or a
//     split of a leaf page, which carries the new entry. Upper-level inserts
//     and splits add downlinks, and a new root adds none;
//   - GIN with fastupdate (the default): the metapage update that appends a
//     row's entries to the pending list, one per row. Moving the pending
//     list into the tree later is not counted again. (A GIN index with
//     fastupdate off is not counted.)
var leafInsert = regexp.MustCompile(`^rmgr: (?:Btree .* desc: (?:INSERT_LEAF|INSERT_POST|SPLIT_[LR] level 0)\b|Gin .* desc: UPDATE_META_PAGE\b).*?blkref #0: rel \d+/(\d+)/(\d+) `)

// walSum is the size of some WAL records with and without their full-page
// images (written for the first change of a page after a checkpoint), and
// the index entries they wrote per index file (relfilenode) of the
// database (see leafInsert). PostgreSQL counts no index insertions in
// its statistics; the WAL has one record per entry.
type walSum struct {
	Total, NoFPI int64
	IndexEntries map[uint32]int64
}

// Entries is the number of index entries written to every index.
func (s walSum) Entries() int64 {
	var n int64
	for _, v := range s.IndexEntries {
		n += v
	}
	return n
}

// dbWAL sums the bench database's WAL records between two LSNs.
func (w walSource) dbWAL(ctx context.Context, from, to string) (walSum, error) {
	if w.na != "" {
		return walSum{}, errors.New(w.na)
	}
	cmd := exec.CommandContext(ctx, w.waldump, "-p", w.dir, "-t", strconv.Itoa(w.timeline), "-s", from, "-e", to) //nolint:gosec // a path we found, LSNs from the server
	out, err := cmd.StdoutPipe()
	if err != nil {
		return walSum{}, fmt.Errorf("error running pg_waldump: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return walSum{}, fmt.Errorf("error running pg_waldump: %w", err)
	}
	total, _, perr := sumDBWAL(out, w.dbOID)
	if perr != nil {
		_ = cmd.Wait()
		return walSum{}, perr
	}
	// A failure part-way (a segment recycled by a checkpoint meanwhile)
	// would undercount: no figure rather than a wrong one.
	if err := cmd.Wait(); err != nil {
		return walSum{}, fmt.Errorf("pg_waldump: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return total, nil
}

// sumDBWAL reads pg_waldump's output and sums the sizes of the records of
// the database: those naming it (block references "rel <spc>/<db>/<rel>",
// "base/<db>/" paths, "db <db>") and every record of a transaction that
// wrote one. It returns the sum, with the index entries the database's
// indexes got counted per index file, and how many records it read. Leaf
// inserts of aborted transactions count: their entries were written.
func sumDBWAL(r io.Reader, dbOID uint32) (walSum, int, error) {
	type rec struct {
		tx        uint64
		size, raw int64
		ours      bool
	}
	var recs []rec
	txs := map[uint64]bool{}
	entries := map[uint32]int64{}
	oid := strconv.FormatUint(uint64(dbOID), 10)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		m := walRecord.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		raw, _ := strconv.ParseInt(m[1], 10, 64)
		size, _ := strconv.ParseInt(m[2], 10, 64)
		tx, _ := strconv.ParseUint(m[3], 10, 64)
		ours := strings.Contains(line, " base/"+oid+"/") || strings.Contains(line, " db "+oid+" ")
		for _, f := range strings.Split(line, " rel ")[1:] {
			if p := strings.SplitN(f, "/", 3); len(p) == 3 && p[1] == oid {
				ours = true
				break
			}
		}
		if ours && tx != 0 {
			txs[tx] = true
		}
		if b := leafInsert.FindStringSubmatch(line); b != nil && b[1] == oid {
			rel, _ := strconv.ParseUint(b[2], 10, 32)
			entries[uint32(rel)]++
		}
		recs = append(recs, rec{tx, size, raw, ours})
	}
	if err := sc.Err(); err != nil {
		return walSum{}, len(recs), fmt.Errorf("error reading pg_waldump: %w", err)
	}
	sum := walSum{IndexEntries: entries}
	for _, r := range recs {
		if r.ours || (r.tx != 0 && txs[r.tx]) {
			sum.Total += r.size
			sum.NoFPI += r.raw
		}
	}
	return sum, len(recs), nil
}
