-- The owner's tasks of the given stages in a barrier scope (exactly one of
-- p_batch, p_launch, p_root is set): what the completion that closes a
-- barrier reads to build the merged or joined input. One query per stage
-- and scope kind, with equalities only, so that even the cached (generic)
-- plan reads just the stage's entries of the scope's index: written as one
-- OR over batch, launch and root, the generic plan read the owner's whole
-- table, four times per closing completion; with stage_key = any(...) it
-- read every stage of the scope (docs/performance.md, "Flat as the scope
-- grows").
create or replace function orchable.scope_tasks(p_owner uuid, p_batch uuid, p_launch uuid, p_root uuid, p_stages text[])
  returns setof public.ai_tasks
  language plpgsql stable
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
begin
  foreach k in array coalesce((select array_agg(distinct x) from unnest(p_stages) x where x is not null), '{}') loop
    if p_batch is not null then
      return query select t.* from public.ai_tasks t
        where t.batch_id = p_batch and t.stage_key = k and t.user_id = p_owner;
    elsif p_launch is not null then
      return query select t.* from public.ai_tasks t
        where t.launch_id = p_launch and t.stage_key = k and t.user_id = p_owner;
    elsif p_root is not null then
      -- The lineage and the root itself (a root's root_task_id is its own
      -- id or null; the second query skips it when the first has it).
      return query select t.* from public.ai_tasks t
        where t.root_task_id = p_root and t.stage_key = k and t.user_id = p_owner;
      return query select t.* from public.ai_tasks t
        where t.id = p_root and t.root_task_id is distinct from p_root and t.stage_key = k and t.user_id = p_owner;
    end if;
  end loop;
end
$$;
