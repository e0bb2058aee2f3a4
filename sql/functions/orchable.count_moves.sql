-- count_moves counts the status change of many of the caller's tasks at
-- once: one delta row per batch, where the row trigger
-- (ai_tasks_count_update) writes one per task. claim_tasks and
-- complete_tasks make their set-based updates with the transaction-local
-- setting orchable.counting = 'deferred', which the trigger's WHEN skips,
-- and then call this with the batch of every task they moved (NULL for a
-- task in no batch), all from p_from to p_to. Only the caller's own batches
-- are counted: row level security keeps every task of a user in that
-- user's batches, so a caller can never add to another tenant's counters.
-- Returns the number of delta rows written.
create or replace function orchable.count_moves(p_batches uuid[], p_from public.ai_task_status, p_to public.ai_task_status) returns integer
  language plpgsql volatile
  security definer
  set search_path = ''
as $$
declare
  uid uuid := auth.uid();
  ob text;
  nb text;
  n integer;
begin
  if p_batches is null or cardinality(p_batches) = 0 then
    return 0;
  end if;
  ob := public.task_status_bucket(p_from);
  nb := public.task_status_bucket(p_to);
  if ob = nb then
    return 0;
  end if;
  insert into public.task_batch_counter_deltas (batch_id, user_id, d_total, d_pending, d_processing, d_completed, d_failed)
  select m.batch_id, uid, 0,
         m.n * ((nb = 'pending')::int - (ob = 'pending')::int),
         m.n * ((nb = 'processing')::int - (ob = 'processing')::int),
         m.n * ((nb = 'completed')::int - (ob = 'completed')::int),
         m.n * ((nb = 'failed')::int - (ob = 'failed')::int)
  from (select x as batch_id, count(*)::int as n from unnest(p_batches) x where x is not null group by x) m
  -- The owner of each batch by its primary key, as a subplan run once per
  -- batch. As a join, a call with many tasks (the plan made for its array's
  -- length) had the planner hash every batch of the caller, or of every
  -- tenant, for the few it moved: task_batches keeps a row per launch ever.
  where (select b.created_by from public.task_batches b where b.id = m.batch_id) = uid;
  get diagnostics n = row_count;
  return n;
end
$$;
