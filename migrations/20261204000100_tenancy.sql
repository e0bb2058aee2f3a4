-- Tenant isolation against a hostile tenant (SPEC §14; docs/threat-model.md).
--
-- Every signed-in user may write any column of their own rows through
-- PostgREST and knows other users' ids. This migration makes sure that such
-- a user can only ever harm themselves:
--
--   1. Engine state belongs to the engine. Lease, attempts, idempotency key
--      and approved_by are reset or kept when a user (not an engine function)
--      writes a task; idempotency keys are unique per owner; a launch id
--      belongs to the user whose batch first used it; parent_task_id and
--      root_task_id must name the writer's own tasks (one error for "someone
--      else's" and "does not exist", so no existence oracle).
--   2. Every scope query of the successor/barrier logic filters on the
--      triggering task's owner, template lookups accept only the owner's
--      templates or usable foreign ones (public, or part of a public
--      orchestrator config), and children are always owned by the triggering
--      task's owner.
--   3. The service identity (BYPASSRLS) runs no engine logic: the sweeper's
--      requeue_expired_leases only flips leases and names the owners of tasks
--      that ran out of attempts; giving up on them (and the barrier re-check
--      downstream) runs as the owner through fail_expired_tasks.
--   4. Fan-out, child input bytes and lineage depth are bounded
--      (orchable.engine_limits, set by the service at start).
--
-- "Engine" writes are those made inside the SQL API functions below: they
-- set the transaction-local setting orchable.engine = on. PostgREST offers
-- no way for a client to set it (it runs one statement per request and sets
-- only request.* and role settings); the functions that set it are the
-- audited SQL API.

------------------------------------------------------------------------------
-- Engine limits (one row). The service writes its configured values at
-- start (set_engine_limits, service_role); users can read them.
------------------------------------------------------------------------------
create table if not exists orchable.engine_limits (
  id boolean primary key default true constraint engine_limits_one_row check (id),
  max_split_items integer not null default 10000,
  max_child_input_bytes bigint not null default 67108864,
  max_depth integer not null default 100,
  updated_at timestamptz not null default now()
);
insert into orchable.engine_limits (id) values (true) on conflict (id) do nothing;
revoke all on orchable.engine_limits from public, anon, authenticated;
grant select on orchable.engine_limits to authenticated, service_role;
grant update on orchable.engine_limits to service_role;

