package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/supabase"
)

// An owner's history: the same pipeline work (roots of throughput-pipeline's
// 1:1 → 1:N(10) → N:1) done by an owner who has run that pipeline many
// times before (every batch finished, its tasks kept, as the front end
// keeps them), against a new owner in the same table. The table is the same
// size in both windows, so what differs is only how much of it is the
// working owner's own: a read that is filtered on the owner but not bounded
// by the batch or scope at hand grows with the first and not the second.
// Reported per pipeline task, with the rows read per table, so that such a
// read shows which table it is on.

// historySeedBatches is how many one-root batches the old owner runs through
// the engine before its history is copied: each copy round adds that many
// finished batches of 13 tasks each.
const historySeedBatches = 50

// historyResult is one window of the history case.
type historyResult struct {
	tasks int
	cost  dbCost
}

// scaleHistory measures roots pipelines of a new owner and of an owner with
// batches finished batches behind it, in one database.
func scaleHistory(ctx context.Context, e *env, batches, roots int) (fresh, old historyResult, err error) {
	db, err := e.freshDB(ctx, false, e.o.Conns)
	if err != nil {
		return fresh, old, err
	}
	defer db.close()
	oldOwner, err := createUser(ctx, db.Pool)
	if err != nil {
		return fresh, old, err
	}
	newOwner, err := createUser(ctx, db.Pool)
	if err != nil {
		return fresh, old, err
	}
	gen, err := offlineModel()
	if err != nil {
		return fresh, old, err
	}
	ids := newClaimsIdentity()
	direct := supabase.NewDirect(db.Pool, nil)
	// launch launches batches of roots rows and returns the last batch.
	launch := func(owner uuid.UUID, prefix string, batches, roots int) (uuid.UUID, error) {
		id, _ := ids.Identity(ctx, owner)
		var launched struct {
			BatchID uuid.UUID `json:"batch_id"`
		}
		for range batches {
			rows := make([]map[string]any, roots)
			for j := range rows {
				rows[j] = map[string]any{"n": j}
			}
			if err := direct.RPC(ctx, id, "launch_batch", map[string]any{"p_template_id": prefix + "p1", "p_rows": rows}, &launched); err != nil {
				return uuid.Nil, fmt.Errorf("error launching the pipeline: %w", err)
			}
		}
		return launched.BatchID, nil
	}
	work := func(n int) error {
		eng := newEngine(db.Pool, gen, engineConfig{Workers: 100, ClaimBatch: e.o.ClaimBatch, DBCalls: e.o.DBCalls, Linger: e.o.Linger, WriteQueue: e.o.WriteQueue, Listen: true}, e.log)
		eng.run(ctx)
		err := eng.waitFinished(ctx, int64(n), 30*time.Second)
		eng.stop(ctx)
		return err
	}
	for _, o := range []struct {
		owner  uuid.UUID
		prefix string
	}{{oldOwner, "old-"}, {newOwner, "new-"}} {
		if err := createPipelineTemplates(ctx, db, o.owner, o.prefix); err != nil {
			return fresh, old, err
		}
	}
	// Other tenants' templates, one per finished batch (a project's
	// prompt_templates holds every tenant's pipelines): a read of templates
	// that is not by id reads them.
	others, err := createUser(ctx, db.Pool)
	if err != nil {
		return fresh, old, err
	}
	if _, err := db.Pool.Exec(ctx, `insert into public.prompt_templates (id, template, stage_key, stage_config, next_stage_template_ids, user_id)
		select 'other-' || n, 'Another tenant''s stage.', 's' || n % 4, '{}', '[]', $1 from generate_series(1, $2::int) n`, others, batches); err != nil {
		return fresh, old, fmt.Errorf("error creating other tenants' templates: %w", err)
	}

	// The old owner's history: historySeedBatches batches run by the
	// engine, then copied (new ids, each copy an hour older) until there
	// are batches of them.
	seed := min(historySeedBatches, batches)
	if _, err := launch(oldOwner, "old-", seed, 1); err != nil {
		return fresh, old, err
	}
	if err := warmEngineConns(ctx, db.Pool); err != nil {
		return fresh, old, err
	}
	if err := work(seed * 13); err != nil {
		return fresh, old, fmt.Errorf("the old owner's first batches: %w", err)
	}
	if err := copyHistory(ctx, db, oldOwner, (batches+seed-1)/seed-1); err != nil {
		return fresh, old, err
	}
	var have, tasks int
	if err := db.Pool.QueryRow(ctx, "select (select count(*) from public.task_batches where created_by = $1), (select count(*) from public.ai_tasks where user_id = $1)",
		oldOwner).Scan(&have, &tasks); err != nil {
		return fresh, old, fmt.Errorf("error counting the history: %w", err)
	}
	if have < batches || tasks < have*13 {
		return fresh, old, fmt.Errorf("the history has %d batches and %d tasks, want %d and 13 each", have, tasks, batches)
	}
	e.log.Info("bench: an owner's history", "batches", have, "tasks", tasks)

	measure := func(owner uuid.UUID, prefix string) (historyResult, error) {
		out := historyResult{tasks: roots * 13}
		batch, err := launch(owner, prefix, 1, roots)
		if err != nil {
			return out, err
		}
		if err := foldCounters(ctx, db); err != nil {
			return out, err
		}
		if err := vacuumAnalyze(ctx, db.Pool, "public.ai_tasks", "public.task_batches", "public.task_batch_counter_deltas", "public.prompt_templates"); err != nil {
			return out, err
		}
		m, err := e.startCost(ctx, db)
		if err != nil {
			return out, err
		}
		if err := work(out.tasks); err != nil {
			return out, err
		}
		if out.cost, err = m.stop(ctx); err != nil {
			return out, err
		}
		var merged int
		if err := db.Pool.QueryRow(ctx, "select count(*) from public.ai_tasks where batch_id = $1 and stage_key = 'p4' and status = 'completed'",
			batch).Scan(&merged); err != nil {
			return out, fmt.Errorf("error counting merges: %w", err)
		}
		if merged != roots {
			return out, fmt.Errorf("%d merges completed in the window's batch, want %d", merged, roots)
		}
		return out, nil
	}
	if fresh, err = measure(newOwner, "new-"); err != nil {
		return fresh, old, fmt.Errorf("the new owner's batch: %w", err)
	}
	if old, err = measure(oldOwner, "old-"); err != nil {
		return fresh, old, fmt.Errorf("the old owner's batch: %w", err)
	}
	return fresh, old, nil
}

