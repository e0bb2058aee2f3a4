-- Whether the owner has an unfinished task of one of the stages in a barrier
-- scope (exactly one of p_batch, p_launch, p_root is set). check_barrier
-- asks this on every feeder's completion, so its cost must not grow with
-- the scope or with the owner's other tasks (docs/performance.md, "Flat as
-- the scope grows"). Each probe is one equality lookup on every column of
-- the scope's index (scope, stage, status, owner), one per stage and
-- unfinished status, most likely first; it stops at the first hit.
--   * One OR over batch_id, launch_id and root_task_id: the cached (generic)
--     plan scanned the whole table (1.6 ms a check at 13,000 tasks).
--   * stage_key = any(...) and status in (...): PostgreSQL 15's generic
--     plan kept the two arrays as a filter and used the index for the scope
--     and the owner only, reading every entry of the scope on each check.
--   * Under row level security a condition on status is never an index
--     condition: the enum's equality is not leakproof, so PostgreSQL checks
--     the policy first and status after it, again on every entry of the
--     scope. Hence SECURITY DEFINER (no policy applies): it answers one
--     boolean about the caller's own tasks, filtered on the owner, and
--     refuses any owner but the caller (42501).
create or replace function orchable.scope_has_open(p_owner uuid, p_batch uuid, p_launch uuid, p_root uuid, p_stages text[])
  returns boolean
  language plpgsql stable
  security definer
  set search_path = ''
  -- A pooled connection caches a generic plan after five calls. For an
  -- owner with one large batch its estimates say that many rows match, and
  -- a sequential scan "finds one" soonest: it read the whole table on each
  -- check. With sequential scans off the plan is the index lookup above
  -- whatever the statistics say (every condition is on its key columns).
  set enable_seqscan = off
as $$
declare
  k text;
  s public.ai_task_status;
begin
  if p_owner is distinct from (select auth.uid()) then
    raise exception using errcode = '42501', message = 'scope_has_open: p_owner must be the caller';
  end if;
  foreach k in array coalesce(p_stages, '{}') loop
    foreach s in array '{processing,plan,generated,awaiting_approval,pending,running}'::public.ai_task_status[] loop
      if p_batch is not null then
        if exists (select 1 from public.ai_tasks t
                   where t.batch_id = p_batch and t.stage_key = k and t.status = s and t.user_id = p_owner) then
          return true;
        end if;
      elsif p_launch is not null then
        if exists (select 1 from public.ai_tasks t
                   where t.launch_id = p_launch and t.stage_key = k and t.status = s and t.user_id = p_owner) then
          return true;
        end if;
      elsif p_root is not null then
        if exists (select 1 from public.ai_tasks t
                   where t.root_task_id = p_root and t.stage_key = k and t.status = s and t.user_id = p_owner)
           or exists (select 1 from public.ai_tasks t
                   where t.id = p_root and t.stage_key = k and t.status = s and t.user_id = p_owner) then
          return true;
        end if;
      end if;
    end loop;
  end loop;
  return false;
end
$$;
