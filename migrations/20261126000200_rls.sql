-- Row Level Security and privileges. Tenancy is enforced here, not in Go.
-- Policies use (select auth.uid()) so the planner evaluates it once per statement.
-- anon receives no table privileges at all: nothing here is readable or
-- writable without signing in.

alter table public.ai_tasks enable row level security;
alter table public.task_batches enable row level security;
alter table public.prompt_templates enable row level security;
alter table public.custom_components enable row level security;
alter table public.lab_orchestrator_configs enable row level security;
alter table public.user_api_keys enable row level security;
alter table public.api_key_health enable row level security;
alter table public.api_key_usage_log enable row level security;
alter table public.task_batch_counter_deltas enable row level security;

revoke all on public.ai_tasks, public.task_batches, public.prompt_templates, public.custom_components,
  public.lab_orchestrator_configs, public.user_api_keys, public.api_key_health, public.api_key_usage_log,
  public.task_batch_counter_deltas, public.v_runnable_tasks, public.registry_components
  from anon, public;

grant select, insert, update, delete on public.ai_tasks, public.task_batches, public.prompt_templates,
  public.custom_components, public.lab_orchestrator_configs, public.user_api_keys
  to authenticated, service_role;
grant select, insert, update, delete on public.api_key_health to authenticated, service_role;
-- The usage log is append-only for users.
grant select, insert, delete on public.api_key_usage_log to authenticated;
grant select, insert, update, delete on public.api_key_usage_log to service_role;
-- Deltas are written only by the (SECURITY DEFINER) counter triggers; only
-- the service reads them. Users have no privilege on the table.
grant select, insert, update, delete on public.task_batch_counter_deltas to service_role;
grant select on public.v_runnable_tasks, public.registry_components to authenticated, service_role;

revoke execute on function public.fold_batch_counters() from public, anon, authenticated;
grant execute on function public.fold_batch_counters() to service_role;

-- ai_tasks: the owner only. A task may only live in the owner's batch and
-- point at a template the owner can read (own or public).
drop policy if exists ai_tasks_select_own on public.ai_tasks;
create policy ai_tasks_select_own on public.ai_tasks for select to authenticated
  using (user_id = (select auth.uid()));
drop policy if exists ai_tasks_insert_own on public.ai_tasks;
create policy ai_tasks_insert_own on public.ai_tasks for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (batch_id is null or exists (
      select 1 from public.task_batches b where b.id = batch_id and b.created_by = (select auth.uid())))
    and (prompt_template_id is null or exists (
      select 1 from public.prompt_templates p
      where p.id = prompt_template_id and (p.user_id = (select auth.uid()) or p.is_public))));
drop policy if exists ai_tasks_update_own on public.ai_tasks;
create policy ai_tasks_update_own on public.ai_tasks for update to authenticated
  using (user_id = (select auth.uid()))
  with check (
    user_id = (select auth.uid())
    and (batch_id is null or exists (
      select 1 from public.task_batches b where b.id = batch_id and b.created_by = (select auth.uid())))
    and (prompt_template_id is null or exists (
      select 1 from public.prompt_templates p
      where p.id = prompt_template_id and (p.user_id = (select auth.uid()) or p.is_public))));
drop policy if exists ai_tasks_delete_own on public.ai_tasks;
create policy ai_tasks_delete_own on public.ai_tasks for delete to authenticated
  using (user_id = (select auth.uid()));

-- task_batches: the creator only.
drop policy if exists task_batches_select_own on public.task_batches;
create policy task_batches_select_own on public.task_batches for select to authenticated
  using (created_by = (select auth.uid()));
drop policy if exists task_batches_insert_own on public.task_batches;
create policy task_batches_insert_own on public.task_batches for insert to authenticated
  with check (created_by = (select auth.uid()));
drop policy if exists task_batches_update_own on public.task_batches;
create policy task_batches_update_own on public.task_batches for update to authenticated
  using (created_by = (select auth.uid())) with check (created_by = (select auth.uid()));
drop policy if exists task_batches_delete_own on public.task_batches;
create policy task_batches_delete_own on public.task_batches for delete to authenticated
  using (created_by = (select auth.uid()));

-- prompt_templates: own, plus public ones readable by every signed-in user.
drop policy if exists prompt_templates_select on public.prompt_templates;
create policy prompt_templates_select on public.prompt_templates for select to authenticated
  using (user_id = (select auth.uid()) or is_public);
drop policy if exists prompt_templates_insert_own on public.prompt_templates;
create policy prompt_templates_insert_own on public.prompt_templates for insert to authenticated
  with check (user_id = (select auth.uid()));
