-- Whether the owner has an unfinished task of one of the stages in a barrier
-- scope (exactly one of p_batch, p_launch, p_root is set). check_barrier
-- asks this on every feeder's completion, so its cost must not grow with
-- the scope or with the owner's other tasks (docs/performance.md, "Flat as
-- the scope grows"). Each probe is one equality lookup on every column of
-- the scope's index (scope, stage, status, owner), one per stage and
-- unfinished status; it stops at the first hit. The probes are one
-- statement, a nested loop of LIMIT 1 lookups over the (stage, status)
-- pairs. As one statement each, a check that found its scope closed ran six
-- per stage, and since siblings are claimed together (orchable.child_id)
-- nearly every check is such a closing: 54-58 against 98-104 us a call in
-- throughput-pipeline (docs/performance.md, thirty-fifth round).
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
--   * Only the scope index may serve a probe. The owner and the status are
--     named in a row comparison on its four columns, (scope, stage, status,
--     owner) >= (...) and <= (...), which is the same equality on all four,
--     and nowhere else. A row comparison is an index condition only on an
--     index whose leading columns are the row's, in order. Written as plain
--     "user_id = p_owner" and "status = s", other indexes could serve the
--     probe: for an owner the statistics have not seen yet (a tenant's
--     first large batch, before the next ANALYZE) the planner expects one
--     task of theirs and walked their whole user_created index (5,041 rows
--     read to complete 10 feeders of a 5,000-task batch), and "status =
--     'processing'" proves the predicate of the lease index, which lists
--     every tenant's claimed tasks. The plain equalities on scope and stage
--     stay: they prove the scope index's predicate (scope is not null). The
--     probe still reads only the owner's entries: another tenant may copy
--     our scope ids into its rows, and its entries sort under its own
--     user_id, outside the bounds.
--   * The root of a lineage is read once, by primary key (IS NOT DISTINCT
--     FROM is no index condition, so no index of the owner competes).
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
  root_stage text;
  root_status public.ai_task_status;
  -- The unfinished statuses.
  open constant public.ai_task_status[] := '{processing,plan,generated,awaiting_approval,pending,running}';
begin
  if p_owner is distinct from (select auth.uid()) then
    raise exception using errcode = '42501', message = 'scope_has_open: p_owner must be the caller';
  end if;
  if p_batch is null and p_launch is null and p_root is not null then
    select t.stage_key, t.status into root_stage, root_status
    from public.ai_tasks t where t.id = p_root and t.user_id is not distinct from p_owner;
    if root_stage = any(p_stages) and root_status = any(open) then
      return true;
    end if;
  end if;
  -- One statement per scope kind, each planned once: LATERAL with LIMIT 1
  -- keeps each lookup a parameterized index probe of its own.
  if p_batch is not null then
    return exists (
      select 1
      from unnest(p_stages) k(stage)
      cross join unnest(open) s(status)
      cross join lateral (
        select 1 from public.ai_tasks t
        where t.batch_id = p_batch and t.stage_key = k.stage
          and (t.batch_id, t.stage_key, t.status, t.user_id) >= (p_batch, k.stage, s.status, p_owner)
          and (t.batch_id, t.stage_key, t.status, t.user_id) <= (p_batch, k.stage, s.status, p_owner)
        limit 1) x);
  elsif p_launch is not null then
    return exists (
      select 1
      from unnest(p_stages) k(stage)
      cross join unnest(open) s(status)
      cross join lateral (
        select 1 from public.ai_tasks t
        where t.launch_id = p_launch and t.stage_key = k.stage
          and (t.launch_id, t.stage_key, t.status, t.user_id) >= (p_launch, k.stage, s.status, p_owner)
          and (t.launch_id, t.stage_key, t.status, t.user_id) <= (p_launch, k.stage, s.status, p_owner)
        limit 1) x);
  elsif p_root is not null then
    return exists (
      select 1
      from unnest(p_stages) k(stage)
      cross join unnest(open) s(status)
      cross join lateral (
        select 1 from public.ai_tasks t
        where t.root_task_id = p_root and t.stage_key = k.stage
          and (t.root_task_id, t.stage_key, t.status, t.user_id) >= (p_root, k.stage, s.status, p_owner)
          and (t.root_task_id, t.stage_key, t.status, t.user_id) <= (p_root, k.stage, s.status, p_owner)
        limit 1) x);
  end if;
  return false;
end
$$;
