-- descendant_ids: the ids of p_user's tasks with p_task in their
-- hierarchy_path (its descendants; the engine writes a child's path as its
-- parent's path and the parent's id, and its root_task_id as its parent's
-- root, or the parent when that has none). p_root is p_task's root_task_id.
-- Found through the tree's index, not by reading the owner's tasks: with a
-- root, every descendant has that root (the root exists, so no delete set
-- their root_task_id to null). Without one, p_task is a root whose children
-- carry its id as their root, or its root was deleted and its descendants'
-- root_task_id with it: those are found by walking parent_task_id down.
create or replace function orchable.descendant_ids(p_user uuid, p_task uuid, p_root uuid) returns setof uuid
  language sql stable
  set search_path = ''
as $$
  -- Two branches rather than root_task_id = coalesce(p_root, p_task): the
  -- planner does not take a coalesce of parameters as an index condition
  -- of the tree's partial index, and read all the owner's tasks instead.
  select d.id from public.ai_tasks d
  where p_root is not null and d.root_task_id = p_root and d.user_id = p_user
    and d.hierarchy_path @> jsonb_build_array(p_task::text)
  union
  select d.id from public.ai_tasks d
  where p_root is null and d.root_task_id = p_task and d.user_id = p_user
    and d.hierarchy_path @> jsonb_build_array(p_task::text)
  union
  select w.id from (
    with recursive walk(id, depth) as (
      select c.id, 1 from public.ai_tasks c
      where p_root is null and c.parent_task_id = p_task and c.user_id = p_user
      union all
      select c.id, w.depth + 1 from walk w
      join public.ai_tasks c on c.parent_task_id = w.id and c.user_id = p_user
      where w.depth < 100
    )
    select id from walk
  ) w
  join public.ai_tasks d on d.id = w.id and d.hierarchy_path @> jsonb_build_array(p_task::text)
$$;
