-- The effective stage config of a successor: its template's stage_config,
-- completed from the launcher snapshot in the parent's extra when the
-- template carries none (fallback only). PL/pgSQL, so its query plan is
-- cached per session: as a SQL function (not inlinable: it has a subquery)
-- it was planned again on every call, 0.1 ms per successor.
create or replace function orchable.successor_config(parent public.ai_tasks, succ public.prompt_templates) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  cfgs jsonb := parent.extra -> 'next_stage_configs';
  snap jsonb;
begin
  if jsonb_typeof(cfgs) = 'array' then
    select e into snap from jsonb_array_elements(cfgs) e where e ->> 'template_id' = succ.id limit 1;
  end if;
  return coalesce(snap, '{}'::jsonb) || coalesce(succ.stage_config, '{}'::jsonb);
end
$$;
