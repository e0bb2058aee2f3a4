-- Folds pending deltas into task_batches and moves batch status. Called by the
-- service's sweeper (service_role) every few hundred milliseconds; safe to
-- call concurrently (one folder at a time, the others return 0).
create or replace function public.fold_batch_counters() returns integer
  language plpgsql
  set search_path = ''
  set jit = off
as $$
declare
  n integer;
begin
  if not pg_try_advisory_xact_lock(hashtext('orchable.fold_batch_counters')) then
    return 0;
  end if;
  perform set_config('orchable.folding', 'on', true);
  with moved as (
    delete from public.task_batch_counter_deltas returning *
  ), sums as (
    select batch_id, sum(d_total) t, sum(d_pending) p, sum(d_processing) r, sum(d_completed) c, sum(d_failed) f
    from moved group by batch_id
  ), upd as (
    update public.task_batches b set
      total_tasks = b.total_tasks + s.t,
      pending_tasks = b.pending_tasks + s.p,
      processing_tasks = b.processing_tasks + s.r,
      completed_tasks = b.completed_tasks + s.c,
      failed_tasks = b.failed_tasks + s.f,
      finished_tasks = b.completed_tasks + s.c + b.failed_tasks + s.f,
      started_at = coalesce(b.started_at, case when s.r > 0 or s.c > 0 or s.f > 0 then now() end),
      status = case
        when b.status in ('paused', 'cancelled') then b.status
        when b.total_tasks + s.t > 0 and b.pending_tasks + s.p = 0 and b.processing_tasks + s.r = 0 then
          case when b.failed_tasks + s.f > 0 then 'failed' else 'completed' end
        when b.processing_tasks + s.r > 0 or b.completed_tasks + s.c > 0 or b.failed_tasks + s.f > 0 then 'processing'
        else b.status end,
      completed_at = case
        when b.status not in ('paused', 'cancelled')
         and b.total_tasks + s.t > 0 and b.pending_tasks + s.p = 0 and b.processing_tasks + s.r = 0
          then coalesce(b.completed_at, now())
        when b.status = 'cancelled' then coalesce(b.completed_at, now())
        else null end
    from sums s
    where b.id = s.batch_id
      -- The same condition again, as an array: it makes the batches to fold
      -- an index condition. Without it, once there were a few hundred
      -- deltas the planner hashed them and read task_batches in full, every
      -- batch of every tenant ever launched, on every fold.
      and b.id = any (array(select s2.batch_id from sums s2))
    returning 1
  )
  select count(*) into n from upd;
  perform set_config('orchable.folding', 'off', true);
  return n;
end
$$;
