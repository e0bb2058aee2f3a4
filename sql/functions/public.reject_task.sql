create or replace function public.reject_task(
  p_task_id uuid,
  p_reason text,
  p_regenerate boolean default false
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  prev_plan_mode text;
  prev_sort text;
  t public.ai_tasks;
  uid uuid := orchable.require_user('reject_task');
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
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  if coalesce(p_regenerate, false) then
    -- Regenerate with the reviewer's notes (the runner adds extra.reviewer_notes to the prompt).
    update public.ai_tasks set status = 'plan', run_after = now(), output_data = null, completed_at = null,
      attempts = 0, error_message = null,
      extra = extra || jsonb_build_object('reviewer_notes', p_reason, 'rejected_output', t.output_data)
    where id = p_task_id;
    return jsonb_build_object('status', 'plan');
  end if;
  update public.ai_tasks set status = 'failed', error_message = 'rejected by reviewer: ' || coalesce(p_reason, '(no reason)'),
    completed_at = now(), edit_notes = p_reason
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;