drop policy if exists prompt_templates_update_own on public.prompt_templates;
create policy prompt_templates_update_own on public.prompt_templates for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
drop policy if exists prompt_templates_delete_own on public.prompt_templates;
create policy prompt_templates_delete_own on public.prompt_templates for delete to authenticated
  using (user_id = (select auth.uid()));

-- custom_components: own, plus public ones readable.
drop policy if exists custom_components_select on public.custom_components;
create policy custom_components_select on public.custom_components for select to authenticated
  using (created_by = (select auth.uid()) or is_public);
drop policy if exists custom_components_insert_own on public.custom_components;
create policy custom_components_insert_own on public.custom_components for insert to authenticated
  with check (created_by = (select auth.uid()));
drop policy if exists custom_components_update_own on public.custom_components;
create policy custom_components_update_own on public.custom_components for update to authenticated
  using (created_by = (select auth.uid())) with check (created_by = (select auth.uid()));
drop policy if exists custom_components_delete_own on public.custom_components;
create policy custom_components_delete_own on public.custom_components for delete to authenticated
  using (created_by = (select auth.uid()));

-- lab_orchestrator_configs: own, plus public ones readable.
drop policy if exists lab_configs_select on public.lab_orchestrator_configs;
create policy lab_configs_select on public.lab_orchestrator_configs for select to authenticated
  using (created_by = (select auth.uid()) or is_public);
drop policy if exists lab_configs_insert_own on public.lab_orchestrator_configs;
create policy lab_configs_insert_own on public.lab_orchestrator_configs for insert to authenticated
  with check (created_by = (select auth.uid()));
drop policy if exists lab_configs_update_own on public.lab_orchestrator_configs;
create policy lab_configs_update_own on public.lab_orchestrator_configs for update to authenticated
  using (created_by = (select auth.uid())) with check (created_by = (select auth.uid()));
drop policy if exists lab_configs_delete_own on public.lab_orchestrator_configs;
create policy lab_configs_delete_own on public.lab_orchestrator_configs for delete to authenticated
  using (created_by = (select auth.uid()));

-- user_api_keys: the owner only.
drop policy if exists user_api_keys_select_own on public.user_api_keys;
create policy user_api_keys_select_own on public.user_api_keys for select to authenticated
  using (user_id = (select auth.uid()));
drop policy if exists user_api_keys_insert_own on public.user_api_keys;
create policy user_api_keys_insert_own on public.user_api_keys for insert to authenticated
  with check (user_id = (select auth.uid()));
drop policy if exists user_api_keys_update_own on public.user_api_keys;
create policy user_api_keys_update_own on public.user_api_keys for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
drop policy if exists user_api_keys_delete_own on public.user_api_keys;
create policy user_api_keys_delete_own on public.user_api_keys for delete to authenticated
  using (user_id = (select auth.uid()));

-- api_key_health: the owner only, and only for the owner's keys.
drop policy if exists api_key_health_select_own on public.api_key_health;
create policy api_key_health_select_own on public.api_key_health for select to authenticated
  using (user_id = (select auth.uid()));
drop policy if exists api_key_health_insert_own on public.api_key_health;
create policy api_key_health_insert_own on public.api_key_health for insert to authenticated
  with check (user_id = (select auth.uid()) and exists (
    select 1 from public.user_api_keys k where k.id = user_api_key_id and k.user_id = (select auth.uid())));
drop policy if exists api_key_health_update_own on public.api_key_health;
create policy api_key_health_update_own on public.api_key_health for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()) and exists (
    select 1 from public.user_api_keys k where k.id = user_api_key_id and k.user_id = (select auth.uid())));
drop policy if exists api_key_health_delete_own on public.api_key_health;
create policy api_key_health_delete_own on public.api_key_health for delete to authenticated
  using (user_id = (select auth.uid()));

-- api_key_usage_log: the owner only.
drop policy if exists api_key_usage_log_select_own on public.api_key_usage_log;
create policy api_key_usage_log_select_own on public.api_key_usage_log for select to authenticated
  using (user_id = (select auth.uid()));
drop policy if exists api_key_usage_log_insert_own on public.api_key_usage_log;
create policy api_key_usage_log_insert_own on public.api_key_usage_log for insert to authenticated
  with check (user_id = (select auth.uid()) and (user_api_key_id is null or exists (
    select 1 from public.user_api_keys k where k.id = user_api_key_id and k.user_id = (select auth.uid()))));
drop policy if exists api_key_usage_log_delete_own on public.api_key_usage_log;
create policy api_key_usage_log_delete_own on public.api_key_usage_log for delete to authenticated
  using (user_id = (select auth.uid()));

