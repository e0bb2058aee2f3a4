create or replace function public.release_task(p_task_id uuid, p_worker text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
  tid_ tid;
  prev_plan_mode constant text := current_setting('plan_cache_mode');
  prev_sort constant text := current_setting('enable_sort');
  uid uuid := orchable.require_user('release_task');
begin
  perform orchable.engine_on();
  -- The task's row version by primary key, locked (the id as an array, in id order,
  -- sorts disabled: a plan that can only be the primary key; a SELECT runs
  -- no other SQL), then the UPDATE by it (one TID: cheaper than any index).
  -- By id and owner in one statement, the planner could walk the owner's
  -- whole user_id index (orchable.complete_one).
  perform set_config('plan_cache_mode', 'force_generic_plan', true),
          set_config('enable_sort', 'off', true);
  select t.ctid into tid_ from public.ai_tasks t
  where t.id = any(array[p_task_id]) and t.user_id = uid
  order by t.id
  for update;
  perform set_config('plan_cache_mode', prev_plan_mode, true),
          set_config('enable_sort', prev_sort, true);
  update public.ai_tasks set status = 'plan', run_after = now(), attempts = greatest(attempts - 1, 0)
  where ctid = tid_ and id = p_task_id and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return jsonb_build_object('released', n = 1);
end
$$;
