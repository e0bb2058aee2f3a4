-- The SQL API as the task's owner (SPEC §14; docs/threat-model.md). Same
-- signatures and results as 20261126000300_sql_api.sql, plus:
--   * every function that runs engine logic requires a signed-in caller
--     (auth.uid()), scopes every row it touches to that caller, and marks
--     its writes as engine writes (orchable.engine_on), so the row trigger
--     lets it set lease, attempts, idempotency key and approved_by;
--   * claim_tasks returns the template only when the owner may use it;
--   * completions record in extra what the runner reports (hooks of a
--     foreign template ignored);
--   * requeue_expired_leases (service_role) only flips leases: tasks that
--     ran out of attempts are named by owner and given up by
--     fail_expired_tasks as that owner (barrier re-check included).

create or replace function public.claim_tasks(
  p_worker text,
  p_lease_seconds integer default 300,
  p_limit integer default 1,
  p_task_ids uuid[] default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  out jsonb;
  uid uuid := orchable.require_user('claim_tasks');
begin
  perform orchable.engine_on();
  if p_worker is null or p_worker = '' then
    raise exception using errcode = '22023', message = 'p_worker is required';
  end if;
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = '22023', message = 'p_limit must be between 1 and 1000';
  end if;

  with cand as (
    select t.id
    from public.ai_tasks t
    where t.status = 'plan'
      and t.user_id = uid
      and t.run_after <= now()
      and (p_task_ids is null or t.id = any(p_task_ids))
      -- A scalar filter, not NOT EXISTS: as an anti-join the planner assumed
      -- it removed almost every row and sorted the whole queue (O(queue));
      -- this way it walks the runnable index in order and stops at p_limit.
      and (t.batch_id is null or not coalesce((
        select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
        from public.task_batches b where b.id = t.batch_id), false))
    order by t.run_after, t.id
    limit p_limit
    for update of t skip locked
  ), delayed as (
    -- Batches with execution_delay_seconds: one start per delay interval.
    select t.id, b.id as batch_id, b.execution_delay_seconds
    from public.task_batches b
    cross join lateral (
      select t.id from public.ai_tasks t
      where t.batch_id = b.id and t.user_id = uid and t.status = 'plan' and t.run_after <= now()
        and (p_task_ids is null or t.id = any(p_task_ids))
      order by t.run_after, t.id
      limit 1
      for update of t skip locked
    ) t
    where b.execution_delay_seconds > 0
      and b.created_by = uid
      and b.status not in ('paused', 'cancelled')
      and (b.next_start_at is null or b.next_start_at <= now())
    limit greatest(p_limit - (select count(*) from cand), 0)
  ), spaced as (
    -- Re-checked under the row lock: of two concurrent claimers only the
    -- first starts a task of a delayed batch.
    update public.task_batches b
    set next_start_at = now() + make_interval(secs => d.execution_delay_seconds)
    from delayed d
    where b.id = d.batch_id and (b.next_start_at is null or b.next_start_at <= now())
    returning b.id
  ), picked as (
    select id from cand
    union all
    select d.id from delayed d join spaced s on s.id = d.batch_id
  ), upd as (
    update public.ai_tasks t
    set status = 'processing',
        locked_until = now() + make_interval(secs => p_lease_seconds),
        locked_by = p_worker,
        attempts = t.attempts + 1,
        started_at = now()
    from picked
    where t.id = picked.id
    returning t.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'task', to_jsonb(u),
    'template', (select to_jsonb(p) from orchable.usable_template(u.prompt_template_id, uid) p where p.id is not null),
    'batch', (select jsonb_build_object('id', b.id, 'name', b.name, 'status', b.status, 'global_context', b.global_context,
                                        'execution_delay_seconds', b.execution_delay_seconds, 'launch_id', b.launch_id)
              from public.task_batches b where b.id = u.batch_id)
  )), '[]'::jsonb)
  into out
  from upd u;
  return out;
end
$$;

