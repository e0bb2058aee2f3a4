create or replace function orchable.usable_template(p_id text, p_user uuid) returns public.prompt_templates
  language sql stable
  set search_path = ''
as $$
  select p.* from public.prompt_templates p
  where p.id = p_id and orchable.template_usable(p, p_user)
$$;
