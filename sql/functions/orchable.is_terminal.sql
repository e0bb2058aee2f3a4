create or replace function orchable.is_terminal(s public.ai_task_status) returns boolean
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select s in ('completed', 'approved', 'skipped', 'failed', 'cancelled')
$$;
