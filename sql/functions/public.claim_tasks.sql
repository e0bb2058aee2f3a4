-- The SQL API as the task's owner (SPEC §14; docs/threat-model.md). Same
-- signatures and results as 20261126000300_sql_api.sql, plus:
--   * every function that runs engine logic requires a signed-in caller
--     (auth.uid()), scopes every row it touches to that caller, and marks
--     its writes as engine writes (orchable.engine_on), so the row trigger
--     lets it set lease, attempts, idempotency key and approved_by;
--   * claim_tasks returns the template only when the owner may use it;
--   * completions record in extra what the runner reports (hooks of a
--     foreign template ignored);
--   * requeue_expired_leases (service_role) only flips leases: tasks that
--     ran out of attempts are named by owner and given up by
--     fail_expired_tasks as that owner (barrier re-check included).

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
  uid uuid := orchable.require_user('claim_tasks');
begin
  perform orchable.engine_on();
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
      and t.user_id = uid
      and t.run_after <= now()
      and (p_task_ids is null or t.id = any(p_task_ids))
      -- A scalar filter, not NOT EXISTS: as an anti-join the planner assumed
      -- it removed almost every row and sorted the whole queue (O(queue));
      -- this way it walks the runnable index in order and stops at p_limit.
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
      where t.batch_id = b.id and t.user_id = uid and t.status = 'plan' and t.run_after <= now()
        and (p_task_ids is null or t.id = any(p_task_ids))
      order by t.run_after, t.id
      limit 1
      for update of t skip locked
    ) t
    where b.execution_delay_seconds > 0
      and b.created_by = uid
      and b.status not in ('paused', 'cancelled')
      and (b.next_start_at is null or b.next_start_at <= now())
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
    -- Only a template the owner may use (own, public, or of a published
    -- pipeline); written out rather than a function call per claimed row.
    'template', (select to_jsonb(p) from public.prompt_templates p
                 where p.id = u.prompt_template_id
                   and (p.user_id = uid or p.is_public or exists (
                     select 1 from public.lab_orchestrator_configs c
                     where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code))),
    'batch', (select jsonb_build_object('id', b.id, 'name', b.name, 'status', b.status, 'global_context', b.global_context,
                                        'execution_delay_seconds', b.execution_delay_seconds, 'launch_id', b.launch_id)
              from public.task_batches b where b.id = u.batch_id)
  )), '[]'::jsonb)
  into out
  from upd u;
  return out;
end
$$;