create or replace function public.set_engine_limits(
  p_max_split_items integer default null,
  p_max_child_input_bytes bigint default null,
  p_max_depth integer default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  l orchable.engine_limits;
begin
  if coalesce(p_max_split_items, 1) < 1 or coalesce(p_max_child_input_bytes, 1) < 1 or coalesce(p_max_depth, 2) < 2 then
    raise exception using errcode = '22023', message = 'engine limits must be positive (max_depth at least 2)';
  end if;
  update orchable.engine_limits set
    max_split_items = coalesce(p_max_split_items, max_split_items),
    max_child_input_bytes = coalesce(p_max_child_input_bytes, max_child_input_bytes),
    max_depth = coalesce(p_max_depth, max_depth),
    updated_at = now()
  where id
  returning * into l;
  return jsonb_build_object('max_split_items', l.max_split_items, 'max_child_input_bytes', l.max_child_input_bytes,
                            'max_depth', l.max_depth);
end
$$;

------------------------------------------------------------------------------
-- Engine mode.
------------------------------------------------------------------------------
create or replace function orchable.engine_on() returns void
  language sql volatile
  set search_path = ''
as $$
  select set_config('orchable.engine', 'on', true)
$$;

-- The caller's user id; raises when the caller is not a signed-in user
-- (service_role has no business running engine logic).
create or replace function orchable.require_user(fn text) returns uuid
  language plpgsql stable
  set search_path = ''
as $$
declare
  uid uuid := (select auth.uid());
begin
  if uid is null then
    raise exception using errcode = '42501',
      message = format('%s must be called as a signed-in user (the task owner), not as the service identity', fn);
  end if;
  return uid;
end
$$;

------------------------------------------------------------------------------
-- Idempotency keys are unique per owner: another tenant cannot squat them.
------------------------------------------------------------------------------
do $$
begin
  if exists (select 1 from pg_constraint where conname = 'ai_tasks_idempotency_key_key'
             and conrelid = 'public.ai_tasks'::regclass) then
    alter table public.ai_tasks drop constraint ai_tasks_idempotency_key_key;
  end if;
  if not exists (select 1 from pg_constraint where conname = 'ai_tasks_owner_idempotency_key'
                 and conrelid = 'public.ai_tasks'::regclass) then
    alter table public.ai_tasks add constraint ai_tasks_owner_idempotency_key unique (user_id, idempotency_key);
  end if;
end
$$;

------------------------------------------------------------------------------
-- Row triggers: engine-owned columns.
------------------------------------------------------------------------------
create or replace function public.ai_tasks_before_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  engine boolean := coalesce(current_setting('orchable.engine', true), '') = 'on';
begin
  if tg_op = 'INSERT' then
    new.hierarchy_path := coalesce(new.hierarchy_path, '[]'::jsonb);
    new.retry_count := coalesce(new.retry_count, 0);
    new.attempts := coalesce(new.attempts, 0);
    new.step_number := coalesce(new.step_number, 1);
    new.extra := coalesce(new.extra, '{}'::jsonb);
    new.input_data := coalesce(new.input_data, '{}'::jsonb);
    new.task_type := coalesce(new.task_type, 'generic');
    new.status := coalesce(new.status, 'plan');
    new.run_after := coalesce(new.run_after, now());
    new.requires_approval := coalesce(new.requires_approval, false);
    new.created_at := coalesce(new.created_at, now());
    new.user_id := coalesce(new.user_id, auth.uid());
    if not engine then
      -- A client's row starts with no engine state, whatever it sent (the
      -- front end upserts whole rows it read with select *).
      new.locked_until := null;
      new.locked_by := null;
      new.attempts := 0;
      new.idempotency_key := null;
      new.approved_by := case when new.approved_by is null then null else auth.uid() end;
    end if;
  else
    new.hierarchy_path := coalesce(new.hierarchy_path, '[]'::jsonb);
    new.retry_count := coalesce(new.retry_count, old.retry_count);
    new.attempts := coalesce(new.attempts, old.attempts);
    new.step_number := coalesce(new.step_number, old.step_number);
    new.extra := coalesce(new.extra, '{}'::jsonb);
    new.run_after := coalesce(new.run_after, now());
    new.requires_approval := coalesce(new.requires_approval, false);
    if not engine then
      -- Engine state is the engine's: a client's update keeps it.
      new.locked_until := old.locked_until;
      new.locked_by := old.locked_by;
      new.attempts := old.attempts;
      new.idempotency_key := old.idempotency_key;
      if new.approved_by is distinct from old.approved_by then
        new.approved_by := case when new.approved_by is null then null else auth.uid() end;
      end if;
    end if;
  end if;
  -- The original's retry RPCs and browser worker wrote `pending` for "queued";
  -- the engine's single runnable state is `plan`.
  if new.status = 'pending' then
    new.status := 'plan';
  end if;
  -- Leaving `processing` always drops the lease.
  if new.status <> 'processing' then
    new.locked_until := null;
    new.locked_by := null;
  end if;
  new.updated_at := now();
  return new;
end
$$;

-- References a client writes must name the writer's own tasks. Checked after
-- the row (so rows of the same bulk upsert and a root_task_id equal to the
-- row's own id are seen) and before the foreign-key triggers (trigger names
-- sort "Orchable…" before "RI_ConstraintTrigger…"), with one error for "not
-- yours" and "does not exist": no existence oracle.
create or replace function orchable.ai_tasks_check_refs() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if coalesce(current_setting('orchable.engine', true), '') = 'on' then
    return null;
  end if;
  if new.parent_task_id is not null
     and (tg_op = 'INSERT' or new.parent_task_id is distinct from old.parent_task_id)
     and not exists (select 1 from public.ai_tasks p where p.id = new.parent_task_id and p.user_id = new.user_id) then
    raise exception using errcode = '42501',
      message = 'parent_task_id must reference one of your own tasks';
  end if;
  if new.root_task_id is not null
     and (tg_op = 'INSERT' or new.root_task_id is distinct from old.root_task_id)
     and not exists (select 1 from public.ai_tasks p where p.id = new.root_task_id and p.user_id = new.user_id) then
    raise exception using errcode = '42501',
      message = 'root_task_id must reference one of your own tasks';
  end if;
  return null;
