package devdemo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orchable/orchable/supabase"
)

type progress struct {
	Status     string                    `json:"status"`
	Total      int                       `json:"total"`
	Pending    int                       `json:"pending"`
	Processing int                       `json:"processing"`
	Completed  int                       `json:"completed"`
	Failed     int                       `json:"failed"`
	Tokens     int                       `json:"total_tokens"`
	ByStage    map[string]map[string]int `json:"by_stage"`
}

// watchBatch prints a progress line whenever the batch's exact progress
// changes, until every task is finished.
func watchBatch(ctx context.Context, w io.Writer, db supabase.DB, id supabase.Identity, batch uuid.UUID) error {
	var last string
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Minute)
	for {
		var p progress
		if err := db.RPC(ctx, id, "get_batch_progress", map[string]any{"p_batch_id": batch}, &p); err != nil {
			return err
		}
		line := fmt.Sprintf("progress  %3d/%-3d done  (%d running, %d waiting, %d failed)  %s",
			p.Completed+p.Failed, p.Total, p.Processing, p.Pending, p.Failed, stageLine(p.ByStage))
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		if p.Total > 0 && p.Pending == 0 && p.Processing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("the demo batch did not finish within 5 minutes")
		case <-tick.C:
		}
	}
}

func stageLine(by map[string]map[string]int) string {
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		done := by[k]["completed"] + by[k]["failed"]
		total := 0
		for _, n := range by[k] {
			total += n
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, done, total))
	}
	return strings.Join(parts, " · ")
}

func printSummary(ctx context.Context, w io.Writer, pool *pgxpool.Pool, batch uuid.UUID, elapsed time.Duration) {
	rows, err := pool.Query(ctx, `select coalesce(stage_key, ''), status::text, count(*), coalesce(sum(total_token_count), 0),
		min(step_number) from public.ai_tasks where batch_id = $1 group by 1, 2 order by 5, 1, 2`, batch)
	if err != nil {
		fmt.Fprintf(w, "summary unavailable: %v\n", err)
		return
	}
	type line struct {
		stage, status string
		n, tokens     int
		step          int
	}
	lines, _ := pgx.CollectRows(rows, func(r pgx.CollectableRow) (line, error) {
		var l line
		return l, r.Scan(&l.stage, &l.status, &l.n, &l.tokens, &l.step)
	})
	fmt.Fprintf(w, "\nsummary   batch %s finished in %s\n", batch, elapsed.Round(time.Millisecond))
	total, tokens := 0, 0
	for _, l := range lines {
		fmt.Fprintf(w, "          step %d  %-10s %-10s %3d tasks  %6d tokens\n", l.step, l.stage, l.status, l.n, l.tokens)
		total += l.n
		tokens += l.tokens
	}
	var status string
	var counters [5]int
	// Fold and read in one transaction that waits for the fold lock: the
	// sweeper may be folding at this moment, and fold_batch_counters returns
	// 0 at once then, before its folder has committed.
	if tx, err := pool.Begin(ctx); err == nil {
		_, _ = tx.Exec(ctx, "select pg_advisory_xact_lock(hashtext('orchable.fold_batch_counters'))")
		_, _ = tx.Exec(ctx, "select public.fold_batch_counters()")
		_ = tx.QueryRow(ctx, `select status, total_tasks, completed_tasks, failed_tasks, pending_tasks, processing_tasks from public.task_batches where id = $1`, batch).
			Scan(&status, &counters[0], &counters[1], &counters[2], &counters[3], &counters[4])
		_ = tx.Commit(ctx)
	}
	fmt.Fprintf(w, "          %d tasks, %d tokens; batch status %s (counters: %d total, %d completed, %d failed)\n",
		total, tokens, status, counters[0], counters[1], counters[2])
	var out json.RawMessage
	if err := pool.QueryRow(ctx, `select output_data from public.ai_tasks where batch_id = $1 and stage_key = 'validator' limit 1`, batch).Scan(&out); err == nil {
		fmt.Fprintf(w, "          validator output: %s\n", truncate(string(out), 200))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
