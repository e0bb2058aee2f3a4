-- The original orchable database's shape, written from the fact sheet
-- (reference/original-schema.md): enum types, the tables orchable shares
-- with it (columns, defaults, keys, foreign keys), the original's functions
-- whose names orchable reuses (signatures and result types as the original
-- has them; bodies are stand-ins), its counter trigger, its views over
-- ai_tasks, and its row-level security policies. Applied after the local
-- Supabase shim, before any orchable migration, by the upgrade test.

create type public.ai_task_status as enum (
  'plan', 'pending', 'running', 'processing', 'awaiting_approval', 'approved',
  'completed', 'generated', 'failed', 'cancelled', 'skipped');
create type public.api_key_pool_type as enum ('personal', 'free_pool', 'premium_pool');
create type public.user_role as enum ('user', 'admin', 'superadmin');

-- Tables of the original that orchable does not have, referenced by
-- foreign keys of the shared ones.
create table public.hub_assets (id uuid primary key default gen_random_uuid(), name text);
create table public.orchestrator_executions (id uuid primary key default gen_random_uuid());
create table public.step_executions (id uuid primary key default gen_random_uuid());
create table public.orchestrator_steps (id uuid primary key default gen_random_uuid());

create table public.custom_components (
  id uuid primary key default gen_random_uuid(),
  name character varying(255) not null,
  description text,
  code text not null,
  mock_data jsonb default '{}'::jsonb,
  is_public boolean default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  created_by uuid constraint custom_components_created_by_fkey references auth.users (id) on delete set null,
  hub_asset_id uuid constraint custom_components_hub_asset_id_fkey references public.hub_assets (id)
);

create table public.lab_orchestrator_configs (
  id uuid primary key default gen_random_uuid(),
  name character varying(255) not null,
  description text,
  steps jsonb not null,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  created_by uuid constraint lab_orchestrator_configs_created_by_fkey references auth.users (id) on delete set null,
  viewport jsonb default '{"x": 0, "y": 0, "zoom": 1}'::jsonb,
  n8n_workflow_id text,
  input_mapping jsonb,
  hub_asset_id uuid constraint lab_orchestrator_configs_hub_asset_id_fkey references public.hub_assets (id),
  is_public boolean default false,
  tags text[] default '{}'::text[],
  execution_delay_seconds integer default 0
);

create table public.prompt_templates (
  id text primary key,
  name text not null,
  description text,
  template text not null,
  version integer default 1,
  is_active boolean default true,
  input_schema jsonb,
  output_schema jsonb,
  default_ai_settings jsonb default '{"model_id": "gemini-2.5-flash", "temperature": 0.7}'::jsonb,
  organization_code text,
  created_by uuid constraint prompt_templates_created_by_fkey references auth.users (id) on delete set null,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  next_stage_template_id text constraint prompt_templates_next_stage_fkey references public.prompt_templates (id) on delete set null,
  stage_config jsonb default '{}'::jsonb,
  requires_approval boolean default false,
  next_stage_template_ids jsonb default '[]'::jsonb,
  custom_component_id uuid constraint prompt_templates_custom_component_id_fkey references public.custom_components (id) on delete set null,
  view_config jsonb default '{}'::jsonb,
  stage_key text,
  hub_asset_id uuid constraint prompt_templates_hub_asset_id_fkey references public.hub_assets (id),
  is_public boolean default false
);

create table public.task_batches (
  id uuid primary key default gen_random_uuid(),
  name character varying(255) not null,
  source_file character varying(255),
  preset_key character varying(50),
  grade_code character varying(10),
  exam_round_code character varying(50),
  week_range character varying(20),
  total_tasks integer not null default 0,
  pending_tasks integer not null default 0,
  processing_tasks integer not null default 0,
  completed_tasks integer not null default 0,
  failed_tasks integer not null default 0,
  config jsonb default '{}'::jsonb,
  status character varying(20) not null default 'pending'::character varying,
  n8n_workflow_id character varying(255),
  n8n_execution_id character varying(255),
  created_by uuid constraint task_batches_created_by_fkey references auth.users (id) on delete set null,
  created_at timestamptz default now(),
  started_at timestamptz,
  completed_at timestamptz,
  updated_at timestamptz default now(),
  batch_type character varying(50) default 'generic'::character varying,
  orchestrator_config_id uuid constraint task_batches_orchestrator_config_id_fkey references public.lab_orchestrator_configs (id),
  launch_id uuid,
  finished_tasks integer default 0,
  is_public boolean default false,
  execution_delay_seconds integer default 0
);