end
$$;

drop trigger if exists "Orchable_ai_tasks_check_refs" on public.ai_tasks;
create trigger "Orchable_ai_tasks_check_refs"
  after insert or update of parent_task_id, root_task_id on public.ai_tasks
  for each row
  when (new.parent_task_id is not null or new.root_task_id is not null)
  execute function orchable.ai_tasks_check_refs();

-- A launch id belongs to the user whose batch first used it. SECURITY
-- DEFINER: it must see other users' batches; it answers one boolean about
-- the given id and reads nothing else.
create or replace function orchable.launch_id_taken(p_launch_id uuid, p_owner uuid) returns boolean
  language sql stable
  security definer
  set search_path = ''
as $$
  select exists (select 1 from public.task_batches b
                 where b.launch_id = p_launch_id and b.created_by is distinct from p_owner)
$$;

create or replace function public.task_batches_before_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new.orchestrator_config_id := coalesce(new.orchestrator_config_id, new.orchestrator_id);
  new.orchestrator_id := new.orchestrator_config_id;
  if tg_op = 'INSERT' then
    new.created_by := coalesce(new.created_by, auth.uid());
    new.global_context := coalesce(new.global_context, '{}'::jsonb);
    new.execution_delay_seconds := coalesce(new.execution_delay_seconds, 0);
    new.status := coalesce(new.status, 'pending');
    new.name := coalesce(new.name, 'Batch');
    -- Counters come from the tasks, never from the client (the original
    -- double-counted: the launcher wrote total_tasks = N and the trigger added N).
    new.total_tasks := 0;
    new.pending_tasks := 0;
    new.processing_tasks := 0;
    new.completed_tasks := 0;
    new.failed_tasks := 0;
    new.finished_tasks := 0;
  elsif coalesce(current_setting('orchable.folding', true), '') <> 'on' then
    -- Only fold_batch_counters() changes the counters.
    new.total_tasks := old.total_tasks;
    new.pending_tasks := old.pending_tasks;
    new.processing_tasks := old.processing_tasks;
    new.completed_tasks := old.completed_tasks;
    new.failed_tasks := old.failed_tasks;
    new.finished_tasks := old.finished_tasks;
  end if;
  if new.launch_id is not null
     and (tg_op = 'INSERT' or new.launch_id is distinct from old.launch_id)
     and orchable.launch_id_taken(new.launch_id, new.created_by) then
    raise exception using errcode = '42501',
      message = 'launch_id is already used by another account; omit it to get a fresh one';
  end if;
  new.updated_at := now();
  return new;
end
$$;

