-- complete_tasks: complete_task for many tasks of the caller in one
-- transaction (one commit), for workers that finish many tasks at once.
-- p_items is a JSON array of {task_id, output, usage}. Each item is applied
-- on its own (a failing item does not undo the others) and the result is an
-- array in the same order: complete_task's result, or {"error", "code"}.
--
-- p_items is json, not jsonb: each item is made jsonb on its own. Called
-- through PostgREST (and the direct transport, which calls the same way)
-- the argument comes out of json_to_record; declared jsonb, the whole
-- array became one jsonb value there, which for 1,000 items built a tree
-- of about 7 MB in the server's memory and gave it back after the call:
-- 2,000 page faults a call where the memory returns to the kernel, 35 %
-- of a call's CPU on a machine where a fault costs 11 us (docs/
-- performance.md, twenty-seventh round). Item by item, the call maps
-- nothing new.
create or replace function public.complete_tasks(p_worker text, p_items json) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  -- p_items' elements, each made jsonb on its own (see the top).
  items jsonb[];
  item jsonb;
  res jsonb;
  results jsonb[] := '{}';
  -- The leaves the set-based UPDATE completed, and (only when some item
  -- was not one of them) the same ids as a set for the loop below.
  leaf_ids uuid[];
  leaves jsonb;
  nleaves integer;
  first boolean;
  counted integer;
  leaf_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 0}';
  wait_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 1}';
  -- Spawners and feeders of one barrier, completed set-based (see below).
  rep public.ai_tasks;
  tpl public.prompt_templates;
  succ public.prompt_templates;
  barrier public.prompt_templates;
  sids text[];
  cfg jsonb;
  deps text[];
  is_join boolean;
  lim orchable.engine_limits;
  c_tpl text[] := '{}';
  c_stage text[] := '{}';
  c_snap jsonb[] := '{}';
  c_cfg jsonb[] := '{}';
  c_deps jsonb[] := '{}';
  c_join boolean[] := '{}';
  c_succ public.prompt_templates[] := '{}';
  card text;
  kind text;
  c_kind text[] := '{}';
  c_split text[] := '{}';
  g_rows public.ai_tasks[];
  g_k integer[];
  g_scope text[];
  spawned jsonb;
  r_o integer[];
  r_k integer[];
  f_o integer[];
  f_g integer[];
  g_rc integer[] := '{}';
  b_deps text[];
  b_k integer;
  b_up text[];
  b_rec record;
  kids public.ai_tasks[] := '{}';
  kid_i integer[] := '{}';
  made text[];
  fed jsonb := '{}';
  nfed integer := 0;
  ids uuid[];
  tids tid[];
  tpl_ids text[];
  not_leaf text[];
  leaf_batches uuid[];
  reps public.ai_tasks[];
  rest_batches uuid[];
  cancelled uuid[];
  -- This transaction had written nothing when the call began.
  fresh constant boolean := pg_current_xact_id_if_assigned() is null;
  -- The planner settings this function changes for one statement at a
  -- time, as the caller had them (restored after each such statement).
  prev_plan_mode constant text := current_setting('plan_cache_mode');
  prev_sort constant text := current_setting('enable_sort');
  prev_incremental_sort constant text := current_setting('enable_incremental_sort');
  prev_indexscan constant text := current_setting('enable_indexscan');
  prev_bitmapscan constant text := current_setting('enable_bitmapscan');
  prev_seqscan constant text := current_setting('enable_seqscan');
  prev_nestloop constant text := current_setting('enable_nestloop');
  uid uuid := orchable.require_user('complete_tasks');
