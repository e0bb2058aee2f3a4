-- The effective stage config of a successor: its template's stage_config,
-- completed from the launcher snapshot in the parent's extra when the
-- template carries none (fallback only).
create or replace function orchable.successor_config(parent public.ai_tasks, succ public.prompt_templates) returns jsonb
  language sql stable
  set search_path = ''
as $$
  select coalesce((
      select e from jsonb_array_elements(case when jsonb_typeof(parent.extra -> 'next_stage_configs') = 'array'
                                              then parent.extra -> 'next_stage_configs' else '[]'::jsonb end) e
      where e ->> 'template_id' = succ.id limit 1), '{}'::jsonb)
    || coalesce(succ.stage_config, '{}'::jsonb)
$$;