------------------------------------------------------------------------------
-- Templates a user may run: their own, public ones, and the templates of a
-- public orchestrator config (a published pipeline; its owner must be the
-- templates' owner). Another user's template never brings its author's
-- hooks along (the runner ignores them; see docs/threat-model.md).
------------------------------------------------------------------------------
create or replace function orchable.template_usable(p public.prompt_templates, p_user uuid) returns boolean
  language sql stable
  set search_path = ''
as $$
  select p.id is not null and (p.user_id = p_user or p.is_public or exists (
    select 1 from public.lab_orchestrator_configs c
    where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code))
$$;

create or replace function orchable.usable_template(p_id text, p_user uuid) returns public.prompt_templates
  language sql stable
  set search_path = ''
as $$
  select p.* from public.prompt_templates p
  where p.id = p_id and orchable.template_usable(p, p_user)
$$;

drop policy if exists prompt_templates_select on public.prompt_templates;
create policy prompt_templates_select on public.prompt_templates for select to authenticated
  using (user_id = (select auth.uid()) or is_public or exists (
    select 1 from public.lab_orchestrator_configs c
    where c.is_public and c.created_by = prompt_templates.user_id and c.id::text = prompt_templates.organization_code));
-- References a template's author writes (next_stage_template_id,
-- custom_component_id) must name rows the author can read. A trigger, not
-- the policy: a policy on prompt_templates that reads prompt_templates
-- recurses. One error for "not yours" and "does not exist".
create or replace function orchable.prompt_templates_check_refs() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if new.next_stage_template_id is not null
     and (tg_op = 'INSERT' or new.next_stage_template_id is distinct from old.next_stage_template_id)
     and (orchable.usable_template(new.next_stage_template_id, new.user_id)).id is null then
    raise exception using errcode = '42501',
      message = 'next_stage_template_id must reference a template you can use';
  end if;
  if new.custom_component_id is not null
     and (tg_op = 'INSERT' or new.custom_component_id is distinct from old.custom_component_id)
     and not exists (select 1 from public.custom_components c
                     where c.id = new.custom_component_id and (c.created_by = new.user_id or c.is_public)) then
    raise exception using errcode = '42501',
      message = 'custom_component_id must reference a component you can use';
  end if;
  return null;
end
$$;

drop trigger if exists "Orchable_prompt_templates_check_refs" on public.prompt_templates;
create trigger "Orchable_prompt_templates_check_refs"
  after insert or update of next_stage_template_id, custom_component_id on public.prompt_templates
  for each row
  when (new.next_stage_template_id is not null or new.custom_component_id is not null)
  execute function orchable.prompt_templates_check_refs();

-- A task may run a template the owner may use (own, public or published
-- config) and live only in the owner's batch. parent/root are checked by
-- the trigger above (they may name rows of the same statement).
drop policy if exists ai_tasks_insert_own on public.ai_tasks;
create policy ai_tasks_insert_own on public.ai_tasks for insert to authenticated
  with check (
    user_id = (select auth.uid())
    and (batch_id is null or exists (
      select 1 from public.task_batches b where b.id = batch_id and b.created_by = (select auth.uid())))
    and (prompt_template_id is null or exists (
      select 1 from public.prompt_templates p where p.id = prompt_template_id)));
drop policy if exists ai_tasks_update_own on public.ai_tasks;
create policy ai_tasks_update_own on public.ai_tasks for update to authenticated
  using (user_id = (select auth.uid()))
  with check (
    user_id = (select auth.uid())
    and (batch_id is null or exists (
      select 1 from public.task_batches b where b.id = batch_id and b.created_by = (select auth.uid())))
    and (prompt_template_id is null or exists (
      select 1 from public.prompt_templates p where p.id = prompt_template_id)));

-- A batch may name only an orchestrator config its creator can read.
drop policy if exists task_batches_insert_own on public.task_batches;
create policy task_batches_insert_own on public.task_batches for insert to authenticated
  with check (
    created_by = (select auth.uid())
    and (orchestrator_config_id is null or exists (
      select 1 from public.lab_orchestrator_configs c where c.id = orchestrator_config_id)));
drop policy if exists task_batches_update_own on public.task_batches;
create policy task_batches_update_own on public.task_batches for update to authenticated
  using (created_by = (select auth.uid()))
  with check (
    created_by = (select auth.uid())
    and (orchestrator_config_id is null or exists (
      select 1 from public.lab_orchestrator_configs c where c.id = orchestrator_config_id)));

------------------------------------------------------------------------------
-- Pipeline graph helpers, scoped to what the owner may use.
------------------------------------------------------------------------------

-- The stage keys of every template from which the given template can be
-- reached through next_stage_template_ids, among the templates of the task's
-- owner and of the successor's author (a pipeline is one author's templates;
-- another tenant's template that names ours as its successor is ignored).
create or replace function orchable.upstream_stages(p_template_id text, p_owner uuid, p_author uuid) returns text[]
  language sql stable
  set search_path = ''