// createPipelineTemplates creates throughput-pipeline's four stages
// (p1 → p2 1:1 → p3 1:N(10) → p4 N:1, isolated) for owner, their ids
// prefixed (template ids are global).
func createPipelineTemplates(ctx context.Context, db *database, owner uuid.UUID, prefix string) error {
	const itemsSchema = `{"type":"object","properties":{"items":{"type":"array","minItems":10,"maxItems":10,"items":{"type":"integer"}}},"required":["items"]}`
	return createTemplates(ctx, db.Pool, owner,
		stageDef{ID: prefix + "p1", Key: "p1", Prompt: "Stage one of row %%input.n%%.", Next: []string{prefix + "p2"}, OutputSchema: itemsSchema},
		stageDef{ID: prefix + "p2", Key: "p2", Prompt: "Stage two.", Config: map[string]any{"cardinality": "1:1"}, Next: []string{prefix + "p3"}, OutputSchema: itemsSchema},
		stageDef{ID: prefix + "p3", Key: "p3", Prompt: "Item %%input.item%%.", Config: map[string]any{"cardinality": "1:N", "split_path": "items"}, Next: []string{prefix + "p4"}, OutputSchema: noopSchema},
		stageDef{ID: prefix + "p4", Key: "p4", Prompt: "Merge.", Config: map[string]any{"cardinality": "N:1", "batch_grouping": "isolated"}, OutputSchema: noopSchema},
	)
}

