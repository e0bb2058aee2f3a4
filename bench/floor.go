package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The floor: what ai_tasks itself costs as a queue, whatever engine drives it.
//
// A floor run works the same pre-inserted tasks as an orchable run, River's
// way and with nothing of orchable's engine: one claim in flight (a single
// UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) of up to every free
// slot), no-op work that frees its slot at once, and one completion in flight
// (a single set-based UPDATE of every task worked since the last one). Each
// call is one transaction in one round trip, as the owner under RLS with the
// engine's setting on, the way every engine call must run (SPEC §14); the
// table's row triggers, foreign keys, policies and indexes all run. The
// columns written are the ones the state machine needs and the engine's
// calls write (status, lease, attempts, started_at / output, completed_at,
// updated_at), so the BEFORE trigger's WHEN skips these writes as it skips
// the engine's.
//
// Left out, on purpose: everything an engine adds on top of the table (the
// SQL API's entry checks, templates and run context, output validation,
// barrier checks, the model stand-in, prompt rendering). So no engine that
// keeps ai_tasks as the queue, and its status as the front end and Realtime
// read it, can do this work for less database CPU than a floor run, nor
// (on the same cores) faster: it is the ceiling that throughput-noop's and
// throughput-pipeline's goals are measured against in docs/performance.md.
//
// With chain > 1 the tasks are launched roots of a batch, and each
// completion of a task above the chain's last step inserts its successor in
// the same statement (ON CONFLICT on the idempotency key, as every child the
// engine makes is inserted): chain tasks per root, all but the root inserted
// inside the window, as in throughput-pipeline (13 per root). It is a lower
// bound for a pipeline task: a 1:1 chain has no split and no merge.

// floorClaimSQL claims up to $3 of the owner's due tasks in queue order.
const floorClaimSQL = `update public.ai_tasks t
set status = 'processing', locked_until = now() + interval '300 seconds', locked_by = $2,
    attempts = t.attempts + 1, started_at = now(), updated_at = now()
where t.id in (
  select q.id from public.ai_tasks q
  where q.user_id = $1 and q.status = 'plan' and q.run_after <= now()
  order by q.run_after, q.id
  limit $3
  for update skip locked)
returning t.id`

// floorCompleteSQL completes the worked tasks $1 (still leased to $2) and,
// for those before step $3, inserts each one's successor; it returns how many
// it completed.
const floorCompleteSQL = `with done as (
  update public.ai_tasks t
  set status = 'completed', output_data = '{"ok": true}'::jsonb, error_message = null, completed_at = now(),
      locked_until = null, locked_by = null, updated_at = now()
  where t.id = any($1) and t.status = 'processing' and t.locked_by = $2
  returning t.id, t.user_id, t.task_type, t.input_data, t.output_data, t.step_number, t.stage_key,
            t.prompt_template_id, t.batch_id, t.launch_id, t.root_task_id, t.hierarchy_path
), next as (
  insert into public.ai_tasks (id, user_id, task_type, status, input_data, step_number, stage_key, prompt_template_id,
    batch_id, launch_id, root_task_id, parent_task_id, hierarchy_path, idempotency_key, run_after, updated_at)
  select gen_random_uuid(), d.user_id, d.task_type, 'plan', d.input_data || d.output_data, d.step_number + 1, d.stage_key,
         d.prompt_template_id, d.batch_id, d.launch_id, d.root_task_id, d.id, d.hierarchy_path || to_jsonb(d.id::text),
         'next/' || d.id::text, now(), now()
  from done d
  where d.step_number < $3
  on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing
)
select count(*) from done`

// floorQueue is one floor run's queue loop.
type floorQueue struct {
	pool    *pgxpool.Pool
	user    uuid.UUID
	claims  string // the owner's JWT claims
	worker  string
	workers int
	chain   int
	trips   atomic.Int64
}

// floorRunQueue works n tasks (chain per root when chain > 1: roots = n /
// chain) through the floor loop and returns tasks/s, round trips per task
// and, metered, what the work cost the database.
func floorRunQueue(ctx context.Context, e *env, n, workers, chain int) (orchRun, error) {
	var out orchRun
	roots, total := n, 0
	if chain > 1 {
		roots = n / chain
		n, total = roots*chain, roots
	}
	db, user, err := noopQueue(ctx, e, roots, total)
	if err != nil {
		return out, err
	}
	defer db.close()
	id, err := newClaimsIdentity().Identity(ctx, user)
	if err != nil {
		return out, err
	}
	q := &floorQueue{pool: db.Pool, user: user, claims: string(id.Claims), worker: "floor", workers: workers, chain: max(chain, 1)}
	if err := foldCounters(ctx, db); err != nil {
		return out, err
	}
	m, err := e.startCost(ctx, db)
	if err != nil {
		return out, err
	}
	start := time.Now()
	err = q.run(ctx, n)
	elapsed := time.Since(start)
	if err != nil {
		return out, fmt.Errorf("floor, %d workers, chain %d: %w", workers, chain, err)
	}
	c, err := m.stop(ctx)
	if err != nil {
		return out, err
	}
	var completed int
	if err := db.Pool.QueryRow(ctx, "select count(*) from public.ai_tasks where status = 'completed'").Scan(&completed); err != nil {
		return out, fmt.Errorf("error counting completed tasks: %w", err)
	}
	if completed != n {
		return out, fmt.Errorf("floor, %d workers, chain %d: %d tasks completed, want %d", workers, chain, completed, n)
	}
	out.cost = &c
	out.rate = float64(n) / elapsed.Seconds()
	out.trips = float64(q.trips.Load()) / float64(n)
	return out, nil
}