as $$
  with recursive up(id) as (
    select p.id from public.prompt_templates p
    where jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? p_template_id
      and (p.user_id = p_owner or p.user_id = p_author)
    union
    select p.id from up
    join public.prompt_templates p
      on jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? up.id
    where p.user_id = p_owner or p.user_id = p_author
  )
  select coalesce(array_agg(distinct t.stage_key) filter (where t.stage_key is not null), '{}')
  from public.prompt_templates t where t.id in (select id from up)
$$;

drop function if exists orchable.upstream_stages(text);

------------------------------------------------------------------------------
-- Barriers (N:1 merge and join), scoped to the triggering task's owner.
-- See 20261126000300_sql_api.sql for the locking argument, unchanged.
-- N:1 merge input (as the original made it): {<merge_path>: [...]} where
-- each completed parent contributes the elements of the array at merge_path
-- (default output_data) of its output, a scalar there is appended, and a
-- parent without the key contributes its whole output.
------------------------------------------------------------------------------
create or replace function orchable.check_barrier(
  trig public.ai_tasks, succ public.prompt_templates, cfg jsonb, deps text[], is_join boolean
) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := trig.user_id;
  scope text := orchable.barrier_scope(trig, cfg, is_join);
  kind text := split_part(scope, ':', 1);
  sb uuid := case when kind = 'batch' then split_part(scope, ':', 2)::uuid end;
  sl uuid := case when kind = 'launch' then split_part(scope, ':', 2)::uuid end;
  sr uuid := case when kind = 'root' then split_part(scope, ':', 2)::uuid end;
  key text := 'barrier/' || succ.id || '/' || scope;
  max_step int;
  merged jsonb;
  merged_count int;
  failed_count int;
  merge_path text;
  dep_outputs jsonb;
  root_input jsonb;
  child_input jsonb;
  last_parent public.ai_tasks;
  rc int;
begin
  perform pg_advisory_xact_lock(hashtext('orchable.barrier:' || owner::text || ':' || key));
  if exists (select 1 from public.ai_tasks c where c.user_id = owner and c.idempotency_key = key) then
    return 0;
  end if;

  if exists (
    select 1 from public.ai_tasks t
    where t.user_id = owner
      and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
      and t.stage_key = any(deps)
      and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval')) then
    return -1;
  end if;
  if exists (
    select 1 from public.ai_tasks t
    where t.user_id = owner
      and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
      and t.stage_key = any(orchable.upstream_stages(succ.id, owner, succ.user_id))
      and t.stage_key is distinct from succ.stage_key
      and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval')) then
    return -1;
  end if;
  select max(t.step_number) into max_step
  from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);
  max_step := coalesce(max_step, trig.step_number);

  select * into last_parent from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
    and t.stage_key = any(deps) and t.status in ('completed', 'approved')
  order by t.completed_at desc nulls last, t.id desc
  limit 1;

  select count(*) filter (where t.status in ('completed', 'approved', 'skipped')),
         count(*) filter (where t.status in ('failed', 'cancelled'))
    into merged_count, failed_count
  from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);

  if last_parent.id is null then
    return 0;
  end if;
  if last_parent.user_id is distinct from owner then
    raise exception using errcode = '42501', message = 'barrier parent belongs to another owner; refusing';
  end if;

  if is_join then
    select input_data into root_input from public.ai_tasks
    where id = coalesce(last_parent.root_task_id, last_parent.id) and user_id = owner;
    select coalesce(jsonb_object_agg(stage_key, outs), '{}'::jsonb) into dep_outputs
    from (
      select t.stage_key,
             case when count(*) = 1 then (array_agg(coalesce(t.edited_output_data, t.output_data)))[1]
                  else jsonb_agg(coalesce(t.edited_output_data, t.output_data) order by t.sequence, t.created_at) end as outs
      from public.ai_tasks t
      where t.user_id = owner
        and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
      group by t.stage_key
    ) s;
    child_input := coalesce(root_input, '{}'::jsonb) || dep_outputs;
  else
    merge_path := coalesce(nullif(cfg ->> 'merge_path', ''), 'output_data');
    select coalesce(jsonb_agg(e order by root_seq, seq, created_at, id, ord), '[]'::jsonb) into merged
    from (
      select (select r.sequence from public.ai_tasks r where r.id = t.root_task_id and r.user_id = owner) as root_seq,
             t.sequence as seq, t.created_at, t.id, y.ord, y.e
      from public.ai_tasks t
      cross join lateral (select coalesce(t.edited_output_data, t.output_data) as o) oo
      cross join lateral (select orchable.json_path(oo.o, merge_path) as v) vv
      cross join lateral (
        select case
          when oo.o is null then '[]'::jsonb
          when jsonb_typeof(vv.v) = 'array' then vv.v
          when vv.v is null then jsonb_build_array(oo.o)
          else jsonb_build_array(vv.v)
        end as v
      ) x
      cross join lateral jsonb_array_elements(x.v) with ordinality as y(e, ord)
      where t.user_id = owner
        and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
    ) m;
    child_input := orchable.return_along_with(last_parent.input_data, cfg,
      jsonb_build_object(merge_path, merged, '_merged_from_count', merged_count, '_failed_count', failed_count));
  end if;

  insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
    hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
    extra, idempotency_key)
  values (coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan', child_input, owner,
    last_parent.batch_id, last_parent.launch_id, coalesce(last_parent.root_task_id, last_parent.id), last_parent.id,
    coalesce(last_parent.hierarchy_path, '[]'::jsonb) || to_jsonb(last_parent.id::text),
    max_step + 1, succ.stage_key, succ.id, coalesce(succ.requires_approval, false), 1, 1, last_parent.test_mode,
    jsonb_build_object('parent_stage_key', last_parent.stage_key, 'parent_task_id', last_parent.id,
      'merge_path', case when not is_join then merge_path end,
      '_merged_from_count', merged_count, '_failed_count', failed_count,
      '_barrier', jsonb_build_object('stages', to_jsonb(deps), 'scope', scope, 'kind', case when is_join then 'join' else 'merge' end)),
    key)
  on conflict (user_id, idempotency_key) do nothing;
  get diagnostics rc = row_count;
  return rc;
