-- The template p_id if p_user may run it (orchable.template_usable), else a
-- row of NULLs.
create or replace function orchable.usable_template(p_id text, p_user uuid) returns public.prompt_templates
  language plpgsql stable
  set search_path = ''
as $$
declare
  p public.prompt_templates;
begin
  select * into p from public.prompt_templates t
  where t.id = p_id
    and (t.user_id = p_user or t.is_public or exists (
      select 1 from public.lab_orchestrator_configs c
      where c.is_public and c.created_by = t.user_id and c.id::text = t.organization_code));
  return p;
end
$$;
