-- descendant_ids: the ids of p_owner's tasks below p_task, with p_task in
-- their hierarchy_path (its descendants), found by walking parent_task_id
-- down from it. The engine writes a child's path as its parent's path and
-- the parent's id, so the walk reaches every task whose path holds p_task,
-- and reads nothing else: a leaf among a root's 10,000 split children reads
-- itself, where walking the root's whole tree read all of them (and
-- retry_all_failed_in_batch resets each failed task of a batch). A task whose
-- parent was deleted (only a client's own deletes do that) is not reached.
--
-- SECURITY DEFINER, as orchable.scope_has_open and for its reason: under row
-- level security the policy's "user_id = auth.uid()" is an index condition
-- the planner may prefer, and for an owner the statistics have not seen it
-- walks the owner's whole user_id index at every step. Here the owner is a
-- filter no index can serve ("is true"), so only the parent index serves
-- the walk, and sequential scans are off for a parent with many children.
-- It answers only about the caller's own tasks and refuses any other owner
-- (42501); another tenant cannot point its rows at ours (parent_task_id is
-- checked, orchable.ai_tasks_check_refs), and its rows are filtered out.
create or replace function orchable.descendant_ids(p_owner uuid, p_task uuid) returns setof uuid
  language plpgsql stable
  security definer
  set search_path = ''
  set enable_seqscan = off
as $$
begin
  if p_owner is distinct from (select auth.uid()) then
    raise exception using errcode = '42501', message = 'descendant_ids: p_owner must be the caller';
  end if;
  -- The path is carried along the walk: a join back to the tasks for it
  -- was planned for the walk's estimate (thousands of rows) and, with
  -- sequential scans off, read the whole primary key.
  return query
  with recursive walk(id, path, depth) as (
    select c.id, c.hierarchy_path, 1 from public.ai_tasks c
    where c.parent_task_id = p_task and (c.user_id = p_owner) is true
    union all
    select c.id, c.hierarchy_path, w.depth + 1 from walk w
    join public.ai_tasks c on c.parent_task_id = w.id and (c.user_id = p_owner) is true
    where w.depth < 100
  )
  select w.id from walk w where w.path @> jsonb_build_array(p_task::text);
end
$$;