create table public.ai_tasks (
  id uuid primary key default gen_random_uuid(),
  task_type character varying(50) not null,
  status public.ai_task_status not null default 'plan'::public.ai_task_status,
  input_data jsonb default '{}'::jsonb,
  output_data jsonb,
  error_message text,
  user_id uuid constraint ai_tasks_user_id_fkey references auth.users (id) on delete cascade,
  n8n_execution_id character varying(100),
  created_at timestamptz default now(),
  started_at timestamptz,
  completed_at timestamptz,
  orchestrator_tracking jsonb,
  agent_id character varying(20) default 'agent_1'::character varying,
  batch_priority timestamptz,
  test_mode boolean default false,
  batch_id uuid constraint ai_tasks_batch_id_fkey references public.task_batches (id) on delete cascade,
  lo_code character varying(100),
  sequence integer,
  phase_code character varying(50),
  retry_count integer default 0,
  step_id uuid constraint ai_tasks_step_id_fkey references public.orchestrator_steps (id) on delete set null,
  parent_task_id uuid constraint ai_tasks_parent_task_id_fkey references public.ai_tasks (id) on delete set null,
  step_number integer default 1,
  total_steps integer,
  next_task_config jsonb,
  orchestrator_execution_id uuid constraint ai_tasks_orchestrator_execution_id_fkey references public.orchestrator_executions (id) on delete set null,
  step_execution_id uuid constraint ai_tasks_step_execution_id_fkey references public.step_executions (id) on delete set null,
  requires_approval boolean default false,
  approved_at timestamptz,
  approved_by uuid constraint ai_tasks_approved_by_fkey references auth.users (id) on delete set null,
  edited_output_data jsonb,
  edit_notes text,
  prompt_template_id text constraint ai_tasks_prompt_template_id_fkey references public.prompt_templates (id) on delete set null,
  root_task_id uuid constraint ai_tasks_root_task_id_fkey references public.ai_tasks (id) on delete set null,
  hierarchy_path jsonb default '[]'::jsonb,
  stage_key character varying(50),
  extra jsonb default '{}'::jsonb,
  split_group_id uuid,
  launch_id uuid,
  tier_source character varying(20) default null
);

create table public.user_api_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null,
  key_name character varying(100) not null,
  api_key_encrypted text not null,
  model_preference character varying(50) not null default 'gemini-2.5-flash'::character varying,
  thinking_mode_enabled boolean not null default false,
  thinking_token_limit integer not null default 8000,
  is_active boolean not null default true,
  priority integer not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  pool_type public.api_key_pool_type default 'personal'::public.api_key_pool_type,
  constraint uq_user_key_name unique (user_id, key_name)
);

create table public.api_key_health (
  user_api_key_id uuid primary key constraint api_key_health_user_api_key_id_fkey references public.user_api_keys (id) on delete cascade,
  last_used_at timestamptz,
  last_success_at timestamptz,
  last_failure_at timestamptz,
  consecutive_failures integer not null default 0,
  total_requests integer not null default 0,
  successful_requests integer not null default 0,
  failed_requests integer not null default 0,
  blocked_until timestamptz,
  block_reason character varying(255),
  last_error_code character varying(50),
  updated_at timestamptz not null default now(),
  user_id uuid constraint api_key_health_user_id_fkey references auth.users (id) on delete set null
);

create table public.api_key_usage_log (
  id uuid primary key default gen_random_uuid(),
  user_api_key_id uuid not null constraint api_key_usage_log_user_api_key_id_fkey references public.user_api_keys (id) on delete cascade,
  task_id uuid,
  job_id uuid,
  request_type character varying(50),
  model_used character varying(50),
  tokens_used integer,
  success boolean,
  error_code character varying(50),
  error_message text,
  latency_ms integer,
  used_at timestamptz not null default now(),
  metadata_json jsonb,
  user_id uuid constraint api_key_usage_log_user_id_fkey references auth.users (id) on delete set null
);

create table public.user_profiles (
  id uuid primary key,
  email text not null,
  full_name text,
  role character varying not null default 'user'::character varying,
  avatar_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  username text unique,
  settings jsonb,
  tier character varying default 'free'::character varying
);

create table public.user_usage (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  month character varying(7) not null,
  task_count integer default 0,
  token_input_count bigint default 0,
  token_output_count bigint default 0,
  updated_at timestamptz default now(),
  unique (user_id, month)
);

