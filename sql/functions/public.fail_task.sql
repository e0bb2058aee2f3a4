------------------------------------------------------------------------------
-- fail_task: record a failure. With p_retry_at and not p_permanent the task
-- goes back to plan (run_after = p_retry_at); otherwise it fails for good and
-- barriers downstream are re-checked (a failed parent does not block a merge).
------------------------------------------------------------------------------
create or replace function public.fail_task(
  p_task_id uuid,
  p_worker text,
  p_error text,
  p_retry_at timestamptz default null,
  p_permanent boolean default true
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  prev_plan_mode text;
  prev_sort text;
  t public.ai_tasks;
  uid uuid := orchable.require_user('fail_task');
begin
  perform orchable.engine_on();
  -- By primary key, with a plan made once per connection that can only be
  -- the primary key: the id as an array, walked in id order with sorts
  -- disabled (no other index gives that order; a FOR UPDATE SELECT runs no
  -- other SQL). As a plain lookup (id = p_task_id and user_id = uid) the
  -- planner could walk the owner's user_id index instead when it expects
  -- one row of theirs there (an owner the statistics have not seen, or an
  -- average owner with a generic plan): TestCompletePlanForEveryTenant,
  -- TestBarrierReadsOnlyItsScope.
  prev_plan_mode := current_setting('plan_cache_mode');
  prev_sort := current_setting('enable_sort');
  perform set_config('plan_cache_mode', 'force_generic_plan', true),
          set_config('enable_sort', 'off', true);
  select * into t from public.ai_tasks
  where id = any(array[p_task_id]) and user_id = uid
  order by id
  for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  -- Restored after FOUND is read (PERFORM sets FOUND); the error above
  -- rolls the settings back with its transaction or savepoint.
  perform set_config('plan_cache_mode', prev_plan_mode, true),
          set_config('enable_sort', prev_sort, true);
  if t.status in ('failed', 'plan', 'cancelled') and t.locked_by is null and t.error_message is not distinct from p_error then
    return jsonb_build_object('status', t.status, 'duplicate', true);
  end if;
  if t.status <> 'processing' or t.locked_by is distinct from p_worker then
    raise exception using errcode = 'PT409',
      message = format('task %s is %s, not processing under worker %s', p_task_id, t.status, p_worker);
  end if;
  if coalesce(p_error, '') = '' then
    raise exception using errcode = '22023', message = 'p_error is required';
  end if;

  if not coalesce(p_permanent, true) and p_retry_at is not null then
    -- A task of a cancelled batch is not rescheduled.
    if exists (select 1 from public.task_batches b where b.id = t.batch_id and b.created_by = uid and b.status = 'cancelled') then
      update public.ai_tasks set status = 'cancelled', error_message = p_error, retry_count = retry_count + 1,
        completed_at = now()
      where id = p_task_id;
      return jsonb_build_object('status', 'cancelled');
    end if;
    update public.ai_tasks set status = 'plan', run_after = p_retry_at, error_message = p_error,
      retry_count = retry_count + 1
    where id = p_task_id;
    return jsonb_build_object('status', 'plan', 'run_after', p_retry_at);
  end if;

  update public.ai_tasks set status = 'failed', error_message = p_error, retry_count = retry_count + 1,
    completed_at = now()
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;
