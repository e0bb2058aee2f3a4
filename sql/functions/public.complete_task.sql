create or replace function public.complete_task(
  p_task_id uuid,
  p_worker text,
  p_output jsonb,
  p_usage jsonb default '{}'::jsonb
) returns jsonb
  language sql volatile
  set search_path = ''
  set jit = off
as $$
  select orchable.complete_one(p_task_id, p_worker, p_output, p_usage)
$$;