------------------------------------------------------------------------------
-- complete_task: store the validated output and usage, then (unless the
-- stage needs approval) mark it completed and create its successors, all in
-- one transaction. Repeating a completion returns duplicate = true.
------------------------------------------------------------------------------
create or replace function orchable.complete_one(
  p_task_id uuid,
  p_worker text,
  p_output jsonb,
  p_usage jsonb
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  tpl_approval boolean;
  needs_approval boolean;
  res jsonb := '{}'::jsonb;
  u jsonb := coalesce(p_usage, '{}'::jsonb);
  uid uuid := orchable.require_user('complete_task');
begin
  perform orchable.engine_on();
  select * into t from public.ai_tasks where id = p_task_id and user_id = uid for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if p_output is null then
    raise exception using errcode = '22023', message = 'p_output is required';
  end if;
  if t.status in ('completed', 'generated', 'approved', 'failed') and t.locked_by is null and t.output_data is not distinct from p_output then
    return jsonb_strip_nulls(jsonb_build_object('status', t.status, 'duplicate', true, 'created', 0,
      'error', case when t.status = 'failed' then t.error_message end));
  end if;
  if t.status <> 'processing' or t.locked_by is distinct from p_worker then
    raise exception using errcode = 'PT409',
      message = format('task %s is %s%s, not processing under worker %s', p_task_id, t.status,
                       coalesce(' (leased by ' || t.locked_by || ')', ''), p_worker);
  end if;
  if p_output is null then
    raise exception using errcode = '22023', message = 'p_output is required';
  end if;

  select coalesce(p.requires_approval, false) into tpl_approval from orchable.usable_template(t.prompt_template_id, uid) p;
  needs_approval := t.requires_approval or coalesce(tpl_approval, false);

  update public.ai_tasks set
    status = case when needs_approval then 'generated'::public.ai_task_status else 'completed'::public.ai_task_status end,
    output_data = p_output,
    error_message = null,
    completed_at = now(),
    model_id = coalesce(u ->> 'model_id', model_id),
    model_version = coalesce(u ->> 'model_version', model_version),
    api_key_id = coalesce((u ->> 'api_key_id')::uuid, api_key_id),
    prompt_token_count = coalesce((u ->> 'prompt_token_count')::int, prompt_token_count),
    candidates_token_count = coalesce((u ->> 'candidates_token_count')::int, candidates_token_count),
    thoughts_token_count = coalesce((u ->> 'thoughts_token_count')::int, thoughts_token_count),
    total_token_count = coalesce((u ->> 'total_token_count')::int, total_token_count),
    extra = extra || jsonb_strip_nulls(jsonb_build_object(
      'used_api_key_name', u ->> 'api_key_name',
      'response_id', u ->> 'response_id',
      'regenerations', (u ->> 'regenerations')::int,
      'hooks_ignored', u -> 'hooks_ignored'))
  where id = p_task_id
  returning * into t;

  if not needs_approval then
    res := orchable.spawn_successors(t, false);
    if res ? 'error' then
      update public.ai_tasks set status = 'failed', error_message = res ->> 'error', retry_count = retry_count + 1
      where id = p_task_id
      returning * into t;
      perform orchable.spawn_successors(t, true);
      return jsonb_build_object('status', 'failed', 'error', res ->> 'error', 'created', 0);
    end if;
  end if;

  return jsonb_build_object('status', case when needs_approval then 'generated' else 'completed' end,
                            'created', coalesce((res ->> 'created')::int, 0),
                            'waiting', coalesce((res ->> 'waiting')::int, 0));
end
$$;

create or replace function public.complete_task(
  p_task_id uuid,
  p_worker text,
  p_output jsonb,
  p_usage jsonb default '{}'::jsonb
) returns jsonb
  language sql volatile
  set search_path = ''
as $$
  select orchable.complete_one(p_task_id, p_worker, p_output, p_usage)
$$;

-- complete_tasks: complete_task for many tasks of the caller in one
-- transaction (one commit), for workers that finish many tasks at once.
-- p_items is a JSON array of {task_id, output, usage}. Each item is applied
-- on its own (a failing item does not undo the others) and the result is an
-- array in the same order: complete_task's result, or {"error", "code"}.
create or replace function public.complete_tasks(p_worker text, p_items jsonb) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  item jsonb;
  res jsonb;
  results jsonb[] := '{}';
  fast jsonb;
  leaf_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 0}';
  uid uuid := orchable.require_user('complete_tasks');
