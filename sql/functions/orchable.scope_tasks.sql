-- The owner's tasks of the given stages in a barrier scope (exactly one of
-- p_batch, p_launch, p_root is set): what the completion that closes a
-- barrier reads to build the merged or joined input. One branch per scope,
-- so each is planned on its own index (batch_id, launch_id or root_task_id
-- with stage_key): written as one OR over the three columns, the cached
-- generic plan read the whole table, four times per closing completion
-- (docs/performance.md, "Flat as the scope grows").
create or replace function orchable.scope_tasks(p_owner uuid, p_batch uuid, p_launch uuid, p_root uuid, p_stages text[])
  returns setof public.ai_tasks
  language plpgsql stable
  set search_path = ''
as $$
begin
  if p_batch is not null then
    return query select t.* from public.ai_tasks t
      where t.batch_id = p_batch and t.user_id = p_owner and t.stage_key = any(p_stages);
  elsif p_launch is not null then
    return query select t.* from public.ai_tasks t
      where t.launch_id = p_launch and t.user_id = p_owner and t.stage_key = any(p_stages);
  elsif p_root is not null then
    -- The lineage and the root itself (a root's root_task_id is its own id
    -- or null; the second branch skips it when the first already has it).
    return query select t.* from public.ai_tasks t
      where t.root_task_id = p_root and t.user_id = p_owner and t.stage_key = any(p_stages);
    return query select t.* from public.ai_tasks t
      where t.id = p_root and t.root_task_id is distinct from p_root and t.user_id = p_owner and t.stage_key = any(p_stages);
  end if;
end
$$;
