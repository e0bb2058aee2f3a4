-- The successor template ids of a task: the task's own next_task_config when
-- set, else its template's next_stage_template_ids (and the legacy single
-- next_stage_template_id), else the launcher's extra.next_stage_configs.
create or replace function orchable.successor_ids(t public.ai_tasks, tpl public.prompt_templates) returns text[]
  language plpgsql stable
  set search_path = ''
as $$
declare
  ids text[];
  ntc jsonb := t.next_task_config;
begin
  if ntc is not null and jsonb_typeof(ntc) = 'object' and ntc ? 'next_stage_template_ids' then
    ntc := ntc -> 'next_stage_template_ids';
  end if;
  if ntc is not null and jsonb_typeof(ntc) = 'array' and jsonb_array_length(ntc) > 0 then
    select array_agg(coalesce(e ->> 'template_id', e #>> '{}') order by o) into ids
    from jsonb_array_elements(ntc) with ordinality as x(e, o);
    return ids;
  end if;
  if tpl.id is not null then
    if jsonb_typeof(tpl.next_stage_template_ids) = 'array' and jsonb_array_length(tpl.next_stage_template_ids) > 0 then
      select array_agg(e #>> '{}' order by o) into ids
      from jsonb_array_elements(tpl.next_stage_template_ids) with ordinality as x(e, o);
      return ids;
    end if;
    if tpl.next_stage_template_id is not null then
      return array[tpl.next_stage_template_id];
    end if;
  end if;
  if jsonb_typeof(t.extra -> 'next_stage_configs') = 'array' then
    select array_agg(e ->> 'template_id' order by o) into ids
    from jsonb_array_elements(t.extra -> 'next_stage_configs') with ordinality as x(e, o)
    where e ->> 'template_id' is not null;
    return ids;
  end if;
  return '{}';
end
$$;