end
$$;

------------------------------------------------------------------------------
-- Successor creation, as the parent's owner, with bounds.
------------------------------------------------------------------------------

-- The stages along a task's lineage from the last task that ran p_template
-- (the cycle that brings the lineage back to it), or the last ten when it
-- never ran: for the depth cap's message.
create or replace function orchable.lineage_cycle(t public.ai_tasks, p_template text) returns text
  language sql stable
  set search_path = ''
as $$
  with path as (
    select x.o, coalesce(p.stage_key, p.prompt_template_id, '?') as k, p.prompt_template_id as tid
    from jsonb_array_elements_text(coalesce(t.hierarchy_path, '[]'::jsonb) || to_jsonb(t.id::text)) with ordinality x(id, o)
    join public.ai_tasks p on p.id::text = x.id and p.user_id = t.user_id
  ), start as (
    select coalesce(max(o) filter (where tid = p_template), greatest(max(o) - 9, 1)) as o from path
  )
  select coalesce(string_agg(k, ' → ' order by o), '') from path where o >= (select o from start)
$$;

create or replace function orchable.spawn_successors(parent public.ai_tasks, only_barriers boolean)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := parent.user_id;
  lim orchable.engine_limits;
  tpl public.prompt_templates;
  succ public.prompt_templates;
  result jsonb := coalesce(parent.edited_output_data, parent.output_data);
  sid text;
  cfg jsonb;
  card text;
  deps text[];
  is_join boolean;
  arr jsonb;
  n int;
  created int := 0;
  waiting int := 0;
  bsize int;
  parent_path jsonb := coalesce(parent.hierarchy_path, '[]'::jsonb) || to_jsonb(parent.id::text);
  root uuid := coalesce(parent.root_task_id, parent.id);
  rc int;
  plan jsonb := '[]'::jsonb;
  item jsonb;
  dead_end boolean := only_barriers;
  est bigint;
  in_size bigint;