begin
  perform orchable.engine_on();
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) > 1000 then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;

  -- Set-based fast path for the common case: tasks processing under this
  -- worker whose stage has no successors and needs no approval (a leaf:
  -- completing it creates nothing). One UPDATE for all of them.
  with items as (
    select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u
    from jsonb_array_elements(p_items) e
    where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
  ), leaves as (
    select t.id from public.ai_tasks t
    join items i on i.task_id = t.id
    left join public.prompt_templates p on p.id = t.prompt_template_id
    where t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
      and not t.requires_approval and not coalesce(p.requires_approval, false)
      and t.next_task_config is null and not (t.extra ? 'next_stage_configs')
      and p.next_stage_template_id is null
      and coalesce(jsonb_array_length(case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids end), 0) = 0
    for update of t
  ), done as (
    update public.ai_tasks t set
      status = 'completed',
      output_data = i.output,
      error_message = null,
      completed_at = now(),
      model_id = coalesce(i.u ->> 'model_id', t.model_id),
      model_version = coalesce(i.u ->> 'model_version', t.model_version),
      api_key_id = coalesce((i.u ->> 'api_key_id')::uuid, t.api_key_id),
      prompt_token_count = coalesce((i.u ->> 'prompt_token_count')::int, t.prompt_token_count),
      candidates_token_count = coalesce((i.u ->> 'candidates_token_count')::int, t.candidates_token_count),
      thoughts_token_count = coalesce((i.u ->> 'thoughts_token_count')::int, t.thoughts_token_count),
      total_token_count = coalesce((i.u ->> 'total_token_count')::int, t.total_token_count),
      extra = t.extra || jsonb_strip_nulls(jsonb_build_object(
        'used_api_key_name', i.u ->> 'api_key_name',
        'response_id', i.u ->> 'response_id',
        'regenerations', (i.u ->> 'regenerations')::int,
        'hooks_ignored', i.u -> 'hooks_ignored'))
    from items i
    where t.id = i.task_id and t.id in (select id from leaves)
    returning t.id
  )
  select coalesce(jsonb_object_agg(id::text, true), '{}'::jsonb) into fast from done;

  -- Everything else one by one, each isolated from the others.
  for item in select e from jsonb_array_elements(p_items) with ordinality x(e, o) order by o loop
    if fast ? lower(item ->> 'task_id') then
      res := leaf_result;
      -- Only the first item of a task took the fast path; a repeated item
      -- is checked like any other (a different output is refused).
      fast := fast - lower(item ->> 'task_id');
    else
      begin
        res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
      exception when others then
        res := jsonb_build_object('error', sqlerrm, 'code', sqlstate);
      end;
    end if;
    results := results || res; -- in place: plpgsql appends to an expanded array
  end loop;
  return to_jsonb(results);
end
$$;

