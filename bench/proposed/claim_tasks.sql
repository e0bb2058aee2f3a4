-- PROPOSED change to public.claim_tasks (migrations/20261126000300_sql_api.sql),
-- applied only to the benchmark's databases with `go run . -proposed …`.
-- The one change is in the cand CTE: the paused/cancelled/delayed-batch check
-- is a correlated scalar subquery instead of NOT EXISTS. As NOT EXISTS the
-- planner turns it into an anti-join, estimates that it removes almost every
-- row (all tasks point at one batch), so it expects ~1 candidate and picks
-- "scan every due task of the user, sort, lock 10": 30 ms at 30k due tasks,
-- 60+ ms under load, O(due tasks). As a scalar filter it keeps its default
-- selectivity and the planner walks ai_tasks_runnable_idx in order and stops
-- after p_limit rows: 0.2-0.6 ms, independent of the queue's length.
create or replace function public.claim_tasks(
  p_worker text,
  p_lease_seconds integer default 300,
  p_limit integer default 1,
  p_task_ids uuid[] default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  out jsonb;
begin
  if p_worker is null or p_worker = '' then
    raise exception using errcode = '22023', message = 'p_worker is required';
  end if;
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = '22023', message = 'p_limit must be between 1 and 1000';
  end if;

  with cand as (
    select t.id
    from public.ai_tasks t
    where t.status = 'plan'
      and t.run_after <= now()
      and (p_task_ids is null or t.id = any(p_task_ids))
      and (t.batch_id is null or not coalesce((
        select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
        from public.task_batches b where b.id = t.batch_id), false))
    order by t.run_after, t.id
    limit p_limit
    for update of t skip locked
  ), delayed as (
    -- Batches with execution_delay_seconds: one start per delay interval.
    select t.id, b.id as batch_id, b.execution_delay_seconds
    from public.task_batches b
    cross join lateral (
      select t.id from public.ai_tasks t
      where t.batch_id = b.id and t.status = 'plan' and t.run_after <= now()
        and (p_task_ids is null or t.id = any(p_task_ids))
      order by t.run_after, t.id
      limit 1
      for update of t skip locked
    ) t
    where b.execution_delay_seconds > 0
      and b.status not in ('paused', 'cancelled')
      and (b.next_start_at is null or b.next_start_at <= now())
      and b.id in (select x.batch_id from public.ai_tasks x
                   where x.status = 'plan' and x.run_after <= now() and x.batch_id is not null
                     and (p_task_ids is null or x.id = any(p_task_ids)))
    limit greatest(p_limit - (select count(*) from cand), 0)
  ), spaced as (
    -- Re-checked under the row lock: of two concurrent claimers only the
    -- first starts a task of a delayed batch.
    update public.task_batches b
    set next_start_at = now() + make_interval(secs => d.execution_delay_seconds)
    from delayed d
    where b.id = d.batch_id and (b.next_start_at is null or b.next_start_at <= now())
    returning b.id
  ), picked as (
    select id from cand
    union all
    select d.id from delayed d join spaced s on s.id = d.batch_id
  ), upd as (
    update public.ai_tasks t
    set status = 'processing',
        locked_until = now() + make_interval(secs => p_lease_seconds),
        locked_by = p_worker,
        attempts = t.attempts + 1,
        started_at = now()
    from picked
    where t.id = picked.id
    returning t.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'task', to_jsonb(u),
    'template', (select to_jsonb(p) from public.prompt_templates p where p.id = u.prompt_template_id),
    'batch', (select jsonb_build_object('id', b.id, 'name', b.name, 'status', b.status, 'global_context', b.global_context,
                                        'execution_delay_seconds', b.execution_delay_seconds, 'launch_id', b.launch_id)
              from public.task_batches b where b.id = u.batch_id)
  )), '[]'::jsonb)
  into out
  from upd u;
  return out;
end
$$;