begin
  perform orchable.engine_on();
  if p_items is null or json_typeof(p_items) <> 'array' then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;
  items := array(select e::jsonb from json_array_elements(p_items) e);
  if cardinality(items) > 1000 then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;
  -- A call this large frees a few MB when it ends; kept by the server
  -- process from the first such call on, not faulted in again by every
  -- call (orchable.keep_heap).
  if cardinality(items) >= 100 then
    perform orchable.keep_heap();
  end if;
  -- An item's task_id is read when it is 36 hex digits and dashes. Written
  -- as a regular expression, that test was 3 % of the database's CPU in
  -- throughput-noop (twice per item); rtrim with the same characters says
  -- the same for about half the cost (docs/performance.md, thirteenth round).
  ids := array(select (e ->> 'task_id')::uuid from unnest(items) e
               where length(e ->> 'task_id') = 36 and rtrim(e ->> 'task_id', '0123456789abcdefABCDEF-') = '');

  -- Everything in one subtransaction first: a subtransaction per item costs
  -- a subtransaction id per written item, and past 64 in one transaction
  -- every other session's snapshot overflows to pg_subtrans lookups. Errors
  -- are rare (a lost lease, a changed output); when an item raises, the
  -- whole group is undone and redone one item at a time, each isolated from
  -- the others.
  begin
    -- One UPDATE completes every leaf: an item whose task is the caller's,
    -- processing under this worker, needs no approval and has no
    -- successors of its own (next_task_config, the launcher's
    -- next_stage_configs) nor of its template, so completing it creates
    -- nothing. It writes what complete_one writes and is counted in the
    -- batch counters once per batch (orchable.count_moves; the row trigger
    -- skips an UPDATE marked deferred). Only the first item of a task is
    -- applied here; a repeated item is checked like any other below (a
    -- duplicate, or PT409 with another output).
    --
    -- Spawners and feeders of one barrier are completed set-based next
    -- (see there). Any other task with successors is completed by complete_one, one at
    -- a time, each with its successors: a completed task must be one whose
    -- successors exist, or a barrier checked in between (a feeder of a
    -- merge in the same call) closes without the children a completed
    -- split parent has not made yet (TestCompleteTasksSplitParentAndFeedersInOneCall).
    --
    -- The leaves are found in three steps, each planned once per
    -- connection with the planner settings that leave one plan (restored
    -- after each statement): their row versions by primary key, walked in
    -- id order with sorts disabled (no other index gives that order);
    -- which of their templates make a task not a leaf; then the UPDATE by
    -- row version (a TID scan: index, bitmap and sequential scans
    -- disabled), which touches no other table. The settings would apply to
    -- any SQL run inside that UPDATE, so they are set only when none can
    -- run: its row triggers run no SQL, and the foreign-key checks fire
    -- only for a row this transaction wrote before (fresh: it had written
    -- nothing when the call began, as every call of the service and every
    -- PostgREST request). As one statement joined by
    -- id, the planner could walk the owner's whole user_id index instead:
    -- for an owner the statistics have not seen yet (a first large batch,
    -- before the next ANALYZE) it expects one row there
    -- (TestCompletePlanForEveryTenant: 5,000 rows read to complete 10).
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_sort', 'off', true),
            set_config('enable_incremental_sort', 'off', true),
            set_config('enable_bitmapscan', 'off', true),
            set_config('enable_seqscan', 'off', true);
    select coalesce(array_agg(t.ctid), '{}'), coalesce(array_agg(distinct t.prompt_template_id) filter (where t.prompt_template_id is not null), '{}')
    into tids, tpl_ids
    from (
      select t.ctid, t.prompt_template_id from public.ai_tasks t
      where t.id = any(ids)
      order by t.id
    ) t;
    perform set_config('enable_sort', prev_sort, true),
            set_config('enable_incremental_sort', prev_incremental_sort, true),
            set_config('enable_bitmapscan', prev_bitmapscan, true),
            set_config('enable_seqscan', prev_seqscan, true);
    -- complete_one's approval test: the template's flag counts only when
    -- the owner may use the template (orchable.usable_template); and a
    -- leaf's template has no successors. A generic plan too (the primary
    -- key, for any number of ids): planned for each call's ids, it cost
    -- about 0.75 ms of planning per call, the templates' row level
    -- security included, against 0.05 ms to run (docs/performance.md,
    -- ninth round).
    select coalesce(array_agg(p.id), '{}') into not_leaf
    from public.prompt_templates p
    where p.id = any(tpl_ids)
      and ((p.requires_approval and (p.user_id = uid or p.is_public or exists (
             select 1 from public.lab_orchestrator_configs c
             where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code)))
           or p.next_stage_template_id is not null
           or coalesce(jsonb_array_length(case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids end), 0) > 0);
    perform set_config('plan_cache_mode', prev_plan_mode, true);
    perform set_config('orchable.counting', 'deferred', true);
    if fresh then
      perform set_config('plan_cache_mode', 'force_generic_plan', true),
              set_config('enable_indexscan', 'off', true),
              set_config('enable_bitmapscan', 'off', true),
              set_config('enable_seqscan', 'off', true),
              set_config('enable_nestloop', 'off', true);
    end if;
    with items as (
      select distinct on (v.task_id) v.task_id, v.output, v.u
      from (
        select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
        from unnest(items) with ordinality x(e, o)
        where length(e ->> 'task_id') = 36 and rtrim(e ->> 'task_id', '0123456789abcdefABCDEF-') = '' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
      ) v
      order by v.task_id, v.o
    ), done as (
      update public.ai_tasks t set
        status = 'completed',
        output_data = i.output,
        error_message = null,
        completed_at = now(),
        -- What the row trigger would set (leaving processing drops the
        -- lease; updated_at): set here, the trigger is skipped (its WHEN).
        locked_until = null,
        locked_by = null,
        updated_at = now(),
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
          'hooks_ignored', i.u -> 'hooks_ignored',
          'fallback_from', i.u -> 'fallback_from',
          'usage', i.u -> 'usage'))
      from items i
      where t.ctid = any(tids) and t.id = i.task_id
        and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
        and not t.requires_approval
        and t.next_task_config is null and not (t.extra ? 'next_stage_configs')
        and (t.prompt_template_id is null or not (t.prompt_template_id = any(not_leaf)))
      returning t.id, t.batch_id
    )
    select coalesce(array_agg(d.id), '{}'), count(*),
           array_agg(d.batch_id) filter (where d.batch_id is not null)
    into leaf_ids, nleaves, leaf_batches
    from done d;
    perform set_config('orchable.counting', '', true);
    if fresh then
      perform set_config('plan_cache_mode', prev_plan_mode, true),
              set_config('enable_indexscan', prev_indexscan, true),
              set_config('enable_bitmapscan', prev_bitmapscan, true),
              set_config('enable_seqscan', prev_seqscan, true),
              set_config('enable_nestloop', prev_nestloop, true);
    end if;
    if leaf_batches is not null then
      counted := orchable.count_moves(leaf_batches, 'processing', 'completed');
    end if;

    -- As many leaves as items: every item named a distinct task and was a
    -- leaf (the common case), so every result is the leaf result.
    -- Made as one array of that value: jsonb_agg over a series cost about
    -- twice as much (1.6 against 0.75 us per leaf, printed; docs/
    -- performance.md, twentieth round).
    if nleaves = cardinality(items) then
      return to_jsonb(array_fill(leaf_result, array[nleaves]));
    end if;

    -- Tasks whose successors are known from their class, set-based:
    --   * spawners: the only successor is a 1:1 stage or a per-item split
    --     (not a barrier). One INSERT makes every spawner's children, as
    --     spawn_successors would (same columns, idempotency keys and
    --     bounds); a split whose output fails its bounds or is empty (a
    --     dead end re-checks barriers downstream) stays with complete_one.
    --   * feeders of one barrier (an N:1 merge or a join): the only
    --     successor is that barrier. It is checked once per scope
    --     (check_barrier, as complete_one would), after the spawners'
    --     children exist and before anything else of the call is completed.
    -- One UPDATE completes both kinds. Sequentially that is the same as
    -- taking the spawners first, then these feeders, each checked after
    -- the last of them: until then each check would have waited for the
    -- feeders still processing. When the checks run, every completed task
    -- of the call has made its successors (the invariant the barriers rely
    -- on), except feeders of this same barrier, whose only successor is the
    -- barrier's own task, which no check of this barrier reads
    -- (upstream_stages leaves its own stage out). Feeders of a second
    -- barrier wait for complete_one: a barrier upstream of another must be
    -- settled before the other is checked
    -- (TestCompleteTasksFeedersOfTwoBarriersInOneCall).
    --
    -- The class of a task (the successors spawn_successors would resolve)
    -- depends on its template, its stage key and the launcher's snapshot
    -- in extra.next_stage_configs: one task of each class is classified,
    -- with spawn_successors' own helpers.
    --
    -- Read by the row versions found above (a TID scan, planned once with
    -- index, bitmap and sequential scans disabled: a SELECT, so no other
    -- SQL runs inside it): the leaves completed since are no longer visible
    -- there, the other tasks are unchanged. Also the batches of the tasks
    -- left, for the grouped UPDATE's cancelled-batch test below.
    perform set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_indexscan', 'off', true),
            set_config('enable_bitmapscan', 'off', true),
            set_config('enable_seqscan', 'off', true);
    select coalesce(array_agg(x.t order by (x.t).prompt_template_id, (x.t).stage_key, (x.t).extra -> 'next_stage_configs'), '{}'),
           (select array_agg(distinct t.batch_id) from public.ai_tasks t
            where t.ctid = any(tids) and t.user_id = uid and t.status = 'processing' and t.batch_id is not null)
    into reps, rest_batches
    from (
      select distinct on (t.prompt_template_id, t.stage_key, t.extra -> 'next_stage_configs') t
      from public.ai_tasks t
      where t.ctid = any(tids)
        and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
        and not t.requires_approval and t.next_task_config is null
      order by t.prompt_template_id, t.stage_key, t.extra -> 'next_stage_configs'
    ) x;
    perform set_config('plan_cache_mode', prev_plan_mode, true),
            set_config('enable_indexscan', prev_indexscan, true),
            set_config('enable_bitmapscan', prev_bitmapscan, true),
            set_config('enable_seqscan', prev_seqscan, true);
    foreach rep in array reps
    loop
      tpl := orchable.usable_template(rep.prompt_template_id, uid);
      continue when tpl.id is null or coalesce(tpl.requires_approval, false);
      sids := orchable.successor_ids(rep, tpl);
      continue when cardinality(sids) <> 1;
      succ := orchable.usable_template(sids[1], uid);
      continue when succ.id is null;
      cfg := orchable.successor_config(rep, succ);
      card := orchable.cardinality(cfg);
      deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
      is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from rep.stage_key);
      if is_join or card = 'N:1' then
        continue when sids[1] = rep.prompt_template_id or (barrier.id is not null and sids[1] <> barrier.id);
        barrier := succ;
        kind := 'feeder';
        if not is_join then
          deps := array[rep.stage_key];
        end if;
      elsif card = '1:1' or (coalesce(cfg ->> 'split_mode', 'per_item') = 'per_item' and cfg ->> 'split_path' is not null) then
        kind := 'spawner';
      else
        continue; -- a per-batch split, or a split without a path (an error)
      end if;
      c_tpl := c_tpl || rep.prompt_template_id;
      c_stage := c_stage || rep.stage_key::text;
      c_snap := c_snap || (rep.extra -> 'next_stage_configs');
      c_kind := c_kind || kind;
      c_split := c_split || case when kind = 'spawner' and card = '1:N' then cfg ->> 'split_path' end;
      c_cfg := c_cfg || cfg;
      c_deps := c_deps || to_jsonb(deps);
      c_join := c_join || is_join;
      c_succ := c_succ || succ;
    end loop;

    if cardinality(c_tpl) > 0 then
      select * into lim from orchable.engine_limits where id;
      select coalesce(array_agg(b.id), '{}') into cancelled
      from public.task_batches b
      where b.id = any(rest_batches) and b.created_by = uid and b.status = 'cancelled';
      -- By row version, as the leaves (see there); the UPDATE reads no
      -- other table (the cancelled batches are read just above) and the
      -- counters are written after it.
      perform set_config('orchable.counting', 'deferred', true);
      if fresh then
        perform set_config('plan_cache_mode', 'force_generic_plan', true),
                set_config('enable_indexscan', 'off', true),
                set_config('enable_bitmapscan', 'off', true),
                set_config('enable_seqscan', 'off', true),
                set_config('enable_nestloop', 'off', true);
      end if;
      -- What spawn_successors refuses (the lineage depth cap, a split
      -- outside its bounds) or skips (a cancelled batch) stays with
      -- complete_one, and so does an empty split.
      with items as (
        select distinct on (v.task_id) v.task_id, v.output, v.u
        from (
          select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
          from unnest(items) with ordinality x(e, o)
          where length(e ->> 'task_id') = 36 and rtrim(e ->> 'task_id', '0123456789abcdefABCDEF-') = '' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
        ) v
        order by v.task_id, v.o
      ), done as (
        update public.ai_tasks t set
          status = 'completed',
          output_data = i.output,
          error_message = null,
          completed_at = now(),
          -- Set here, as the row trigger would: it is skipped (its WHEN).
          locked_until = null,
          locked_by = null,
          updated_at = now(),
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
            'hooks_ignored', i.u -> 'hooks_ignored',
            'fallback_from', i.u -> 'fallback_from',
            'usage', i.u -> 'usage'))
        from items i, unnest(c_tpl, c_stage, c_snap, c_split) with ordinality c(tpl, stage, snap, split, k)
        where t.ctid = any(tids) and t.id = i.task_id
          and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
          and not t.requires_approval and t.next_task_config is null
          and (t.prompt_template_id, t.stage_key::text, t.extra -> 'next_stage_configs') is not distinct from (c.tpl, c.stage, c.snap)
          and t.step_number + 1 <= lim.max_depth
          and not coalesce(t.batch_id = any(cancelled), false)
          -- A split: its array, as spawn_successors reads it (the edited
          -- output first), within its bounds and not empty. OFFSET 0 keeps
          -- the path read once: flattened, it ran once per mention of z.a.
          and (c.split is null or coalesce((
                select case when jsonb_typeof(z.a) = 'array' then
                  jsonb_array_length(z.a) between 1 and lim.max_split_items
                  and jsonb_array_length(z.a)::bigint * octet_length(coalesce(t.input_data, '{}'::jsonb)::text)
                      + octet_length(z.a::text) <= lim.max_child_input_bytes end
                from (select orchable.json_path(coalesce(t.edited_output_data, i.output), c.split) as a offset 0) z), false))
        returning t as r, c.k::int as k,
                  case when c_kind[c.k] = 'feeder' then orchable.barrier_scope(t, c_cfg[c.k], c_join[c.k]) end as scope
      )
      select array_agg(d.r), array_agg(d.k), array_agg(d.scope)
      into g_rows, g_k, g_scope
      from done d;
      perform set_config('orchable.counting', '', true);
      if fresh then
        perform set_config('plan_cache_mode', prev_plan_mode, true),
                set_config('enable_indexscan', prev_indexscan, true),
                set_config('enable_bitmapscan', prev_bitmapscan, true),
                set_config('enable_seqscan', prev_seqscan, true),
                set_config('enable_nestloop', prev_nestloop, true);
      end if;
      counted := orchable.count_moves((select array_agg(r.batch_id) filter (where r.batch_id is not null) from unnest(g_rows) r),
                                      'processing', 'completed');

      -- The spawners' children, as spawn_successors makes them.
      with ins as (
        insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key, tier_source)
        select orchable.child_id(p.id), coalesce(s.stage_config ->> 'task_type', s.stage_key, 'generic'), 'plan',
          orchable.return_along_with(p.input_data, c_cfg[k.k],
            case when c_split[k.k] is null then r.res
                 else coalesce(p.input_data, '{}'::jsonb) || jsonb_build_object('item', e.e, '_split_index', e.o - 1, '_split_total', r.n) end),
          p.user_id, p.batch_id, p.launch_id, coalesce(p.root_task_id, p.id), p.id,
          coalesce(p.hierarchy_path, '[]'::jsonb) || to_jsonb(p.id::text), p.step_number + 1, s.stage_key, s.id,
          coalesce(s.requires_approval, false),
          case when c_split[k.k] is null then 1 else e.o end, case when c_split[k.k] is null then 1 else r.n end,
          p.test_mode, case when c_split[k.k] is null then p.split_group_id else p.id end,
          jsonb_build_object('parent_stage_key', p.stage_key, 'parent_task_id', p.id),
          case when c_split[k.k] is null then p.id || '/' || s.id else p.id || '/' || s.id || '/' || (e.o - 1) end,
          case when p.tier_source = 'free_pool' then 'free_pool' end
        from unnest(g_rows) with ordinality p
        cross join lateral (select g_k[p.ordinality::int] as k) k
        cross join lateral (select (c_succ[k.k]).*) s
        cross join lateral (
          -- OFFSET 0: the split's array read once per parent, not once per
          -- mention of x.arr and r.arr.
          select x.res, x.arr, jsonb_array_length(x.arr) as n
          from (select coalesce(p.edited_output_data, p.output_data) as res,
                       case when c_split[k.k] is not null
                            then orchable.json_path(coalesce(p.edited_output_data, p.output_data), c_split[k.k]) end as arr offset 0) x
        ) r
        cross join lateral (
          select null::jsonb as e, 1::bigint as o where c_split[k.k] is null
          union all
          select y.e, y.o from jsonb_array_elements(r.arr) with ordinality y(e, o)
        ) e
        where c_kind[k.k] = 'spawner'
        order by p.ordinality, e.o
        on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing
        returning parent_task_id
      )
      select coalesce(jsonb_object_agg(x.pid::text, x.n), '{}'::jsonb) into spawned
      from (select i.parent_task_id as pid, count(*) as n from ins i group by 1) x;

      -- One check per class and scope, in a fixed order (two calls take
      -- the barriers' advisory locks in the same order). The highest task
      -- id of a group stands for it.
      select array_agg(x.o order by x.g) filter (where x.is_rep), array_agg(x.k order by x.g) filter (where x.is_rep),
             array_agg(x.o), array_agg(x.g)
      into r_o, r_k, f_o, f_g
      from (
        select u.o::int as o, u.k, dense_rank() over (order by u.k, u.scope)::int as g,
               row_number() over (partition by u.k, u.scope order by (g_rows[u.o]).id desc) = 1 as is_rep
        from unnest(g_k, g_scope) with ordinality u(k, scope, o)
        where u.scope is not null
      ) x;
      -- Each check decides and makes its child (orchable.barrier_child);
      -- the children are inserted together after the last check, in one
      -- statement (a closing's own one-row INSERT was a third of its cost).
      -- No check reads another's child: each is of the barrier's own
      -- stage, which no check of it probes. The stages upstream of a
      -- barrier are looked up at most once per class, by the first check
      -- that finds its feeders done, not once per closing scope.
      for i in 1 .. coalesce(cardinality(r_o), 0) loop
        if b_k is distinct from r_k[i] then
          b_k := r_k[i];
          b_deps := array(select jsonb_array_elements_text(c_deps[b_k]));
          b_up := null;
        end if;
        b_rec := orchable.barrier_child(g_rows[r_o[i]], c_succ[b_k], c_cfg[b_k], b_deps, c_join[b_k], b_up);
        b_up := b_rec.upstream;
        g_rc := g_rc || b_rec.rc;
        if b_rec.rc = 1 then
          kids := kids || b_rec.child;
          kid_i := kid_i || i;
        end if;
      end loop;
      -- On conflict as check_barrier inserts: a child that exists is not
      -- made twice, and its check reports 0.
      if cardinality(kids) > 0 then
        with ins as (
          insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
            hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
            extra, idempotency_key, tier_source)
          select k.id, k.task_type, k.status, k.input_data, k.user_id, k.batch_id, k.launch_id, k.root_task_id, k.parent_task_id,
            k.hierarchy_path, k.step_number, k.stage_key, k.prompt_template_id, k.requires_approval, k.sequence, k.total_steps, k.test_mode,
            k.extra, k.idempotency_key, k.tier_source
          from unnest(kids) k
          on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing
          returning idempotency_key
        )
        select coalesce(array_agg(ins.idempotency_key), '{}') into made from ins;
        for j in 1 .. cardinality(kids) loop
          if not ((kids[j]).idempotency_key = any(made)) then
            g_rc[kid_i[j]] := 0;
          end if;
        end loop;
      end if;

      -- Results: a spawner reports the children it made; the task standing
      -- for a barrier's group gets the check's result, the others waited
      -- for it.
      select coalesce(jsonb_object_agg((g_rows[u.o]).id::text,
               case when u.scope is null
                      then jsonb_build_object('status', 'completed', 'created', coalesce((spawned ->> (g_rows[u.o]).id::text)::int, 0), 'waiting', 0)
                    when u.o = r_o[f.g] and g_rc[f.g] >= 0
                      then jsonb_build_object('status', 'completed', 'created', g_rc[f.g], 'waiting', 0)
                    else wait_result end), '{}'::jsonb), count(*)
      into fed, nfed
      from (select v.k, v.scope, v.o::int as o from unnest(g_k, g_scope) with ordinality v(k, scope, o)) u
      left join unnest(f_o, f_g) f(o, g) on f.o = u.o;

      if nleaves + nfed = cardinality(items) then
        return (select jsonb_agg(coalesce(fed -> lower(e ->> 'task_id'), leaf_result) order by o)
                from unnest(items) with ordinality x(e, o));
      end if;
    end if;

    -- The results in the order of p_items; what the UPDATE did not take (a
    -- task with successors, a repeated item, approval, a task not
    -- processing under this worker, a malformed item) goes through
    -- complete_one. Only the first item of a task can have been taken by
    -- the UPDATE; a repeated one is checked like any other (a duplicate,
    -- or PT409 with another output). The leaves' ids become a set here,
    -- not in the UPDATE's statement: most calls return before this, and
    -- the set cost about 0.8 us per leaf (docs/performance.md, twentieth
    -- round).
    leaves := (select coalesce(jsonb_object_agg(x.id::text, true), '{}'::jsonb) from unnest(leaf_ids) x(id));
    for item, first in
      select e, row_number() over (partition by lower(e ->> 'task_id') order by o) = 1
      from unnest(items) with ordinality x(e, o) order by o
    loop
      if first and leaves ? lower(item ->> 'task_id') then
        res := leaf_result;
      elsif first and fed ? lower(item ->> 'task_id') then
        res := fed -> lower(item ->> 'task_id');
      else
        res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
      end if;
      results := results || res; -- in place: plpgsql appends to an expanded array
    end loop;
  exception when others then
    results := '{}';
    for item in select e from unnest(items) with ordinality x(e, o) order by o loop
      begin
        res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
      exception when others then
        res := jsonb_build_object('error', sqlerrm, 'code', sqlstate);
      end;
      results := results || res;
    end loop;
  end;
  return to_jsonb(results);
end
$$;
