create or replace function orchable.in_scope(t public.ai_tasks, scope text) returns boolean
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select case split_part(scope, ':', 1)
    when 'batch' then t.batch_id::text = split_part(scope, ':', 2)
    when 'launch' then t.launch_id::text = split_part(scope, ':', 2)
    else coalesce(t.root_task_id, t.id)::text = split_part(scope, ':', 2) end
$$;
