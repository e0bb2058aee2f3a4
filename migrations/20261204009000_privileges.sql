-- Privileges that hold under Supabase's default privileges (SPEC §14).
--
-- Projects created before 2026 (or with "default privileges for new
-- entities" on) run
--   alter default privileges in schema public
--     grant all on tables, functions, sequences to anon, authenticated, service_role;
-- so every table and function created by a migration arrives with ALL
-- (TRUNCATE, REFERENCES, TRIGGER included) for anon and authenticated, and
-- functions are executable by PUBLIC by PostgreSQL's own default. This
-- migration runs last and states the privileges of orchable's objects
-- exactly, whatever the project's defaults granted: it revokes everything
-- from anon and authenticated and grants back what the product needs. It
-- also changes the default privileges of the migrating role so functions
-- created by later migrations are not executable by PUBLIC or anon (each
-- migration grants its functions to authenticated/service_role
-- explicitly; the catalog test in migrations/ fails otherwise).
--
-- The user's own tables and functions in public are left alone, except
-- that PUBLIC/anon no longer get EXECUTE on functions created later by
-- the migrating role (grant it explicitly where the app needs it).

------------------------------------------------------------------------------
-- Tables and views: exactly what the product grants.
------------------------------------------------------------------------------
do $$
declare
  rel text;
begin
  foreach rel in array array[
    'public.ai_tasks', 'public.task_batches', 'public.prompt_templates', 'public.custom_components',
    'public.lab_orchestrator_configs', 'public.user_api_keys', 'public.api_key_health', 'public.api_key_usage_log',
    'public.task_batch_counter_deltas', 'public.api_key_project_blocks', 'public.v_runnable_tasks',
    'public.registry_components']
  loop
    if to_regclass(rel) is not null then
      execute format('revoke all on %s from public, anon, authenticated', rel);
    end if;
  end loop;
end
$$;

grant select, insert, update, delete on public.ai_tasks, public.task_batches, public.prompt_templates,
  public.custom_components, public.lab_orchestrator_configs, public.user_api_keys, public.api_key_health,
  public.api_key_project_blocks
  to authenticated;
grant select, insert, delete on public.api_key_usage_log to authenticated;
grant select on public.v_runnable_tasks, public.registry_components to authenticated;
-- service_role keeps what earlier migrations granted, minus what no service
-- path needs.
revoke truncate, references, trigger on public.ai_tasks, public.task_batches, public.prompt_templates,
  public.custom_components, public.lab_orchestrator_configs, public.user_api_keys, public.api_key_health,
  public.api_key_usage_log, public.task_batch_counter_deltas, public.api_key_project_blocks
  from service_role;

-- Sequences of orchable's tables (identity columns).
do $$
declare
  s text;
begin
  for s in
    select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
    join pg_depend d on d.objid = c.oid and d.deptype in ('a', 'i')
    join pg_class t on t.oid = d.refobjid
    where c.relkind = 'S' and n.nspname = 'public'
      and t.relname in ('task_batch_counter_deltas', 'api_key_usage_log', 'ai_tasks', 'task_batches')
  loop
    execute format('revoke all on sequence %s from public, anon, authenticated', s);
  end loop;
end
$$;

------------------------------------------------------------------------------
-- Functions.
--   * nothing of orchable's executable by PUBLIC or anon;
--   * trigger functions executable by nobody but their owner (a trigger
--     fires without EXECUTE on its function);
--   * schema orchable's helpers to authenticated and service_role (the SQL
--     API runs as the caller and calls them; the schema is not exposed
--     through PostgREST);
--   * the service-only functions not to authenticated.
------------------------------------------------------------------------------
do $$
declare
  f record;
begin
  for f in
    select p.oid::regprocedure as sig, n.nspname, p.prorettype = 'trigger'::regtype as is_trigger
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    left join pg_depend d on d.objid = p.oid and d.deptype = 'e'
    where n.nspname in ('public', 'orchable') and d.objid is null and p.prokind = 'f'
  loop
    execute format('revoke execute on function %s from public, anon', f.sig);
    if f.is_trigger then
      execute format('revoke execute on function %s from authenticated, service_role', f.sig);
    elsif f.nspname = 'orchable' then
      execute format('grant execute on function %s to authenticated, service_role', f.sig);
    end if;
  end loop;
end
$$;

revoke execute on function
  public.due_tasks(integer, integer),
  public.requeue_expired_leases(integer),
  public.fold_batch_counters(),
  public.set_engine_limits(integer, bigint, integer)
  from authenticated;

------------------------------------------------------------------------------
-- Default privileges of the migrating role: functions created from now on
-- are not executable by PUBLIC (a global default, so it must be revoked
-- globally) nor by anon (Supabase's per-schema default for public).
------------------------------------------------------------------------------
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon;
alter default privileges in schema orchable revoke execute on functions from anon;