// run claims, works and completes until n tasks are completed.
func (q *floorQueue) run(ctx context.Context, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, q.workers)
	for range q.workers {
		slots <- struct{}{}
	}
	worked := make(chan uuid.UUID, n)
	more := make(chan struct{}, 1) // the completer inserted successors
	var completed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := q.completeLoop(ctx, n, worked, more, &completed); err != nil {
			cancel(err)
		}
	})
	defer wg.Wait()
	claimed := 0
	for claimed < n {
		select {
		case <-slots:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		k := 1
	fill:
		for k < maxFloorClaim {
			select {
			case <-slots:
				k++
			default:
				break fill
			}
		}
		ids, err := q.claim(ctx, k)
		if err != nil {
			cancel(err)
			return err
		}
		claimed += len(ids)
		// The work is a no-op: each slot is free again at once, and the
		// task waits for the completer (River's async completion).
		for range k {
			slots <- struct{}{}
		}
		for _, id := range ids {
			worked <- id
		}
		if len(ids) == 0 {
			// Wait for successors, as River waits for a notification or its
			// poll interval.
			select {
			case <-more:
			case <-time.After(riverFetchPollInterval):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// maxFloorClaim bounds one claim, as claim_tasks' p_limit is bounded.
const maxFloorClaim = 1000

// completeLoop writes the worked tasks' completions, one set-based UPDATE
// of everything worked since the last at a time, until n are completed.
func (q *floorQueue) completeLoop(ctx context.Context, n int, worked <-chan uuid.UUID, more chan<- struct{}, completed *atomic.Int64) error {
	batch := make([]uuid.UUID, 0, 5000)
	for completed.Load() < int64(n) {
		batch = batch[:0]
		select {
		case id := <-worked:
			batch = append(batch, id)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case id := <-worked:
				batch = append(batch, id)
			default:
				break drain
			}
		}
		var c int64
		if err := q.tx(ctx, func(b *pgx.Batch) {
			b.Queue(floorCompleteSQL, batch, q.worker, q.chain).QueryRow(func(row pgx.Row) error { return row.Scan(&c) })
		}); err != nil {
			return fmt.Errorf("error completing %d tasks: %w", len(batch), err)
		}
		if c != int64(len(batch)) {
			return fmt.Errorf("completed %d of %d worked tasks", c, len(batch))
		}
		completed.Add(c)
		if q.chain > 1 {
			select {
			case more <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// claim claims up to k tasks.
func (q *floorQueue) claim(ctx context.Context, k int) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := q.tx(ctx, func(b *pgx.Batch) {
		b.Queue(floorClaimSQL, q.user, q.worker, k).Query(func(rows pgx.Rows) error {
			var err error
			ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("error claiming %d tasks: %w", k, err)
	}
	return ids, nil
}

// tx runs the statement queue adds in one transaction as the owner, in one
// round trip: begin, the identity and the engine's setting, the statement,
// commit (what the direct transport sends for an engine call, less
// PostgREST's request settings).
func (q *floorQueue) tx(ctx context.Context, queue func(*pgx.Batch)) error {
	b := &pgx.Batch{}
	b.Queue("begin isolation level read committed read write")
	b.Queue("select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true), set_config('orchable.engine', 'on', true)", q.claims)
	queue(b)
	b.Queue("commit")
	q.trips.Add(1)
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	err = conn.SendBatch(ctx, b).Close()
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
		_, rerr := conn.Exec(context.WithoutCancel(ctx), "rollback")
		err = errors.Join(err, rerr)
	}
	return err
}

// floorFigures are a floor run's figures at one worker count: its rate
// against River's, orchable's rate against it, and what a task cost the
// database and the client (the floor loop) against River's job.
func floorFigures(label string, n int, floor, orch orchRun, base riverRun) []Figure {
	var rc dbCost
	if base.cost != nil {
		rc = *base.cost
	}
	fc := *floor.cost
	return []Figure{
		{Name: "floor tasks/s (ai_tasks alone, River's way), " + label, Unit: "tasks/s", Value: floor.rate,
			Baseline: base.rate, BaselineName: "River jobs/s", HigherIsBetter: true, Note: "the most any engine on ai_tasks reaches here"},
		{Name: "orchable tasks/s against the floor, " + label, Unit: "tasks/s", Value: orch.rate,
			Baseline: floor.rate, BaselineName: "floor tasks/s", HigherIsBetter: true},
		{Name: "floor DB CPU/task, bench DB backends, " + label, Unit: "ms", Note: fc.CPUNA,
			Value: ms(fc.DBCPU) / float64(n), Baseline: ms(rc.DBCPU) / float64(n), BaselineName: "River per job"},
		{Name: "floor page faults/task, bench DB backends, " + label, Unit: "faults", Note: fc.CPUNA,
			Value: perTask(float64(fc.DBFaults), n), Baseline: perTask(float64(rc.DBFaults), n), BaselineName: "River per job"},
		{Name: "floor bench process CPU/task (the floor loop; River's client), " + label, Unit: "µs",
			Value: 1000 * ms(fc.ProcCPU) / float64(n), Baseline: 1000 * ms(rc.ProcCPU) / float64(n), BaselineName: "River per job"},
		{Name: "floor WAL/task, bench DB's records (pg_waldump), " + label, Unit: "bytes", Note: fc.WALNA,
			Value: perTask(float64(fc.DBWAL.Total), n), Baseline: perTask(float64(rc.DBWAL.Total), n), BaselineName: "River per job"},
		{Name: "floor round trips/task, " + label, Unit: "trips", Value: floor.trips},
	}
}
