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
  p_task_ids uuid[] default null,
  p_compact boolean default false,
  p_after_run_after timestamptz default null,
  p_after_id uuid default null,
  p_columns boolean default false
) returns json
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  out json;
  rows_ tid[];
  more tid[];
  head tid[];
  -- The key (run_after, id) of the last task the walk of the queue claimed:
  -- where the caller's next claim may start (p_after_*).
  last_run_after timestamptz;
  last_id uuid;
  counted integer;
  claimed public.ai_tasks[];
  -- The compact result's parts, made by the lease's UPDATE (step 3).
  tasks_json json;
  lease_until json;
  claimed_tpls text[];
  claimed_batches uuid[];
  -- This transaction had written nothing when the claim began.
  fresh constant boolean := pg_current_xact_id_if_assigned() is null;
  -- The planner settings this function changes for one statement at a
  -- time, as the caller had them (restored after each such statement).
  prev_plan_mode constant text := current_setting('plan_cache_mode');
  prev_sort constant text := current_setting('enable_sort');
  prev_incremental_sort constant text := current_setting('enable_incremental_sort');
  prev_indexscan constant text := current_setting('enable_indexscan');
  prev_bitmapscan constant text := current_setting('enable_bitmapscan');
  prev_seqscan constant text := current_setting('enable_seqscan');
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
  if (p_after_run_after is null) <> (p_after_id is null) then
    raise exception using errcode = '22023', message = 'p_after_run_after and p_after_id go together: both or neither';
  end if;
  if p_columns and not coalesce(p_compact, false) then
    raise exception using errcode = '22023', message = 'p_columns shapes the compact result: it needs p_compact';
  end if;

  -- Three small statements rather than one: one statement with every step
  -- as a CTE cost about 1.1 ms of planning per claim.
  --
  -- 1. The caller's due tasks outside paused, cancelled or delayed batches,
  -- in queue order: the head of the runnable index (user_id, run_after, id)
  -- where status = 'plan', so a claim reads about what it claims however
  -- long the owner's queue is.
  --
  -- Planned once per connection (a generic plan) with sorts disabled while
  -- it is planned. Planned again on every call (a custom plan), this
  -- statement was a third of a one-task claim (130 of 420 us). A generic
  -- plan cannot see the owner's queue length nor p_limit (it assumes 10 %
  -- of the average tenant's rows), so on its own it may choose to sort the
  -- owner's whole queue (O(queue)); with sorts disabled the only plan left
  -- for this ORDER BY is the runnable index in order, which is the right
  -- plan for every tenant (TestClaimReadsOnlyWhatItClaims,
  -- TestClaimPlanForEveryTenant). The settings last only for the statement.
  --
  -- With a cursor (p_after_*: the key of the last task the caller's previous
  -- claim took, which it returns as "after"), the walk starts there, and
  -- from the head only for what that part cannot fill. A claimed task's
  -- entry stays in the runnable index, pointing at a dead row version, until
  -- vacuum removes it, and the walk steps over such entries one by one
  -- (about 11 ns each): from the head, a claim in a large batch being
  -- drained paid for every task claimed before it since the last vacuum
  -- (TestClaimFromCursorSkipsWhatWasClaimed; docs/performance.md, fifteenth
  -- round). A task behind the cursor (committed after the
  -- cursor passed its run_after, or made runnable again with an old one) is
  -- claimed when the part ahead cannot fill the claim, or by a claim
  -- without a cursor: the service sends none at least once a second per
  -- owner.
  if p_task_ids is null and p_after_run_after is not null then
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_sort', 'off', true),
            set_config('enable_incremental_sort', 'off', true);
    select coalesce(array_agg(c.ctid order by c.run_after, c.id), '{}'),
           (array_agg(c.run_after order by c.run_after desc, c.id desc))[1],
           (array_agg(c.id order by c.run_after desc, c.id desc))[1]
    into rows_, last_run_after, last_id
    from (
      select t.ctid, t.id, t.run_after
      from public.ai_tasks t
      where t.status = 'plan'
        and t.user_id = uid
        and (t.run_after, t.id) > (p_after_run_after, p_after_id)
        and t.run_after <= now()
        and (t.batch_id is null or not coalesce((
          select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
          from public.task_batches b where b.id = t.batch_id), false))
      order by t.run_after, t.id
      limit p_limit
      for update of t skip locked
    ) c;
    if cardinality(rows_) < p_limit then
      select coalesce(array_agg(c.ctid order by c.run_after, c.id), '{}'),
             coalesce(last_run_after, (array_agg(c.run_after order by c.run_after desc, c.id desc))[1]),
             coalesce(last_id, (array_agg(c.id order by c.run_after desc, c.id desc))[1])
      into head, last_run_after, last_id
      from (
        select t.ctid, t.id, t.run_after
        from public.ai_tasks t
        where t.status = 'plan'
          and t.user_id = uid
          and (t.run_after, t.id) <= (p_after_run_after, p_after_id)
          and t.run_after <= now()
          and (t.batch_id is null or not coalesce((
            select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
            from public.task_batches b where b.id = t.batch_id), false))
        order by t.run_after, t.id
        limit p_limit - cardinality(rows_)
        for update of t skip locked
      ) c;
      rows_ := head || rows_;
    end if;
    perform set_config('plan_cache_mode', prev_plan_mode, true),
            set_config('enable_sort', prev_sort, true),
            set_config('enable_incremental_sort', prev_incremental_sort, true);
  elsif p_task_ids is null then
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_sort', 'off', true),
            set_config('enable_incremental_sort', 'off', true);
    select coalesce(array_agg(c.ctid order by c.run_after, c.id), '{}'),
           (array_agg(c.run_after order by c.run_after desc, c.id desc))[1],
           (array_agg(c.id order by c.run_after desc, c.id desc))[1]
    into rows_, last_run_after, last_id
    from (
      select t.ctid, t.id, t.run_after
      from public.ai_tasks t
      where t.status = 'plan'
        and t.user_id = uid
        and t.run_after <= now()
        -- A scalar filter, not NOT EXISTS: as an anti-join the planner
        -- assumed it removed almost every row and sorted the whole queue.
        and (t.batch_id is null or not coalesce((
          select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
          from public.task_batches b where b.id = t.batch_id), false))
      order by t.run_after, t.id
      limit p_limit
      for update of t skip locked
    ) c;
    perform set_config('plan_cache_mode', prev_plan_mode, true),
            set_config('enable_sort', prev_sort, true),
            set_config('enable_incremental_sort', prev_incremental_sort, true);
  else
    -- Named tasks (a caller's hint): by primary key, a few rows, planned
    -- once per connection with sorts disabled, so that the only plan for
    -- ORDER BY id is an index on id. In queue order with a LIMIT, an owner
    -- the statistics have not seen (the planner expects one row of theirs)
    -- had the runnable index walked instead, reading the owner's whole
    -- queue: 4,989 rows to claim 2 of 3 named tasks
    -- (TestClaimPlanForEveryTenant). Every named task that is due is locked;
    -- the earliest due p_limit are claimed (the others stay plan, unlocked
    -- at commit: a caller names a few).
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_sort', 'off', true);
    select coalesce((array_agg(c.ctid order by c.run_after, c.id))[:p_limit], '{}') into rows_
    from (
      select t.ctid, t.id, t.run_after
      from public.ai_tasks t
      where t.id = any(p_task_ids)
        and t.status = 'plan'
        and t.user_id = uid
        and t.run_after <= now()
        and (t.batch_id is null or not coalesce((
          select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
          from public.task_batches b where b.id = t.batch_id), false))
      order by t.id
      for update of t skip locked
    ) c;
    perform set_config('plan_cache_mode', prev_plan_mode, true),
            set_config('enable_sort', prev_sort, true);
  end if;

  -- 2. Batches with execution_delay_seconds: one start per delay interval.
  -- Few users have such a batch; for the others this is one probe.
  if cardinality(rows_) < p_limit and exists (
    select 1 from public.task_batches b
    where b.created_by = uid and b.execution_delay_seconds > 0 and b.status not in ('paused', 'cancelled')
  ) then
    with delayed as (
      select t.ctid, b.id as batch_id, b.execution_delay_seconds
      from public.task_batches b
      cross join lateral (
        select t.ctid, t.id from public.ai_tasks t
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
      limit p_limit - cardinality(rows_)
    ), spaced as (
      -- Re-checked under the row lock: of two concurrent claimers only the
      -- first starts a task of a delayed batch.
      update public.task_batches b
      set next_start_at = now() + make_interval(secs => d.execution_delay_seconds)
      from delayed d
      where b.id = d.batch_id and (b.next_start_at is null or b.next_start_at <= now())
      returning b.id
    )
    select coalesce(array_agg(d.ctid), '{}') into more
    from delayed d join spaced s on s.id = d.batch_id;
    rows_ := rows_ || more;
  end if;

  -- Nothing to claim: done. Except for the worker 'warm-up' (the service's
  -- Direct.Warm, as a user who owns nothing), which goes on with no rows so
  -- that steps 3 and 4 are planned on the connection before its first real
  -- claim; planned there instead, they were most of the slow claims at the
  -- start of the wake-up bench (docs/performance.md, eighth round). Its
  -- result is the same.
  if cardinality(rows_) = 0 and p_worker <> 'warm-up' then
    return case when p_columns then
                  ('{"tasks": {"id": [], "user_id": [], "batch_id": [], "launch_id": [], "stage_key": [], "task_type": [],'
                   ' "input_data": [], "extra": [], "attempts": [], "retry_count": [], "step_number": [], "lo_code": [],'
                   ' "sequence": [], "prompt_template_id": [], "requires_approval": [], "tier_source": []},'
                   ' "templates": {}, "batches": {}, "after": null}')::json
                when p_compact then '{"tasks": [], "templates": {}, "batches": {}, "after": null}'::json
                else '[]'::json end;
  end if;

  -- 3. Lease them. By the row versions locked above: a TID scan (this
  -- transaction holds their locks, so they are still the current
  -- versions), planned once per connection with every other scan
  -- disabled while it is planned. Left to the planner, the scan of the
  -- claimed rows could walk the owner's whole user_id index: RLS adds
  -- user_id = auth.uid(), and for an owner the statistics have not seen
  -- yet (a first large batch, before autovacuum's next ANALYZE) the planner
  -- expects one row there and prefers that index (TestClaimPlanForEveryTenant:
  -- 5,010 rows read to claim 10). The settings would apply to any SQL run
  -- inside the statement, so they are set only when none can run: the row
  -- triggers that fire run no SQL, and the foreign-key checks fire only for
  -- a row this transaction wrote before (fresh: it had written nothing when
  -- the claim began, as every claim of the service and every PostgREST
  -- request; otherwise the statement is planned as any other). The batch counters count the
  -- claim once per batch (orchable.count_moves, below) rather than once
  -- per task (the row trigger skips a 'deferred' update).
  perform set_config('orchable.counting', 'deferred', true);
  if fresh then
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_indexscan', 'off', true),
            set_config('enable_bitmapscan', 'off', true),
            set_config('enable_seqscan', 'off', true);
  end if;
  -- The UPDATE's RETURNING makes what step 4 needs, and no more: for the
  -- compact result each task's object, its template and its batch; the
  -- whole row only for the full result. Returned as whole rows, gathered in
  -- an array and unnested again for step 4, a compact claim of 1,000 tasks
  -- cost 41 us of CPU per task against 22 for the bare UPDATE of the
  -- same rows (pgbench, docs/performance.md, eighteenth round): each row
  -- built as a composite, copied into the array and out of it. The lease
  -- is the same for every task (now() is the transaction's start), so its
  -- JSON is made once, and so is the status, which the UPDATE sets.
  --
  -- With p_columns (what the service asks for) the tasks are columns: one
  -- JSON array per column, each made by one aggregate. json_build_object
  -- per row looked up each argument's type and output function again for
  -- every row, and its object was copied again into the array: for 1,000
  -- rows of these columns, 6.4 ms against 2.3 ms for the arrays (pgbench,
  -- one client; docs/performance.md, twentieth round). The constant
  -- columns (status, locked_by, locked_until) are left out of that shape:
  -- the caller set them.
  lease_until := to_json(now() + make_interval(secs => p_lease_seconds));
  with upd as (
    update public.ai_tasks t
    set status = 'processing',
        locked_until = now() + make_interval(secs => p_lease_seconds),
        locked_by = p_worker,
        attempts = t.attempts + 1,
        started_at = now(),
        -- As the row trigger would set it: the trigger is skipped (its WHEN).
        updated_at = now()
    where t.ctid = any(rows_) and t.status = 'plan' and t.user_id = uid
    returning t.prompt_template_id, t.batch_id,
      case when p_compact and not p_columns then json_build_object(
        'id', t.id, 'user_id', t.user_id, 'batch_id', t.batch_id, 'launch_id', t.launch_id,
        'stage_key', t.stage_key, 'task_type', t.task_type, 'status', 'processing',
        'input_data', t.input_data, 'extra', t.extra, 'attempts', t.attempts,
        'retry_count', t.retry_count, 'step_number', t.step_number, 'lo_code', t.lo_code,
        'sequence', t.sequence, 'prompt_template_id', t.prompt_template_id,
        'requires_approval', t.requires_approval, 'tier_source', t.tier_source,
        'locked_by', t.locked_by, 'locked_until', lease_until) end as j,
      case when not p_compact then t end as r,
      -- p_columns: the columns themselves, each made into one JSON array
      -- below (the id, template and batch are returned above).
      t.id, t.user_id, t.launch_id, t.stage_key, t.task_type, t.input_data, t.extra, t.attempts,
      t.retry_count, t.step_number, t.lo_code, t.sequence, t.requires_approval, t.tier_source
  )
  select case
           when p_columns then json_build_object(
             'id', coalesce(json_agg(u.id), '[]'), 'user_id', coalesce(json_agg(u.user_id), '[]'),
             'batch_id', coalesce(json_agg(u.batch_id), '[]'), 'launch_id', coalesce(json_agg(u.launch_id), '[]'),
             'stage_key', coalesce(json_agg(u.stage_key), '[]'), 'task_type', coalesce(json_agg(u.task_type), '[]'),
             'input_data', coalesce(json_agg(u.input_data), '[]'), 'extra', coalesce(json_agg(u.extra), '[]'),
             'attempts', coalesce(json_agg(u.attempts), '[]'), 'retry_count', coalesce(json_agg(u.retry_count), '[]'),
             'step_number', coalesce(json_agg(u.step_number), '[]'), 'lo_code', coalesce(json_agg(u.lo_code), '[]'),
             'sequence', coalesce(json_agg(u.sequence), '[]'),
             'prompt_template_id', coalesce(json_agg(u.prompt_template_id), '[]'),
             'requires_approval', coalesce(json_agg(u.requires_approval), '[]'),
             'tier_source', coalesce(json_agg(u.tier_source), '[]'))
           when p_compact then coalesce(json_agg(u.j), '[]'::json)
         end,
         coalesce(array_agg(u.r) filter (where not p_compact), '{}'),
         coalesce(array_agg(distinct u.prompt_template_id) filter (where u.prompt_template_id is not null), '{}'),
         coalesce(array_agg(u.batch_id) filter (where u.batch_id is not null), '{}')
  into tasks_json, claimed, claimed_tpls, claimed_batches
  from upd u;
  perform set_config('orchable.counting', '', true);
  if fresh then
    perform set_config('enable_indexscan', prev_indexscan, true),
            set_config('enable_bitmapscan', prev_bitmapscan, true),
            set_config('enable_seqscan', prev_seqscan, true);
  else
    perform set_config('plan_cache_mode', 'force_generic_plan', true);
  end if;

  -- 4. Everything needed to run them. A generic plan as well, made once
  -- per connection (every read is by primary key). Planned for each call,
  -- as plpgsql kept doing for claims of a few tasks (the generic plan's
  -- estimate of ten claimed rows looks dearer than a custom plan's one),
  -- its planning was a third of a one-task claim: 0.53 of 1.7 ms
  -- (docs/performance.md, ninth round).
  --
  -- Built as json, not jsonb: the caller reads it as text, and jsonb
  -- built each object in binary (keys sorted) only to be printed back:
  -- about 0.25 ms of a 2.5 ms claim of 34 tasks (docs/performance.md,
  -- tenth round).
  --
  -- The templates (only those the owner may use: own, public, or of a
  -- published pipeline) and the batches are read once, by the ids the
  -- lease returned, for either shape.
  with tpl as (
    select p.* from public.prompt_templates p
    where p.id = any(claimed_tpls)
      and (p.user_id = uid or p.is_public or exists (
        select 1 from public.lab_orchestrator_configs c
        where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code))
  ), bat as (
    select b.id, json_build_object('id', b.id, 'name', b.name, 'status', b.status, 'global_context', b.global_context,
                                    'execution_delay_seconds', b.execution_delay_seconds, 'launch_id', b.launch_id) as j
    from public.task_batches b
    where b.id = any(claimed_batches)
  )
  select case when p_compact then
    -- Compact (what the service asks for, with p_columns): each template
    -- and batch once, and of each task the columns a worker reads (made by
    -- the lease's UPDATE and its aggregates). Every column of every row, with its template and batch
    -- copied per task, was a fifth of the claim's database time.
    json_build_object(
      'tasks', tasks_json,
      'templates', (select coalesce(json_object_agg(p.id, json_build_object(
                  'id', p.id, 'name', p.name, 'template', p.template, 'stage_key', p.stage_key,
                  'output_schema', p.output_schema, 'default_ai_settings', p.default_ai_settings,
                  'stage_config', p.stage_config, 'system_instruction', p.system_instruction,
                  'requires_approval', p.requires_approval, 'user_id', p.user_id)), '{}'::json)
                from tpl p),
      'batches', (select coalesce(json_object_agg(b.id, b.j), '{}'::json) from bat b),
      -- Where the caller's next claim may start (p_after_*): the last task
      -- the walk of the queue claimed, null when it claimed none.
      'after', case when last_id is not null then json_build_object('run_after', last_run_after, 'id', last_id) end)
  else
    (select coalesce(json_agg(json_build_object(
      'task', to_json(u),
      'template', (select to_json(p) from tpl p where p.id = u.prompt_template_id),
      'batch', (select b.j from bat b where b.id = u.batch_id))), '[]'::json)
     from unnest(claimed) u)
  end,
  -- Counted only when a claimed task is in a batch: count_moves is a
  -- SECURITY DEFINER function with its own settings, and its call alone,
  -- which finds nothing to count, was about 50 us of a one-task claim's
  -- 590 (bench sql-api; docs/performance.md, twenty-fourth round).
  case when cardinality(claimed_batches) > 0 then orchable.count_moves(claimed_batches, 'plan', 'processing') else 0 end
  into out, counted;
  perform set_config('plan_cache_mode', prev_plan_mode, true);
  return out;
end
$$;