begin
  -- Defence in depth: the engine acts for the parent's owner only.
  if (select auth.uid()) is not null and owner is distinct from (select auth.uid()) then
    raise exception using errcode = '42501', message = 'spawn_successors: the task belongs to another owner';
  end if;
  select * into lim from orchable.engine_limits where id;
  tpl := orchable.usable_template(parent.prompt_template_id, owner);
  if parent.batch_id is not null
     and exists (select 1 from public.task_batches where id = parent.batch_id and created_by = owner and status = 'cancelled') then
    return jsonb_build_object('created', 0, 'waiting', 0);
  end if;

  -- Pass 1: resolve every successor and validate splits and bounds before
  -- inserting anything, so a bad split fails the parent without half its
  -- children.
  foreach sid in array orchable.successor_ids(parent, tpl) loop
    succ := orchable.usable_template(sid, owner);
    if succ.id is null then
      if only_barriers then
        continue;
      end if;
      return jsonb_build_object('error', format('successor template %s does not exist or is not visible', sid));
    end if;
    cfg := orchable.successor_config(parent, succ);
    card := orchable.cardinality(cfg);
    deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
    is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from parent.stage_key);
    if not only_barriers and parent.step_number + 1 > lim.max_depth then
      return jsonb_build_object('error', format(
        'lineage depth cap reached: stage %s would run at step %s, above the limit of %s (MAX_LINEAGE_DEPTH); the pipeline loops: %s → %s',
        coalesce(succ.stage_key, succ.id), parent.step_number + 1, lim.max_depth,
        left(orchable.lineage_cycle(parent, succ.id), 400), coalesce(succ.stage_key, succ.id)));
    end if;
    if not is_join and card = '1:N' and not only_barriers then
      arr := orchable.json_path(result, cfg ->> 'split_path');
      if arr is null or jsonb_typeof(arr) <> 'array' then
        return jsonb_build_object('error', format('split_path %s of stage %s did not resolve to an array in the output of task %s',
          coalesce(quote_literal(cfg ->> 'split_path'), '(missing)'), coalesce(succ.stage_key, succ.id), parent.id));
      end if;
      n := jsonb_array_length(arr);
      if n > lim.max_split_items then
        return jsonb_build_object('error', format(
          'split of stage %s has %s items, above the limit of %s (MAX_SPLIT_ITEMS)',
          coalesce(succ.stage_key, succ.id), n, lim.max_split_items));
      end if;
      -- Every child carries the parent's input plus its item(s).
      in_size := octet_length(coalesce(parent.input_data, '{}'::jsonb)::text);
      bsize := case when cfg ->> 'batch_size' ~ '^[0-9]{1,6}$' then greatest((cfg ->> 'batch_size')::int, 1) else 10 end;
      est := case when coalesce(cfg ->> 'split_mode', 'per_item') = 'per_batch'
                  then ceil(n::numeric / bsize)::bigint * in_size else n::bigint * in_size end
             + octet_length(arr::text);
      if est > lim.max_child_input_bytes then
        return jsonb_build_object('error', format(
          'split of stage %s would write about %s bytes of child input (%s children × %s bytes of parent input), above the limit of %s (MAX_CHILD_INPUT_BYTES)',
          coalesce(succ.stage_key, succ.id), est, n, in_size, lim.max_child_input_bytes));
      end if;
    end if;
    plan := plan || jsonb_build_object('sid', sid, 'cfg', cfg, 'card', card, 'deps', to_jsonb(deps), 'join', is_join);
  end loop;

  for item in select e from jsonb_array_elements(plan) with ordinality x(e, o)
              order by (e ->> 'join')::boolean or e ->> 'card' = 'N:1', o loop
    succ := orchable.usable_template(item ->> 'sid', owner);
    cfg := item -> 'cfg';
    card := item ->> 'card';
    is_join := (item ->> 'join')::boolean;
    deps := array(select jsonb_array_elements_text(item -> 'deps'));

    if is_join or card = 'N:1' then
      if not is_join then
        deps := array[parent.stage_key];
      end if;
      rc := orchable.check_barrier(parent, succ, cfg, deps, is_join);
      if rc < 0 then
        waiting := waiting + 1;
      else
        created := created + rc;
      end if;

    elsif only_barriers then
      continue;

    elsif card = '1:1' then
      insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
        hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
        split_group_id, extra, idempotency_key)
      values (coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
        orchable.return_along_with(parent.input_data, cfg, result), owner,
        parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1, succ.stage_key, succ.id,
        coalesce(succ.requires_approval, false), 1, 1, parent.test_mode, parent.split_group_id,
        jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
        parent.id || '/' || succ.id)
      on conflict (user_id, idempotency_key) do nothing;
      get diagnostics rc = row_count;
      created := created + rc;

    else -- 1:N
      arr := orchable.json_path(result, cfg ->> 'split_path');
      n := jsonb_array_length(arr);
      if n = 0 then
        dead_end := true;
      end if;
      if coalesce(cfg ->> 'split_mode', 'per_item') = 'per_batch' then
        bsize := case when cfg ->> 'batch_size' ~ '^[0-9]{1,6}$' then greatest((cfg ->> 'batch_size')::int, 1) else 10 end;
        insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key)
        select coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object(
              'items', (select jsonb_agg(e order by o) from jsonb_array_elements(arr) with ordinality x(e, o)
                        where o > b * bsize and o <= (b + 1) * bsize),
              '_batch_index', b)),
          owner, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), b + 1, ceil(n::numeric / bsize)::int,
          parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/b' || b
        from generate_series(0, ceil(n::numeric / bsize)::int - 1) b
        on conflict (user_id, idempotency_key) do nothing;
      else
        insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key)
        select coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object('item', e, '_split_index', o - 1, '_split_total', n)),
          owner, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), o, n, parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/' || (o - 1)
        from jsonb_array_elements(arr) with ordinality x(e, o)
        on conflict (user_id, idempotency_key) do nothing;
      end if;
      get diagnostics rc = row_count;
      created := created + rc;
    end if;
  end loop;

  if dead_end then
    created := created + orchable.recheck_downstream(parent);
  end if;
  return jsonb_build_object('created', created, 'waiting', waiting);
