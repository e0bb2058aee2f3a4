-- Counts p_tasks more free-pool tasks against the caller's quota of the
-- current month without refusing: tasks the engine creates from a free-pool
-- parent (successors, splits, merges) count as the original counted every
-- task, but a pipeline already admitted is never stopped half-way.
-- SECURITY DEFINER: users cannot write user_usage.
create or replace function orchable.free_tier_count(p_tasks integer) returns void
  language plpgsql volatile
  security definer
  set search_path = ''
as $$
declare
  uid uuid := (select auth.uid());
begin
  if uid is null or p_tasks is null or p_tasks < 1 then
    return;
  end if;
  insert into public.user_usage (user_id, month, task_count)
  values (uid, orchable.free_tier_month(now()), p_tasks)
  on conflict (user_id, month) do update
    set task_count = coalesce(public.user_usage.task_count, 0) + excluded.task_count, updated_at = now();
end
$$;