-- The free tier's other tables (migration 20260226101217 and the role
-- system): notifications, subscriptions, the model catalog.
create table public.notifications (
  id uuid primary key default gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  type text,
  task_id uuid,
  sent_at timestamptz default now()
);
create table public.user_subscriptions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  tier character varying default 'free'
);
create table public.ai_model_settings (
  id uuid primary key default gen_random_uuid(),
  model_id text not null,
  name text not null,
  is_active boolean default true,
  free_tier_rpm integer,
  free_tier_tpm integer,
  free_tier_rpd integer,
  user_id uuid references auth.users (id) on delete cascade,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  constraint ai_model_settings_user_model_unique unique (user_id, model_id)
);

------------------------------------------------------------------------------
-- Functions (signatures as the original has them; stand-in bodies).
------------------------------------------------------------------------------
create function public.is_admin() returns boolean language sql security definer stable as $$
  select exists (select 1 from public.user_profiles p where p.id = auth.uid() and p.role in ('admin', 'superadmin'))
$$;
create function public.get_my_role() returns character varying language sql security definer stable as $$
  select role from public.user_profiles where id = auth.uid()
$$;
create function public.approve_task(p_task_id uuid, p_user_id uuid, p_edited_output jsonb default null, p_edit_notes text default null)
  returns uuid language plpgsql as $$
begin
  update public.ai_tasks set status = 'approved', approved_at = now(), approved_by = p_user_id,
    edited_output_data = p_edited_output, edit_notes = p_edit_notes where id = p_task_id;
  return p_task_id;
end $$;
create function public.get_batch_progress(p_batch_id uuid) returns table (
  batch_id uuid, batch_name character varying, grade_code character varying, preset_key character varying,
  total_tasks integer, pending_tasks integer, processing_tasks integer, completed_tasks integer, failed_tasks integer,
  progress_pct numeric, status character varying, started_at timestamptz, elapsed_seconds integer)
  language sql as $$
  select b.id, b.name, b.grade_code, b.preset_key, b.total_tasks, b.pending_tasks, b.processing_tasks, b.completed_tasks,
    b.failed_tasks, 0::numeric, b.status, b.started_at, 0 from public.task_batches b where b.id = p_batch_id
$$;
create function public.get_user_usage(p_user_id uuid) returns table (
  month character varying, task_count integer, token_input_count bigint, token_output_count bigint)
  language sql security definer as $$
  select u.month, u.task_count, u.token_input_count, u.token_output_count from public.user_usage u where u.user_id = p_user_id
$$;
create function public.retry_failed_task(p_task_id uuid) returns void language plpgsql security definer as $$
begin
  update public.ai_tasks set status = 'pending' where id = p_task_id and status = 'failed';
end $$;
create function public.retry_all_failed_in_batch(p_batch_id uuid) returns integer language plpgsql security definer as $$
declare n integer;
begin
  update public.ai_tasks set status = 'pending' where batch_id = p_batch_id and status = 'failed';
  get diagnostics n = row_count;
  return n;
end $$;
create function public.claim_runnable_tasks(batch_limit integer default 20, max_processing integer default 10)
  returns setof public.ai_tasks language sql as $$
  select * from public.ai_tasks where status = 'pending' limit batch_limit
$$;
create function public.increment_finished_task(p_batch_id uuid, p_task_id uuid)
  returns table (is_last_task boolean, finished_count integer, total_count integer)
  language sql security definer as $$ select false, 0, 0 $$;
create function public.increment_finished_task(p_batch_id uuid, p_task_id uuid, p_output_result jsonb default null)
  returns table (is_last_task boolean, finished_count integer, total_count integer)
  language sql security definer as $$ select false, 0, 0 $$;
create function public.sync_batch_counters(p_batch_id uuid) returns void language sql as $$ select $$;
create function public.submit_free_tier_tasks(p_tasks jsonb) returns jsonb language sql security definer as $$
  select jsonb_build_object('success', true)
$$;

-- The 2026-02-28 overload (it inserts into a column no schema has).
create function public.submit_free_tier_tasks(p_batch_id uuid, p_tasks jsonb) returns jsonb language sql security definer as $$
  select jsonb_build_object('success', true)
$$;
-- The original's free-tier triggers on ai_tasks: +1 usage per completed
-- free_pool task, a notification per free_pool insert.
create function public.on_task_completed() returns trigger language plpgsql security definer as $$
begin
  if new.tier_source = 'free_pool' and new.status = 'completed' and old.status is distinct from new.status then
    insert into public.user_usage (user_id, month, task_count) values (new.user_id, to_char(now(), 'YYYY-MM'), 1)
    on conflict (user_id, month) do update set task_count = public.user_usage.task_count + 1;
  end if;
  return new;
