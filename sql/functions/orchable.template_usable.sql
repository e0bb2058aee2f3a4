------------------------------------------------------------------------------
-- Templates a user may run: their own, public ones, and the templates of a
-- public orchestrator config (a published pipeline; its owner must be the
-- templates' owner). Another user's template never brings its author's
-- hooks along (the runner ignores them; see docs/threat-model.md).
-- PL/pgSQL, not SQL: a SQL function that cannot be inlined is planned on
-- every call, which cost 0.1 ms per claimed task.
------------------------------------------------------------------------------
create or replace function orchable.template_usable(p public.prompt_templates, p_user uuid) returns boolean
  language plpgsql stable
  set search_path = ''
as $$
begin
  return p.id is not null and (p.user_id = p_user or p.is_public or exists (
    select 1 from public.lab_orchestrator_configs c
    where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code));
end
$$;
