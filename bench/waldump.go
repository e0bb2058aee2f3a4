package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

// walRecord matches one pg_waldump line: total length and transaction.
var walRecord = regexp.MustCompile(`len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),`)

// dbWAL sums the bench database's WAL records between two LSNs.
func (w walSource) dbWAL(ctx context.Context, from, to string) (int64, error) {
	if w.na != "" {
		return 0, errors.New(w.na)
	}
	cmd := exec.CommandContext(ctx, w.waldump, "-p", w.dir, "-t", strconv.Itoa(w.timeline), "-s", from, "-e", to) //nolint:gosec // a path we found, LSNs from the server
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("error running pg_waldump: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("error running pg_waldump: %w", err)
	}
	type rec struct {
		tx   uint64
		size int64
		ours bool
	}
	var recs []rec
	txs := map[uint64]bool{}
	rel := "/" + strconv.FormatUint(uint64(w.dbOID), 10) + "/"
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		m := walRecord.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		size, _ := strconv.ParseInt(m[1], 10, 64)
		tx, _ := strconv.ParseUint(m[2], 10, 64)
		ours := strings.Contains(line, " base"+rel) || strings.Contains(line, " db "+strconv.FormatUint(uint64(w.dbOID), 10)+" ")
		if !ours {
			// Block references: "rel <tablespace>/<database>/<relation>".
			for _, f := range strings.Split(line, " rel ")[1:] {
				if p := strings.SplitN(f, "/", 3); len(p) == 3 && "/"+p[1]+"/" == rel {
					ours = true
					break
				}
			}
		}
		if ours && tx != 0 {
			txs[tx] = true
		}
		recs = append(recs, rec{tx, size, ours})
	}
	if err := sc.Err(); err != nil {
		_ = cmd.Wait()
		return 0, fmt.Errorf("error reading pg_waldump: %w", err)
	}
	// pg_waldump exits 1 when the last record is incomplete at -e; the
	// records before it were read.
	if err := cmd.Wait(); err != nil && len(recs) == 0 {
		return 0, fmt.Errorf("pg_waldump: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var total int64
	for _, r := range recs {
		if r.ours || (r.tx != 0 && txs[r.tx]) {
			total += r.size
		}
	}
	return total, nil
}
