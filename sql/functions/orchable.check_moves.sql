-- References a client's update moves to a new value: a task's batch must be
-- the writer's own and its template one the writer can read; a batch's
-- orchestrator config one the writer can read. Checked only when the value
-- changes (an AFTER trigger, so what BEFORE triggers normalised is what is
-- checked). The UPDATE policies used to check them on every write, so a row
-- whose template or config its author later made private could not be
-- written at all: one such task made every claim of its owner fail, which
-- let another tenant stall the owner's whole queue (attack 4b).
create or replace function orchable.check_moves() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if (select r.rolsuper or r.rolbypassrls from pg_catalog.pg_roles r where r.rolname = current_user) then
    return null; -- as RLS: the owner, service_role and RI actions are not checked
  end if;
  if tg_table_name = 'ai_tasks' then
    if new.batch_id is distinct from old.batch_id and new.batch_id is not null
       and not exists (select 1 from public.task_batches b where b.id = new.batch_id and b.created_by = (select auth.uid())) then
      raise exception using errcode = '42501', message = 'batch_id must reference one of your own batches';
    end if;
    if new.prompt_template_id is distinct from old.prompt_template_id and new.prompt_template_id is not null
       and not exists (select 1 from public.prompt_templates p where p.id = new.prompt_template_id) then
      raise exception using errcode = '42501', message = 'prompt_template_id must reference a template you can read';
    end if;
  elsif new.orchestrator_config_id is distinct from old.orchestrator_config_id and new.orchestrator_config_id is not null
        and not exists (select 1 from public.lab_orchestrator_configs c where c.id = new.orchestrator_config_id) then
    raise exception using errcode = '42501', message = 'orchestrator_config_id must reference a config you can read';
  end if;
  return null;
end
$$;