// copyHistory copies the owner's batches and tasks rounds times, each copy
// with new ids (every reference between them mapped alike) and an hour
// older per round, as if the owner had run them before.
func copyHistory(ctx context.Context, db *database, owner uuid.UUID, rounds int) error {
	if rounds < 1 {
		return nil
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error copying the history: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Engine mode: the references are the copies' own, by construction.
	for _, q := range []struct {
		sql  string
		args bool
	}{
		{sql: "select set_config('orchable.engine', 'on', true)"},
		{sql: `create function pg_temp.hist(id uuid, k int) returns uuid language sql immutable
			as $$ select case when id is null then null else md5(id::text || ':' || k)::uuid end $$`},
		{args: true, sql: `insert into public.task_batches (id, name, status, created_by, launch_id, config, batch_type, global_context,
			created_at, started_at, completed_at, updated_at)
		select pg_temp.hist(b.id, k), b.name, b.status, b.created_by, pg_temp.hist(b.launch_id, k), b.config, b.batch_type, b.global_context,
			b.created_at - k * interval '1 hour', b.started_at - k * interval '1 hour', b.completed_at - k * interval '1 hour', b.updated_at
		from public.task_batches b, generate_series(1, $2::int) k where b.created_by = $1`},
		{args: true, sql: `insert into public.ai_tasks (id, task_type, status, input_data, output_data, user_id, created_at, started_at, completed_at,
			updated_at, batch_id, sequence, parent_task_id, step_number, prompt_template_id, root_task_id, hierarchy_path, stage_key,
			extra, split_group_id, launch_id, attempts, run_after, model_id, prompt_token_count, candidates_token_count, total_token_count)
		select pg_temp.hist(t.id, k), t.task_type, t.status, t.input_data, t.output_data, t.user_id, t.created_at - k * interval '1 hour',
			t.started_at - k * interval '1 hour', t.completed_at - k * interval '1 hour', t.updated_at, pg_temp.hist(t.batch_id, k),
			t.sequence, pg_temp.hist(t.parent_task_id, k), t.step_number, t.prompt_template_id, pg_temp.hist(t.root_task_id, k),
			t.hierarchy_path, t.stage_key, t.extra, pg_temp.hist(t.split_group_id, k), pg_temp.hist(t.launch_id, k), t.attempts,
			t.run_after - k * interval '1 hour', t.model_id, t.prompt_token_count, t.candidates_token_count, t.total_token_count
		from public.ai_tasks t, generate_series(1, $2::int) k where t.user_id = $1`},
	} {
		var args []any
		if q.args {
			args = []any{owner, rounds}
		}
		if _, err := tx.Exec(ctx, q.sql, args...); err != nil {
			return fmt.Errorf("error copying the history: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error copying the history: %w", err)
	}
	return foldCounters(ctx, db)
}

// historyFigures compares the old owner's window with the new owner's, per
// pipeline task, with the rows read per table.
func historyFigures(batches int, fresh, old historyResult) []Figure {
	label := fmt.Sprintf("an owner with %d finished batches behind it", batches)
	const base = "a new owner"
	per := func(r historyResult, v float64) float64 { return perTask(v, r.tasks) }
	rd := func(r historyResult, keep func(string) bool) float64 {
		t := r.cost.sum(keep)
		return per(r, float64(t.SeqRead+t.IdxFetch))
	}
	figs := []Figure{
		{Name: fmt.Sprintf("%s: wall time/pipeline task (%d tasks)", label, old.tasks), Unit: "ms", Value: per(old, ms(old.cost.Wall)), Baseline: per(fresh, ms(fresh.cost.Wall)), BaselineName: base},
		{Name: "  DB CPU/task", Unit: "ms", Note: old.cost.CPUNA, Value: per(old, ms(old.cost.DBCPU)), Baseline: per(fresh, ms(fresh.cost.DBCPU)), BaselineName: base},
		{Name: "  rows read/task (seq + index fetches), all tables", Unit: "rows", Value: rd(old, allTables), Baseline: rd(fresh, allTables), BaselineName: base},
	}
	// Per table, at fixed positions (medians line up across runs).
	for _, t := range []string{"ai_tasks", "task_batches", "prompt_templates"} {
		figs = append(figs, Figure{
			Name: "    of " + t, Unit: "rows", Value: rd(old, func(n string) bool { return n == t }),
			Baseline: rd(fresh, func(n string) bool { return n == t }), BaselineName: base,
		})
	}
	isNamed := func(n string) bool { return n == "ai_tasks" || n == "task_batches" || n == "prompt_templates" }
	figs = append(figs,
		Figure{Name: "    of the other tables", Unit: "rows", Value: rd(old, func(n string) bool { return !isNamed(n) }), Baseline: rd(fresh, func(n string) bool { return !isNamed(n) }), BaselineName: base},
		Figure{
			Name: "    of them by sequential scans (they grow with the table, not the owner)", Unit: "rows",
			Value: per(old, float64(old.cost.sum(allTables).SeqRead)), Baseline: per(fresh, float64(fresh.cost.sum(allTables).SeqRead)), BaselineName: base,
		},
		Figure{Name: "  index entries read/task (index scans)", Unit: "entries", Value: per(old, float64(old.cost.sum(allTables).IdxRead)), Baseline: per(fresh, float64(fresh.cost.sum(allTables).IdxRead)), BaselineName: base},
		Figure{Name: "  shared buffers found/task (tables and indexes)", Unit: "blocks", Value: per(old, float64(old.cost.sum(allTables).BlksHit)), Baseline: per(fresh, float64(fresh.cost.sum(allTables).BlksHit)), BaselineName: base},
		Figure{Name: "  noise: other DBs' sessions active, % of samples", Unit: "%", Value: 100 * old.cost.BusyOther},
	)
	return figs
}
