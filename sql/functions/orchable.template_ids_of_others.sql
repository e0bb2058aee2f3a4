-- Which of the given template ids belong to another account, and whether a
-- config id does. SECURITY DEFINER (RLS hides other accounts' rows); they
-- answer only about the ids passed in and are used only by import_pipeline
-- (schema orchable is not exposed through PostgREST).
create or replace function orchable.template_ids_of_others(p_ids text[], p_owner uuid) returns text[]
  language sql stable
  security definer
  set search_path = ''
as $$
  select coalesce(array_agg(p.id), '{}') from public.prompt_templates p
  where p.id = any(p_ids) and p.user_id is distinct from p_owner
$$;
