-- Upgrade of an original orchable database in place (issue #15).
--
-- An existing orchable project (the TypeScript + n8n system this service
-- replaces) already has ai_tasks, task_batches, prompt_templates and the
-- other shared tables, in another shape (reference/original-schema.md).
-- The schema migration that follows creates its tables with `if not
-- exists`, so it would skip them and then fail on the first engine column.
-- This migration runs before it and, only when it finds the original shape
-- (public.ai_tasks without run_after), brings what it finds to the shape
-- the following migrations expect, keeping every row:
--
--   * the enum ai_task_status gets any value it lacks (rebuilt through text,
--     because a value added with ALTER TYPE … ADD VALUE cannot be used in
--     the transaction that adds it);
--   * the original's counter trigger (trigger_update_batch_counters, which
--     double counts), its functions whose names orchable reuses (every
--     signature, so PostgREST never sees two overloads: PGRST203), the
--     n8n-era counter RPCs, its v_runnable_tasks view and every policy on
--     the shared tables (the permissive "Authenticated users can view all
--     tasks" and friends) are dropped; orchable's own are created by the
--     migrations that follow;
--   * missing columns are added with their defaults, owners are backfilled
--     (prompt_templates.created_by → user_id, key health and usage logs from
--     their key, tasks from their batch or parent), NULLs in columns that
--     are NOT NULL here are filled; api_key_usage_log.job_id becomes text;
--     user_api_keys.pool_type is kept;
--   * task statuses are mapped onto the state machine (docs/schema.md §9.3):
--     pending, running and processing become plan (runnable again: the n8n
--     run that held them is gone), awaiting_approval becomes generated (the
--     approval queue), approved and generated become completed;
--   * tasks the engine would run out of order (a plan task whose parent has
--     not completed: n8n inserted children before approval, and retries reset
--     children to pending) and tasks without an owner are moved, with their
--     descendants, to orchable.upgrade_archive (one jsonb row each, with the
--     reason); the engine creates those successors again when the parent
--     completes or is approved;
--   * batch counters, status, started_at and completed_at are recomputed
--     from the tasks.
--
-- On a new database, or one already in orchable's shape, it does nothing.

do $$
declare
  shared text[] := array['ai_tasks', 'task_batches', 'prompt_templates', 'custom_components',
    'lab_orchestrator_configs', 'user_api_keys', 'api_key_health', 'api_key_usage_log'];
  -- Every function name orchable defines in public, plus the original's
  -- n8n-era counter functions (they write counters and statuses the engine
  -- owns; nothing calls them once n8n is gone).
  reused text[] := array['ai_tasks_before_write', 'ai_tasks_count_delete', 'ai_tasks_count_insert',
    'ai_tasks_count_update', 'approve_task', 'cancel_batch', 'claim_tasks', 'complete_task', 'complete_tasks',
    'due_tasks', 'fail_expired_tasks', 'fail_task', 'fold_batch_counters', 'get_batch_progress',
    'import_pipeline', 'launch_batch', 'pause_batch', 'prompt_templates_before_write', 'record_key_outcome',
    'reject_task', 'release_task', 'renew_leases', 'requeue_expired_leases', 'resume_batch',
    'retry_all_failed_in_batch', 'retry_failed_task', 'set_engine_limits', 'set_updated_at',
    'task_batches_before_write', 'task_status_bucket', 'usable_api_keys', 'orchable_send_signed_webhook',
    'update_task_batch_counters', 'increment_finished_task', 'sync_batch_counters'];
  wanted text[] := array['plan', 'pending', 'running', 'processing', 'awaiting_approval', 'approved',
    'completed', 'generated', 'failed', 'cancelled', 'skipped'];
  r record;
  views jsonb := '[]'::jsonb;
  n integer;
begin
  if to_regclass('public.ai_tasks') is null
     or exists (select 1 from pg_attribute where attrelid = to_regclass('public.ai_tasks')
                and attname = 'run_after' and not attisdropped) then
    return;
  end if;
  raise notice 'orchable: upgrading an original orchable database in place';

  create schema if not exists orchable;
  create table if not exists orchable.upgrade_archive (
    id bigint generated always as identity primary key,
    table_name text not null,
    row_data jsonb not null,
    reason text not null,
    archived_at timestamptz not null default now()
  );
  revoke all on orchable.upgrade_archive from public;
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke all on orchable.upgrade_archive from anon, authenticated;
  end if;

  ----------------------------------------------------------------------------
  -- The original's triggers, functions, views and policies.
  ----------------------------------------------------------------------------
  drop trigger if exists trigger_update_batch_counters on public.ai_tasks;
  for r in
    select p.oid::regprocedure as sig
    from pg_proc p join pg_namespace ns on ns.oid = p.pronamespace
    where ns.nspname = 'public' and p.proname = any(reused)
  loop
    execute format('drop function %s', r.sig);
  end loop;
  for r in select policyname, tablename from pg_policies where schemaname = 'public' and tablename = any(shared) loop
    execute format('drop policy %I on public.%I', r.policyname, r.tablename);
  end loop;
  -- Orchable's view of the same name has other columns.
  drop view if exists public.v_runnable_tasks;

  ----------------------------------------------------------------------------
  -- Status enum: rebuilt through text when the original lacks a value.
  ----------------------------------------------------------------------------
  if exists (select 1 from unnest(wanted) w
             where not exists (select 1 from pg_enum e where e.enumtypid = 'public.ai_task_status'::regtype
                               and e.enumlabel = w)) then
    -- Views over ai_tasks hold the column's type; recreate them afterwards.
    for r in
      select distinct c.oid::regclass::text as name, pg_get_viewdef(c.oid) as def,
             coalesce(c.reloptions, '{}') as opts
      from pg_depend d join pg_rewrite w on w.oid = d.objid join pg_class c on c.oid = w.ev_class
      where d.refobjid = 'public.ai_tasks'::regclass and c.relkind = 'v' and c.oid <> 'public.ai_tasks'::regclass
    loop
      views := views || jsonb_build_object('name', r.name, 'def', r.def, 'opts', array_to_string(r.opts, ','));
      execute format('drop view %s', r.name);
    end loop;
    alter table public.ai_tasks alter column status drop default;
    alter table public.ai_tasks alter column status type text using status::text;
    alter type public.ai_task_status rename to ai_task_status_original;
    create type public.ai_task_status as enum (
      'plan', 'pending', 'running', 'processing', 'awaiting_approval', 'approved',
      'completed', 'generated', 'failed', 'cancelled', 'skipped');
    update public.ai_tasks set status = 'failed' where status <> all(wanted);
    alter table public.ai_tasks alter column status type public.ai_task_status using status::public.ai_task_status;
    alter table public.ai_tasks alter column status set default 'plan';
    for r in select * from jsonb_to_recordset(views) as v(name text, def text, opts text) loop
      execute format('create view %s %s as %s', r.name,
                     case when r.opts <> '' then 'with (' || r.opts || ')' else '' end, r.def);
    end loop;
    drop type if exists public.ai_task_status_original;
  end if;

  ----------------------------------------------------------------------------
  -- Columns orchable has and the original lacks; defaults and NOT NULLs.
  ----------------------------------------------------------------------------
  alter table public.custom_components
    alter column code set default '',
    alter column created_by set default auth.uid();
  update public.custom_components set is_public = coalesce(is_public, false),
    created_at = coalesce(created_at, now()), updated_at = coalesce(updated_at, now())
  where is_public is null or created_at is null or updated_at is null;
  alter table public.custom_components
    alter column is_public set not null, alter column created_at set not null, alter column updated_at set not null;

  alter table public.lab_orchestrator_configs
    add column if not exists execution_delay_seconds integer default 0,
    add column if not exists input_mapping jsonb,
    add column if not exists tags text[],
    alter column steps set default '[]'::jsonb,
    alter column created_by set default auth.uid();
  update public.lab_orchestrator_configs set is_public = coalesce(is_public, false),
    created_at = coalesce(created_at, now()), updated_at = coalesce(updated_at, now())
  where is_public is null or created_at is null or updated_at is null;
  alter table public.lab_orchestrator_configs
    alter column is_public set not null, alter column created_at set not null, alter column updated_at set not null;
  if not exists (select 1 from pg_constraint where conname = 'valid_steps'
                 and conrelid = 'public.lab_orchestrator_configs'::regclass) then
    -- NOT VALID: a config whose steps are not an array is kept as it is;
    -- new and changed rows must hold an array, as on a new database.
    alter table public.lab_orchestrator_configs add constraint valid_steps check (jsonb_typeof(steps) = 'array') not valid;
  end if;

  alter table public.prompt_templates
    add column if not exists system_instruction text,
    add column if not exists user_id uuid references auth.users (id) on delete cascade,
    alter column name drop not null,
    alter column template set default '',
    alter column id set default extensions.gen_random_uuid()::text;
  update public.prompt_templates set user_id = created_by where user_id is null;
  update public.prompt_templates set created_by = user_id where created_by is distinct from user_id;
  update public.prompt_templates set is_public = coalesce(is_public, false),
    created_at = coalesce(created_at, now()), updated_at = coalesce(updated_at, now()),
    next_stage_template_ids = coalesce(next_stage_template_ids, '[]'::jsonb)
  where is_public is null or created_at is null or updated_at is null or next_stage_template_ids is null;
  alter table public.prompt_templates
    alter column is_public set not null, alter column created_at set not null, alter column updated_at set not null;

  alter table public.task_batches
    add column if not exists orchestrator_id uuid,
    add column if not exists global_context jsonb default '{}'::jsonb,
    add column if not exists execution_delay_seconds integer default 0,
    add column if not exists next_start_at timestamptz,
    alter column name set default 'Batch',
    alter column created_by set default auth.uid();
  update public.task_batches set orchestrator_id = orchestrator_config_id
  where orchestrator_id is distinct from orchestrator_config_id;
  update public.task_batches set is_public = coalesce(is_public, false),
    created_at = coalesce(created_at, now()), updated_at = coalesce(updated_at, now())
  where is_public is null or created_at is null or updated_at is null;
  alter table public.task_batches
    alter column is_public set not null, alter column created_at set not null, alter column updated_at set not null;

  alter table public.ai_tasks
    add column if not exists updated_at timestamptz not null default now(),
    add column if not exists tier_source varchar(20),
    add column if not exists synced_to_client boolean default false,
    add column if not exists attempts integer not null default 0,
    add column if not exists run_after timestamptz not null default now(),
    add column if not exists locked_until timestamptz,
    add column if not exists locked_by text,
    add column if not exists idempotency_key text,
    add column if not exists model_id text,
    add column if not exists model_version text,
    add column if not exists api_key_id uuid,
    add column if not exists prompt_token_count integer,
    add column if not exists candidates_token_count integer,
    add column if not exists thoughts_token_count integer,
    add column if not exists total_token_count integer,
    alter column task_type set default 'generic',
    alter column user_id set default auth.uid();
  update public.ai_tasks set
    created_at = coalesce(created_at, now()), retry_count = coalesce(retry_count, 0),
    step_number = coalesce(step_number, 1), requires_approval = coalesce(requires_approval, false),
    hierarchy_path = coalesce(hierarchy_path, '[]'::jsonb), extra = coalesce(extra, '{}'::jsonb),
    updated_at = coalesce(completed_at, started_at, created_at, now())
  where true;
  alter table public.ai_tasks
    alter column created_at set not null, alter column retry_count set not null,
    alter column step_number set not null, alter column requires_approval set not null,
    alter column hierarchy_path set not null, alter column extra set not null;
  if not exists (select 1 from pg_constraint where conname = 'ai_tasks_idempotency_key_key'
                 and conrelid = 'public.ai_tasks'::regclass)
     and not exists (select 1 from pg_constraint where conname = 'ai_tasks_owner_idempotency_key'
                     and conrelid = 'public.ai_tasks'::regclass) then
    alter table public.ai_tasks add constraint ai_tasks_idempotency_key_key unique (idempotency_key);
  end if;

  alter table public.user_api_keys
    add column if not exists pool_type public.api_key_pool_type default 'personal',
    add column if not exists provider varchar(20) not null default 'gemini'
      constraint user_api_keys_provider_check check (provider in ('gemini', 'deepseek', 'openai', 'qwen', 'minimax')),
    add column if not exists project text,
    add column if not exists deactivated_reason text,
    alter column thinking_mode_enabled drop not null,
    alter column thinking_token_limit drop not null,
    alter column user_id set default auth.uid();
  update public.user_api_keys set pool_type = 'personal' where pool_type is null;
  alter table public.user_api_keys alter column pool_type set not null, alter column pool_type set default 'personal';

  alter table public.api_key_health
    add column if not exists user_id uuid references auth.users (id) on delete cascade,
    alter column user_id set default auth.uid();
  update public.api_key_health h set user_id = k.user_id
  from public.user_api_keys k where k.id = h.user_api_key_id and h.user_id is distinct from k.user_id;
  alter table public.api_key_health alter column user_id set not null;

  alter table public.api_key_usage_log
    add column if not exists user_id uuid references auth.users (id) on delete cascade,
    alter column user_id set default auth.uid(),
    alter column user_api_key_id drop not null,
    alter column job_id type text using job_id::text,
    alter column request_type type text, alter column model_used type text, alter column error_code type text;
  update public.api_key_usage_log l set user_id = k.user_id
  from public.user_api_keys k where k.id = l.user_api_key_id and l.user_id is null;
  with gone as (
    delete from public.api_key_usage_log where user_id is null returning *
  )
  insert into orchable.upgrade_archive (table_name, row_data, reason)
  select 'api_key_usage_log', to_jsonb(g), 'no owner' from gone g;
  alter table public.api_key_usage_log alter column user_id set not null;

  ----------------------------------------------------------------------------
  -- Tasks: owners, roots, statuses.
  ----------------------------------------------------------------------------
  update public.ai_tasks t set user_id = b.created_by
  from public.task_batches b where b.id = t.batch_id and t.user_id is null and b.created_by is not null;
  loop
    update public.ai_tasks t set user_id = p.user_id
    from public.ai_tasks p where p.id = t.parent_task_id and t.user_id is null and p.user_id is not null;
    get diagnostics n = row_count;
    exit when n = 0;
  end loop;
  update public.ai_tasks t set user_id = p.user_id
  from public.prompt_templates p where p.id = t.prompt_template_id and t.user_id is null and p.user_id is not null;

  update public.ai_tasks set root_task_id = id where root_task_id is null and parent_task_id is null;
  loop
    update public.ai_tasks t set root_task_id = p.root_task_id
    from public.ai_tasks p where p.id = t.parent_task_id and t.root_task_id is null and p.root_task_id is not null;
    get diagnostics n = row_count;
    exit when n = 0;
  end loop;

  -- The state machine mapping (docs/schema.md §9.3).
  update public.ai_tasks set status = case status::text
      when 'awaiting_approval' then 'generated'
      when 'approved' then 'completed'
      when 'generated' then 'completed'
      else 'plan' end::public.ai_task_status,
    started_at = case when status::text in ('pending', 'running', 'processing') then null else started_at end,
    run_after = now()
  where status::text in ('pending', 'running', 'processing', 'awaiting_approval', 'approved', 'generated');

  -- Out-of-order and ownerless tasks, with their descendants, to the archive.
  with recursive out_of_order as (
    select t.id, case when t.user_id is null then 'no owner'
                      else 'created before its parent completed; the engine creates it again' end as reason
    from public.ai_tasks t
    left join public.ai_tasks p on p.id = t.parent_task_id
    where t.user_id is null
       or (t.status = 'plan' and t.parent_task_id is not null and p.id is not null
           and p.status not in ('completed', 'skipped'))
    union
    select c.id, o.reason
    from public.ai_tasks c join out_of_order o on c.parent_task_id = o.id
  ), gone as (
    delete from public.ai_tasks t where t.id in (select id from out_of_order) returning t.*
  )
  insert into orchable.upgrade_archive (table_name, row_data, reason)
  select 'ai_tasks', to_jsonb(g), (select min(o.reason) from out_of_order o where o.id = g.id) from gone g;
  alter table public.ai_tasks alter column user_id set not null;

  ----------------------------------------------------------------------------
  -- Batch counters and status from the tasks (the original's trigger double
  -- counted), by the rule of fold_batch_counters.
  ----------------------------------------------------------------------------
  with c as (
    select b.id, count(t.id) as total,
      count(t.id) filter (where t.status::text in ('plan', 'pending', 'awaiting_approval', 'generated')) as pending,
      count(t.id) filter (where t.status::text in ('running', 'processing')) as processing,
      count(t.id) filter (where t.status::text in ('approved', 'completed', 'skipped')) as completed,
      count(t.id) filter (where t.status::text in ('failed', 'cancelled')) as failed,
      max(coalesce(t.completed_at, t.updated_at)) as last_finished,
      min(t.started_at) as first_started
    from public.task_batches b left join public.ai_tasks t on t.batch_id = b.id
    group by b.id
  )
  update public.task_batches b set
    total_tasks = c.total, pending_tasks = c.pending, processing_tasks = c.processing,
    completed_tasks = c.completed, failed_tasks = c.failed, finished_tasks = c.completed + c.failed,
    status = case
      when b.status in ('paused', 'cancelled') then b.status
      when c.total > 0 and c.pending = 0 and c.processing = 0 then case when c.failed > 0 then 'failed' else 'completed' end
      when c.processing > 0 or c.completed > 0 or c.failed > 0 then 'processing'
      when b.status = 'pending' then 'pending'
      else 'processing' end,
    started_at = coalesce(b.started_at, c.first_started),
    completed_at = case
      when b.status = 'cancelled' then coalesce(b.completed_at, c.last_finished, now())
      when b.status <> 'paused' and c.total > 0 and c.pending = 0 and c.processing = 0
        then coalesce(c.last_finished, b.completed_at, now())
      end
  from c where c.id = b.id;
  if not exists (select 1 from pg_constraint where conname = 'task_batches_status_check'
                 and conrelid = 'public.task_batches'::regclass) then
    alter table public.task_batches add constraint task_batches_status_check
      check (status in ('pending', 'processing', 'completed', 'failed', 'paused', 'cancelled'));
  end if;

  select count(*) into n from orchable.upgrade_archive;
  raise notice 'orchable: original database upgraded; % rows moved to orchable.upgrade_archive', n;
end
$$;
