------------------------------------------------------------------------------
-- renew_leases / release_task: lease upkeep for long model calls and for a
-- graceful shutdown (the task goes back to plan; the attempt is not counted).
------------------------------------------------------------------------------
create or replace function public.renew_leases(p_task_ids uuid[], p_worker text, p_lease_seconds integer default 300)
  returns integer
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  n int;
  tids tid[];
  -- This transaction had written nothing when the call began.
  fresh constant boolean := pg_current_xact_id_if_assigned() is null;
  -- The planner settings changed for one statement at a time, as the
  -- caller had them.
  prev_plan_mode constant text := current_setting('plan_cache_mode');
  prev_sort constant text := current_setting('enable_sort');
  prev_incremental_sort constant text := current_setting('enable_incremental_sort');
  prev_indexscan constant text := current_setting('enable_indexscan');
  prev_bitmapscan constant text := current_setting('enable_bitmapscan');
  prev_seqscan constant text := current_setting('enable_seqscan');
  uid uuid := orchable.require_user('renew_leases');
begin
  perform orchable.engine_on();
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  -- The tasks' row versions by primary key, locked (walked in id order with
  -- sorts disabled: no other index gives that order), then the UPDATE by row
  -- version (a TID scan: index, bitmap and sequential scans disabled, set
  -- only when the transaction had written nothing before, so no foreign-key
  -- check runs inside it; its row trigger runs no SQL). By id and owner in
  -- one statement, the planner could walk the owner's whole user_id index
  -- (complete_tasks, TestCompletePlanForEveryTenant).
  perform set_config('plan_cache_mode', 'force_generic_plan', true),
          set_config('enable_sort', 'off', true),
          set_config('enable_incremental_sort', 'off', true);
  select coalesce(array_agg(t.ctid), '{}') into tids
  from (select t.ctid from public.ai_tasks t where t.id = any(p_task_ids) and t.user_id = uid order by t.id for update) t;
  perform set_config('plan_cache_mode', prev_plan_mode, true),
          set_config('enable_sort', prev_sort, true),
          set_config('enable_incremental_sort', prev_incremental_sort, true);
  if fresh then
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_indexscan', 'off', true),
            set_config('enable_bitmapscan', 'off', true),
            set_config('enable_seqscan', 'off', true);
  end if;
  update public.ai_tasks set locked_until = now() + make_interval(secs => p_lease_seconds)
  where ctid = any(tids) and id = any(p_task_ids) and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  if fresh then
    perform set_config('plan_cache_mode', prev_plan_mode, true),
            set_config('enable_indexscan', prev_indexscan, true),
            set_config('enable_bitmapscan', prev_bitmapscan, true),
            set_config('enable_seqscan', prev_seqscan, true);
  end if;
  return n;
end
$$;