end $$;
create trigger trg_task_completed after update on public.ai_tasks
  for each row execute function public.on_task_completed();
create function public.trigger_notification_on_start() returns trigger language plpgsql as $$
begin
  if new.tier_source = 'free_pool' then
    insert into public.notifications (user_id, type, task_id) values (new.user_id, 'STARTED', new.id);
  end if;
  return new;
end $$;
create trigger trg_free_tier_start_notify after insert on public.ai_tasks
  for each row execute function public.trigger_notification_on_start();
create function public.handle_tier_sync() returns trigger language plpgsql security definer as $$
begin
  update public.user_profiles set tier = new.tier where id = new.user_id;
  return new;
end $$;
create trigger tr_sync_tier_to_profile after insert or update of tier on public.user_subscriptions
  for each row execute function public.handle_tier_sync();

-- The rest of the original's functions in public (signatures as the fact
-- sheet lists them), so a later orchable migration that reuses one of these
-- names with another signature is caught by the upgrade test's overload
-- check.
create function public.cleanup_expired_locks() returns void language sql as $$ select $$;
create function public.create_next_stage_tasks(p_parent_task_id uuid, p_tasks text)
  returns table (task_id uuid, sequence integer) language sql as $$ select null::uuid, 0 where false $$;
create function public.create_next_task_in_chain(p_parent_task_id uuid) returns uuid language sql as $$ select null::uuid $$;
create function public.decrement_star_count(p_asset_id uuid) returns void language sql security definer as $$ select $$;
create function public.increment_star_count(p_asset_id uuid) returns void language sql security definer as $$ select $$;
create function public.delete_batch_cascade(p_batch_id uuid) returns void language sql security definer as $$
  delete from public.task_batches where id = p_batch_id
$$;
create function public.get_hierarchy_progress(p_root_task_id uuid) returns table (
  root_task_id uuid, total_tasks integer, completed_tasks integer, failed_tasks integer, pending_tasks integer,
  processing_tasks integer, progress_percentage numeric) language sql as $$ select null::uuid, 0, 0, 0, 0, 0, 0::numeric where false $$;
create function public.get_my_tier() returns character varying language sql security definer stable as $$
  select tier from public.user_profiles where id = auth.uid()
$$;
create function public.increment_sync_barrier(p_sync_group_id uuid, p_task_id uuid) returns table (
  sync_group_id uuid, is_ready boolean, waiting_task_ids jsonb, merge_strategy text, next_template_id text)
  language sql as $$ select null::uuid, false, '[]'::jsonb, null::text, null::text where false $$;
create function public.increment_user_usage(p_user_id uuid, p_tasks integer default 1, p_input_tokens bigint default 0,
  p_output_tokens bigint default 0) returns void language sql security definer as $$ select $$;
create function public.mark_zombie_tasks() returns void language sql as $$ select $$;
create function public.regenerate_task(p_task_id uuid) returns uuid language sql as $$ select p_task_id $$;
create function public.reset_batch_to_pending(p_batch_id uuid, p_include_completed boolean default false)
  returns table (reset_count integer, task_ids uuid[]) language sql as $$ select 0, '{}'::uuid[] $$;
create function public.reset_tasks_to_pending(p_batch_id uuid default null,
  p_status_filter text[] default array['processing', 'failed'], p_reset_retry_count boolean default false)
  returns table (reset_count integer, task_ids uuid[]) language sql as $$ select 0, '{}'::uuid[] $$;
create function public.get_free_tier_usage() returns table (month character varying, task_count integer, task_limit integer)
  language sql security definer as $$ select null::varchar, 0, 30 where false $$;
create function public.cleanup_expired_free_tasks() returns integer language sql as $$ select 0 $$;
create function public.handle_updated_at() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;
create function public.set_current_timestamp_updated_at() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;

