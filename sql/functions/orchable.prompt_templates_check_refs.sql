-- References a template's author writes (next_stage_template_id,
-- custom_component_id) must name rows the author can read. A trigger, not
-- the policy: a policy on prompt_templates that reads prompt_templates
-- recurses. One error for "not yours" and "does not exist".
create or replace function orchable.prompt_templates_check_refs() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if new.next_stage_template_id is not null
     and (tg_op = 'INSERT' or new.next_stage_template_id is distinct from old.next_stage_template_id)
     and (orchable.usable_template(new.next_stage_template_id, new.user_id)).id is null then
    raise exception using errcode = '42501',
      message = 'next_stage_template_id must reference a template you can use';
  end if;
  if new.custom_component_id is not null
     and (tg_op = 'INSERT' or new.custom_component_id is distinct from old.custom_component_id)
     and not exists (select 1 from public.custom_components c
                     where c.id = new.custom_component_id and (c.created_by = new.user_id or c.is_public)) then
    raise exception using errcode = '42501',
      message = 'custom_component_id must reference a component you can use';
  end if;
  return null;
end
$$;
