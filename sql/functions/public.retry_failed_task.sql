create or replace function public.retry_failed_task(p_task_id uuid) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  prev_plan_mode text;
  prev_sort text;
  t public.ai_tasks;
  uid uuid := orchable.require_user('retry_failed_task');
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
  if t.status not in ('failed', 'cancelled', 'completed', 'generated') then
    raise exception using errcode = 'PT409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, t.status);
  end if;
  perform orchable.reset_task(t);
end
$$;
