-- The owner's task p_task_id, locked FOR UPDATE: its current row version, or
-- null when the caller sees no such task of the owner. Every function that
-- works on one task by id finds it here (complete_task, fail_task,
-- approve_task, reject_task, retry_failed_task, release_task), then reads or
-- updates that row version (a TID scan: cheaper than any index, so the
-- planner takes it whatever it expects of the owner; the caller holds the
-- lock, so it stays the current version).
--
-- By primary key, with a plan made once per connection that can only be the
-- primary key: the id as an array, walked in id order with sorts disabled
-- (no other index gives that order). As a plain lookup (id = p_task_id and
-- user_id = p_owner) the planner could walk the owner's user_id index
-- instead when it expects one row of theirs there (an owner the statistics
-- have not seen, or an average owner with a generic plan):
-- TestCompletePlanForEveryTenant, TestBarrierReadsOnlyItsScope. The planner
-- settings are the function's own, restored by PostgreSQL on return, and its
-- one statement runs no other SQL (a SELECT ... FOR UPDATE fires no trigger).
-- Runs as the invoker, under the caller's policies.
create or replace function orchable.lock_task(p_task_id uuid, p_owner uuid) returns tid
  language plpgsql volatile
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  set enable_sort = off
as $$
declare
  tid_ tid;
begin
  select t.ctid into tid_ from public.ai_tasks t
  where t.id = any(array[p_task_id]) and t.user_id = p_owner
  order by t.id
  for update;
  return tid_;
end
$$;
