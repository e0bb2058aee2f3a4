-- The owner's tasks of the given stages in a barrier scope (exactly one of
-- p_batch, p_launch, p_root is set): what the completion that closes a
-- barrier reads to build the merged or joined input. One query per stage,
-- status and scope kind, with equalities only, so that even the cached
-- (generic) plan reads just the stage's entries of the scope's index:
-- written as one OR over batch, launch and root, the generic plan read the
-- owner's whole table, four times per closing completion; with stage_key =
-- any(...) it read every stage of the scope (docs/performance.md, "Flat as
-- the scope grows").
--
-- Only the scope index may serve these reads, whatever the statistics say
-- (as in orchable.scope_has_open): the owner and the status are named in a
-- row comparison on its four columns, one status at a time, so no index
-- that leads with user_id competes. Written "user_id = p_owner" (or under
-- the row level security policy, which adds the same condition), an owner
-- the statistics have not seen yet had their whole user_created index
-- walked: 5,039 rows read to close a merge of three beside 5,000 other
-- tasks of theirs. Hence SECURITY DEFINER, with the owner checked against
-- the caller (42501); the bounds keep the rows another tenant gives our
-- scope ids out of the read.
create or replace function orchable.scope_tasks(p_owner uuid, p_batch uuid, p_launch uuid, p_root uuid, p_stages text[])
  returns setof public.ai_tasks
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
    raise exception using errcode = '42501', message = 'scope_tasks: p_owner must be the caller';
  end if;
  foreach k in array coalesce((select array_agg(distinct x) from unnest(p_stages) x where x is not null), '{}') loop
    foreach s in array enum_range(null::public.ai_task_status) loop
      if p_batch is not null then
        return query select t.* from public.ai_tasks t
          where t.batch_id = p_batch and t.stage_key = k
            and (t.batch_id, t.stage_key, t.status, t.user_id) >= (p_batch, k, s, p_owner)
            and (t.batch_id, t.stage_key, t.status, t.user_id) <= (p_batch, k, s, p_owner);
      elsif p_launch is not null then
        return query select t.* from public.ai_tasks t
          where t.launch_id = p_launch and t.stage_key = k
            and (t.launch_id, t.stage_key, t.status, t.user_id) >= (p_launch, k, s, p_owner)
            and (t.launch_id, t.stage_key, t.status, t.user_id) <= (p_launch, k, s, p_owner);
      elsif p_root is not null then
        return query select t.* from public.ai_tasks t
          where t.root_task_id = p_root and t.stage_key = k
            and (t.root_task_id, t.stage_key, t.status, t.user_id) >= (p_root, k, s, p_owner)
            and (t.root_task_id, t.stage_key, t.status, t.user_id) <= (p_root, k, s, p_owner);
      end if;
    end loop;
    -- The root of a lineage itself, by primary key (a root's root_task_id
    -- is its own id or null: skipped when the reads above had it).
    if p_batch is null and p_launch is null and p_root is not null then
      return query select t.* from public.ai_tasks t
        where t.id = p_root and t.root_task_id is distinct from p_root and t.stage_key = k
          and t.user_id is not distinct from p_owner;
    end if;
  end loop;
end
$$;