------------------------------------------------------------------------------
-- fail_task: record a failure. With p_retry_at and not p_permanent the task
-- goes back to plan (run_after = p_retry_at); otherwise it fails for good and
-- barriers downstream are re-checked (a failed parent does not block a merge).
------------------------------------------------------------------------------
create or replace function public.fail_task(
  p_task_id uuid,
  p_worker text,
  p_error text,
  p_retry_at timestamptz default null,
  p_permanent boolean default true
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  uid uuid := orchable.require_user('fail_task');
begin
  perform orchable.engine_on();
  select * into t from public.ai_tasks where id = p_task_id and user_id = uid for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status in ('failed', 'plan', 'cancelled') and t.locked_by is null and t.error_message is not distinct from p_error then
    return jsonb_build_object('status', t.status, 'duplicate', true);
  end if;
  if t.status <> 'processing' or t.locked_by is distinct from p_worker then
    raise exception using errcode = 'PT409',
      message = format('task %s is %s, not processing under worker %s', p_task_id, t.status, p_worker);
  end if;
  if coalesce(p_error, '') = '' then
    raise exception using errcode = '22023', message = 'p_error is required';
  end if;

  if not coalesce(p_permanent, true) and p_retry_at is not null then
    -- A task of a cancelled batch is not rescheduled.
    if exists (select 1 from public.task_batches b where b.id = t.batch_id and b.created_by = uid and b.status = 'cancelled') then
      update public.ai_tasks set status = 'cancelled', error_message = p_error, retry_count = retry_count + 1,
        completed_at = now()
      where id = p_task_id;
      return jsonb_build_object('status', 'cancelled');
    end if;
    update public.ai_tasks set status = 'plan', run_after = p_retry_at, error_message = p_error,
      retry_count = retry_count + 1
    where id = p_task_id;
    return jsonb_build_object('status', 'plan', 'run_after', p_retry_at);
  end if;

  update public.ai_tasks set status = 'failed', error_message = p_error, retry_count = retry_count + 1,
    completed_at = now()
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;

------------------------------------------------------------------------------
-- renew_leases / release_task: lease upkeep for long model calls and for a
-- graceful shutdown (the task goes back to plan; the attempt is not counted).
------------------------------------------------------------------------------
create or replace function public.renew_leases(p_task_ids uuid[], p_worker text, p_lease_seconds integer default 300)
  returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
  uid uuid := orchable.require_user('renew_leases');
begin
  perform orchable.engine_on();
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  update public.ai_tasks set locked_until = now() + make_interval(secs => p_lease_seconds)
  where id = any(p_task_ids) and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return n;
end
$$;

create or replace function public.release_task(p_task_id uuid, p_worker text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
  uid uuid := orchable.require_user('release_task');
begin
  perform orchable.engine_on();
  update public.ai_tasks set status = 'plan', run_after = now(), attempts = greatest(attempts - 1, 0)
  where id = p_task_id and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return jsonb_build_object('released', n = 1);
end
$$;

------------------------------------------------------------------------------
-- Approval.
------------------------------------------------------------------------------
create or replace function public.approve_task(
  p_task_id uuid,
  p_edited_output jsonb default null,
  p_edit_notes text default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  res jsonb;
  uid uuid := orchable.require_user('approve_task');
begin
  perform orchable.engine_on();
  select * into t from public.ai_tasks where id = p_task_id and user_id = uid for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status = 'completed' and t.approved_at is not null then
    return jsonb_build_object('status', 'completed', 'duplicate', true, 'created', 0);
  end if;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  update public.ai_tasks set status = 'completed', approved_at = now(), approved_by = (select auth.uid()),
    edited_output_data = p_edited_output, edit_notes = p_edit_notes
  where id = p_task_id
  returning * into t;
  res := orchable.spawn_successors(t, false);
  if res ? 'error' then
    raise exception using errcode = 'PT422', message = res ->> 'error';
  end if;
  return jsonb_build_object('status', 'completed', 'created', (res ->> 'created')::int, 'waiting', (res ->> 'waiting')::int);
end
$$;

create or replace function public.reject_task(
  p_task_id uuid,
  p_reason text,
  p_regenerate boolean default false
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  uid uuid := orchable.require_user('reject_task');
begin
  perform orchable.engine_on();
  select * into t from public.ai_tasks where id = p_task_id and user_id = uid for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  if coalesce(p_regenerate, false) then
    -- Regenerate with the reviewer's notes (the runner adds extra.reviewer_notes to the prompt).
    update public.ai_tasks set status = 'plan', run_after = now(), output_data = null, completed_at = null,
      attempts = 0, error_message = null,
      extra = extra || jsonb_build_object('reviewer_notes', p_reason, 'rejected_output', t.output_data)
    where id = p_task_id;
    return jsonb_build_object('status', 'plan');
  end if;
  update public.ai_tasks set status = 'failed', error_message = 'rejected by reviewer: ' || coalesce(p_reason, '(no reason)'),
    completed_at = now(), edit_notes = p_reason
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;

------------------------------------------------------------------------------
-- Retries. retry_failed_task keeps the front end's name and argument; it
-- resets the task to plan and removes what was derived from it: its
-- descendants and any merge/join child whose barrier counted it (with their
-- descendants), so the barrier fires again when it finishes.
------------------------------------------------------------------------------
create or replace function orchable.reset_task(t public.ai_tasks) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  removed int := 0;
  n int;
  downstream text[];
begin
  -- Stage keys at or downstream of the task's stage in the pipeline graph:
  -- a barrier child whose dependency stages include one of them may have
  -- counted the task or its descendants, so it is rebuilt when they finish.
  with recursive walk(id, depth) as (
    select t.prompt_template_id, 0
    union
    select n.sid, w.depth + 1
    from walk w
    join public.prompt_templates p on p.id = w.id and orchable.template_usable(p, t.user_id)
    cross join lateral jsonb_array_elements_text(
      case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids else '[]'::jsonb end) as n(sid)
    where w.depth < 50
  )
  select coalesce(array_agg(distinct p.stage_key) filter (where p.stage_key is not null), '{}')
    into downstream
  from walk w join public.prompt_templates p on p.id = w.id and orchable.template_usable(p, t.user_id);
  downstream := downstream || t.stage_key::text;

  with barrier_children as (
    select c.id from public.ai_tasks c
    where c.idempotency_key like 'barrier/%'
      and c.user_id = t.user_id
      and exists (select 1 from jsonb_array_elements_text(c.extra -> '_barrier' -> 'stages') s(k) where s.k = any(downstream))
      and orchable.in_scope(t, c.extra -> '_barrier' ->> 'scope')
  ), doomed as (
    select d.id from public.ai_tasks d
    where d.user_id = t.user_id
      and (d.hierarchy_path @> jsonb_build_array(t.id::text)
       or d.id in (select id from barrier_children)
       or exists (select 1 from barrier_children bc where d.hierarchy_path @> jsonb_build_array(bc.id::text)))
  )
  delete from public.ai_tasks where id in (select id from doomed) and id <> t.id;
  get diagnostics n = row_count;
  removed := removed + n;
  update public.ai_tasks set status = 'plan', run_after = now(), error_message = null, output_data = null,
    started_at = null, completed_at = null, attempts = 0, approved_at = null, approved_by = null,
    edited_output_data = null
  where id = t.id and user_id = t.user_id;
  return removed;
end
$$;

create or replace function public.retry_failed_task(p_task_id uuid) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  uid uuid := orchable.require_user('retry_failed_task');
begin
  perform orchable.engine_on();
  select * into t from public.ai_tasks where id = p_task_id and user_id = uid for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status not in ('failed', 'cancelled', 'completed', 'generated') then
    raise exception using errcode = 'PT409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, t.status);
  end if;
  perform orchable.reset_task(t);
end
$$;

create or replace function public.retry_all_failed_in_batch(p_batch_id uuid) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  n int := 0;
  uid uuid := orchable.require_user('retry_all_failed_in_batch');
begin
  perform orchable.engine_on();
  -- The front end may pass a launch id (its /batch/:id route carries either).
  if not exists (select 1 from public.task_batches where (id = p_batch_id or launch_id = p_batch_id) and created_by = uid) then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  for t in
    select * from public.ai_tasks
    where (batch_id = p_batch_id or launch_id = p_batch_id) and user_id = uid and status = 'failed'
    order by step_number, created_at
    for update
  loop
    -- An earlier reset may have removed this task (it descended from another).
    if exists (select 1 from public.ai_tasks where id = t.id and user_id = uid and status = 'failed') then
      perform orchable.reset_task(t);
      n := n + 1;
    end if;
  end loop;
  update public.task_batches set status = 'processing'
  where (id = p_batch_id or launch_id = p_batch_id) and created_by = uid and status in ('completed', 'failed') and n > 0;
  return n;
end
$$;

------------------------------------------------------------------------------
-- launch_batch: a batch and one root task per input row, for a pipeline's
-- first stage template.
------------------------------------------------------------------------------
create or replace function public.launch_batch(
  p_template_id text,
  p_rows jsonb,
  p_name text default null,
  p_global_context jsonb default '{}'::jsonb,
  p_launch_id uuid default null,
  p_execution_delay_seconds integer default 0,
  p_orchestrator_config_id uuid default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  tpl public.prompt_templates;
  bid uuid;
  lid uuid := coalesce(p_launch_id, extensions.gen_random_uuid());
  ids jsonb;
  uid uuid := orchable.require_user('launch_batch');
begin
  -- Engine mode: the root tasks' references are set here, not by a client
  -- (the batch's launch id is still checked by the task_batches trigger).
  perform orchable.engine_on();
  if p_rows is null or jsonb_typeof(p_rows) <> 'array' or jsonb_array_length(p_rows) = 0 then
    raise exception using errcode = '22023', message = 'p_rows must be a non-empty JSON array of input rows';
  end if;
  if jsonb_array_length(p_rows) > 100000 then
    raise exception using errcode = '22023', message = 'p_rows may hold at most 100000 rows';
  end if;
  tpl := orchable.usable_template(p_template_id, uid);
  if tpl.id is null then
    raise exception using errcode = 'PT404', message = format('template %s not found or not visible', p_template_id);
  end if;
  insert into public.task_batches (name, status, orchestrator_config_id, created_by, global_context, execution_delay_seconds, launch_id)
  values (coalesce(p_name, coalesce(tpl.name, tpl.id) || ' - Launch ' || left(lid::text, 8)), 'processing',
          p_orchestrator_config_id, (select auth.uid()), coalesce(p_global_context, '{}'::jsonb),
          greatest(coalesce(p_execution_delay_seconds, 0), 0), lid)
  returning id into bid;

  with rows as (
    select extensions.gen_random_uuid() as id, e as input, o - 1 as idx
    from jsonb_array_elements(p_rows) with ordinality x(e, o)
  ), ins as (
    insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id,
      step_number, stage_key, prompt_template_id, requires_approval, sequence, lo_code, hierarchy_path, extra)
    select r.id, coalesce(tpl.stage_config ->> 'task_type', tpl.stage_key, 'generic'), 'plan',
      case when jsonb_typeof(r.input) = 'object' then r.input else jsonb_build_object('input', r.input) end,
      (select auth.uid()), bid, lid, r.id, 1, tpl.stage_key, tpl.id, coalesce(tpl.requires_approval, false), r.idx,
      coalesce(r.input ->> 'lo_code', r.input ->> 'code'), '[]'::jsonb,
      jsonb_build_object('launcher_metadata', jsonb_build_object('original_index', r.idx, 'launch_id', lid))
    from rows r
    returning id, sequence
  )
  select jsonb_agg(id order by sequence) into ids from ins;
  return jsonb_build_object('batch_id', bid, 'launch_id', lid, 'task_ids', ids);
end
$$;
------------------------------------------------------------------------------
-- Expired leases. The service identity (BYPASSRLS) only flips leases: a task
-- whose worker died goes back to plan; a task that lost its lease
-- p_max_attempts times is left as it is and its owner is named, so the
-- sweeper gives it up as that owner (fail_expired_tasks). Nothing here reads
-- content or runs the successor/barrier logic. A crash between the two
-- leaves the task listed again by the next sweep.
------------------------------------------------------------------------------
create or replace function public.requeue_expired_leases(p_max_attempts integer default 5) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  requeued int;
  owners jsonb;
begin
  perform orchable.engine_on();
  p_max_attempts := greatest(coalesce(p_max_attempts, 5), 1);
  update public.ai_tasks set status = 'plan', run_after = now(),
    error_message = format('lease of worker %s expired; re-queued', locked_by)
  where status = 'processing' and locked_until < now() and attempts < p_max_attempts;
  get diagnostics requeued = row_count;
  select coalesce(jsonb_agg(distinct t.user_id), '[]'::jsonb) into owners
  from public.ai_tasks t
  where t.status = 'processing' and t.locked_until < now() and t.attempts >= p_max_attempts;
  return jsonb_build_object('requeued', requeued, 'give_up_owners', owners);
end
$$;

-- Gives up, as their owner, on the caller's tasks whose lease expired
-- p_max_attempts times: they fail for good and barriers downstream are
-- re-checked as the owner.
create or replace function public.fail_expired_tasks(p_max_attempts integer default 5) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  uid uuid := orchable.require_user('fail_expired_tasks');
  failed int := 0;
  t public.ai_tasks;
begin
  perform orchable.engine_on();
  p_max_attempts := greatest(coalesce(p_max_attempts, 5), 1);
  for t in
    update public.ai_tasks set status = 'failed', completed_at = now(), retry_count = retry_count + 1,
      error_message = format('worker %s lost the task %s times (lease expired); giving up', locked_by, attempts)
    where id in (select x.id from public.ai_tasks x
                 where x.user_id = uid and x.status = 'processing' and x.locked_until < now()
                   and x.attempts >= p_max_attempts
                 for update skip locked)
    returning *
  loop
    failed := failed + 1;
    perform orchable.spawn_successors(t, true);
  end loop;
  return jsonb_build_object('failed', failed);
end
$$;

------------------------------------------------------------------------------
-- Privileges. The user API to authenticated only (the service identity runs
-- no engine logic: every function above refuses a caller without auth.uid()
-- anyway); the cross-tenant functions to service_role only.
------------------------------------------------------------------------------
revoke execute on function
  public.claim_tasks(text, integer, integer, uuid[]),
  public.complete_task(uuid, text, jsonb, jsonb),
  public.complete_tasks(text, jsonb),
  public.fail_task(uuid, text, text, timestamptz, boolean),
  public.renew_leases(uuid[], text, integer),
  public.release_task(uuid, text),
  public.approve_task(uuid, jsonb, text),
  public.reject_task(uuid, text, boolean),
  public.retry_failed_task(uuid),
  public.retry_all_failed_in_batch(uuid),
  public.launch_batch(text, jsonb, text, jsonb, uuid, integer, uuid),
  public.fail_expired_tasks(integer),
  public.requeue_expired_leases(integer),
  public.due_tasks(integer, integer),
  public.set_engine_limits(integer, bigint, integer)
  from public, anon, authenticated, service_role;

grant execute on function
  public.claim_tasks(text, integer, integer, uuid[]),
  public.complete_task(uuid, text, jsonb, jsonb),
  public.complete_tasks(text, jsonb),
  public.fail_task(uuid, text, text, timestamptz, boolean),
  public.renew_leases(uuid[], text, integer),
  public.release_task(uuid, text),
  public.approve_task(uuid, jsonb, text),
  public.reject_task(uuid, text, boolean),
  public.retry_failed_task(uuid),
  public.retry_all_failed_in_batch(uuid),
  public.launch_batch(text, jsonb, text, jsonb, uuid, integer, uuid),
  public.fail_expired_tasks(integer)
  to authenticated;

grant execute on function
  public.requeue_expired_leases(integer),
  public.due_tasks(integer, integer),
  public.set_engine_limits(integer, bigint, integer)
  to service_role;
