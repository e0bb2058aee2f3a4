-- Scope of a barrier (N:1 merge or join) for a task: batch (default),
-- launch (batch_grouping global) or the task's own root lineage (isolated,
-- and joins by default: a join combines the outputs of one input row).
create or replace function orchable.barrier_scope(t public.ai_tasks, cfg jsonb, is_join boolean) returns text
  -- No SET clause and STABLE (uuid || text is stable), so the planner
  -- inlines it; declared IMMUTABLE it was never inlined and cost a function
  -- call per barrier check.
  language sql stable
as $$
  select case
    -- A join combines the outputs of one input row, whatever batch_grouping
    -- says (the Designer writes "global" on every stage; pooling a launch's
    -- rows in a join was a defect of the original).
    when is_join then 'root:' || coalesce(t.root_task_id, t.id)
    when coalesce(cfg ->> 'batch_grouping', '') = 'global' and t.launch_id is not null then 'launch:' || t.launch_id
    when coalesce(cfg ->> 'batch_grouping', '') = 'isolated' then 'root:' || coalesce(t.root_task_id, t.id)
    when t.batch_id is not null then 'batch:' || t.batch_id
    else 'root:' || coalesce(t.root_task_id, t.id) end
$$;