end
$$;

create or replace function orchable.recheck_downstream(t public.ai_tasks) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := t.user_id;
  frontier text[];
  nxt text[];
  seen text[] := '{}';
  x public.prompt_templates;
  start public.prompt_templates;
  succ public.prompt_templates;
  sid text;
  cfg jsonb;
  deps text[];
  is_join boolean;
  created int := 0;
  depth int := 0;
  rc int;
begin
  start := orchable.usable_template(t.prompt_template_id, owner);
  frontier := array(select jsonb_array_elements_text(case when jsonb_typeof(start.next_stage_template_ids) = 'array'
                                                          then start.next_stage_template_ids else '[]'::jsonb end));
  while cardinality(frontier) > 0 and depth < 20 loop
    depth := depth + 1;
    nxt := '{}';
    foreach sid in array frontier loop
      continue when sid = any(seen);
      seen := seen || sid;
      x := orchable.usable_template(sid, owner);
      continue when x.id is null;
      for succ in
        select p.* from public.prompt_templates p
        where p.id in (select jsonb_array_elements_text(case when jsonb_typeof(x.next_stage_template_ids) = 'array'
                                                            then x.next_stage_template_ids else '[]'::jsonb end))
          and orchable.template_usable(p, owner)
      loop
        cfg := coalesce(succ.stage_config, '{}'::jsonb);
        deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
        is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from x.stage_key);
        continue when not is_join and orchable.cardinality(cfg) <> 'N:1';
        if not is_join then
          deps := array[x.stage_key];
        end if;
        rc := orchable.check_barrier(t, succ, cfg, deps, is_join);
        created := created + greatest(rc, 0);
      end loop;
      nxt := nxt || array(select jsonb_array_elements_text(case when jsonb_typeof(x.next_stage_template_ids) = 'array'
                                                               then x.next_stage_template_ids else '[]'::jsonb end));
    end loop;
    frontier := nxt;
  end loop;
  return created;
end
$$;
