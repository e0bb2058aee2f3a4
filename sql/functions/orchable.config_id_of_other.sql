create or replace function orchable.config_id_of_other(p_id uuid, p_owner uuid) returns boolean
  language sql stable
  security definer
  set search_path = ''
as $$
  select exists (select 1 from public.lab_orchestrator_configs c where c.id = p_id and c.created_by is distinct from p_owner)
$$;