-- The original's counter trigger: a row trigger updating the batch row in
-- every task transaction (it double counts with the launcher's totals).
create function public.update_task_batch_counters() returns trigger language plpgsql as $$
begin
  if new.batch_id is not null then
    update public.task_batches set total_tasks = total_tasks + case when tg_op = 'INSERT' then 1 else 0 end
    where id = new.batch_id;
  end if;
  return new;
end $$;
create trigger trigger_update_batch_counters after insert or update of status on public.ai_tasks
  for each row execute function public.update_task_batch_counters();

create function public.update_updated_at_column() returns trigger language plpgsql as $$
begin new.updated_at := now(); return new; end $$;
create trigger update_custom_components_updated_at before update on public.custom_components
  for each row execute function public.update_updated_at_column();

------------------------------------------------------------------------------
-- Views over ai_tasks (security_invoker, as the original's).
------------------------------------------------------------------------------
create view public.v_runnable_tasks with (security_invoker = true) as
select t.*, p.default_ai_settings ->> 'model_id' as model_id, p.next_stage_template_ids, b.status as batch_status, b.name as batch_name
from public.ai_tasks t
left join public.prompt_templates p on p.id = t.prompt_template_id
left join public.task_batches b on b.id = t.batch_id
where t.status = 'plan';
create view public.v_tasks_awaiting_approval with (security_invoker = true) as
select * from public.ai_tasks where status = 'awaiting_approval';
create view public.ai_tasks_with_template with (security_invoker = true) as
select t.*, p.name as template_name from public.ai_tasks t left join public.prompt_templates p on p.id = t.prompt_template_id;

------------------------------------------------------------------------------
-- Row-level security, as permissive as the original's.
------------------------------------------------------------------------------
alter table public.ai_tasks enable row level security;
alter table public.task_batches enable row level security;
alter table public.prompt_templates enable row level security;
alter table public.custom_components enable row level security;
alter table public.lab_orchestrator_configs enable row level security;
alter table public.user_api_keys enable row level security;
alter table public.api_key_health enable row level security;
alter table public.api_key_usage_log enable row level security;
alter table public.user_profiles enable row level security;
alter table public.user_usage enable row level security;

create policy "Admins view all batches" on public.task_batches for select to authenticated using (public.is_admin());
create policy "Admins view all tasks" on public.ai_tasks for select to authenticated using (public.is_admin());
create policy "Authenticated users can create batches" on public.task_batches for insert to authenticated with check (true);
create policy "Authenticated users can create tasks" on public.ai_tasks for insert to authenticated with check (true);
create policy "Authenticated users can update batches" on public.task_batches for update to authenticated using (true);
create policy "Authenticated users can update tasks" on public.ai_tasks for update to authenticated using (true);
create policy "Authenticated users can view all batches" on public.task_batches for select to authenticated using (true);
create policy "Authenticated users can view all tasks" on public.ai_tasks for select to authenticated using (true);
create policy "Service role full access" on public.ai_tasks for all using (auth.role() = 'service_role');
create policy "Service role full access on batches" on public.task_batches for all using (auth.role() = 'service_role');
create policy "Users can create components" on public.custom_components for insert to authenticated with check (auth.uid() = created_by);
create policy "Users can create configs" on public.lab_orchestrator_configs for insert to authenticated with check (auth.uid() = created_by);
create policy "Users can create templates" on public.prompt_templates for insert to authenticated with check (auth.uid() = created_by);
create policy "Users can view own or public templates" on public.prompt_templates for select to authenticated using (created_by = auth.uid() or is_public);
create policy "Users can view own or public configs" on public.lab_orchestrator_configs for select to authenticated using (created_by = auth.uid() or is_public);
create policy "Users can view public or their own components" on public.custom_components for select to authenticated using (created_by = auth.uid() or is_public);
create policy "Users can view their own tasks or tasks in public batches" on public.ai_tasks for select to authenticated using (user_id = auth.uid());
create policy "Users can manage own API keys" on public.user_api_keys for all to authenticated using (user_id = auth.uid());
create policy "View own key health" on public.api_key_health for select to authenticated using (user_id = auth.uid());
create policy "View own key usage logs" on public.api_key_usage_log for select to authenticated using (user_id = auth.uid());
create policy "Users can update own profile" on public.user_profiles for update to authenticated using (id = auth.uid());
create policy "Users can view own profile" on public.user_profiles for select to authenticated using (id = auth.uid());
create policy "Users can view their own usage" on public.user_usage for select using (user_id = auth.uid());

-- Supabase's defaults granted every table to anon and authenticated.
grant all on all tables in schema public to anon, authenticated, service_role;

-- The original's migration history.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text primary key, statements text[], name text);
insert into supabase_migrations.schema_migrations (version, name) values
  ('20260226084351', 'remote_schema'), ('20260226090000', 'original'), ('20260226095433', 'original'),
  ('20260226101217', 'original'), ('20260228062227', 'original'), ('20260301070000', 'original'),
  ('20260301083000', 'original'), ('20260301090000', 'original'), ('20260301091500', 'original'),
  ('20260301', 'add_sync_batch_counters_rpc'), ('20260308170000', 'original');
