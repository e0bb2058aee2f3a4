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
  leaves jsonb;
  nleaves integer;
  first boolean;
  counted integer;
  leaf_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 0}';
  wait_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 1}';
  -- Feeders of one barrier, completed set-based (see below).
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
  f_ids uuid[];
  f_grp integer[];
  reps public.ai_tasks[];
  g_k integer[];
  g_rc integer[] := '{}';
  fed jsonb := '{}';
  nfed integer := 0;
  uid uuid := orchable.require_user('complete_tasks');
begin
  perform orchable.engine_on();
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) > 1000 then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;

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
    -- Feeders of one barrier are completed set-based next (see there).
    -- Any other task with successors is completed by complete_one, one at
    -- a time, each with its successors: a completed task must be one whose
    -- successors exist, or a barrier checked in between (a feeder of a
    -- merge in the same call) closes without the children a completed
    -- split parent has not made yet (TestCompleteTasksSplitParentAndFeedersInOneCall).
    perform set_config('orchable.counting', 'deferred', true);
    with items as (
      select distinct on (v.task_id) v.task_id, v.output, v.u
      from (
        select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
        from jsonb_array_elements(p_items) with ordinality x(e, o)
        where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
      ) v
      order by v.task_id, v.o
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
          'hooks_ignored', i.u -> 'hooks_ignored',
          'fallback_from', i.u -> 'fallback_from',
          'usage', i.u -> 'usage'))
      from items i
      where t.id = i.task_id and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
        and not t.requires_approval
        and t.next_task_config is null and not (t.extra ? 'next_stage_configs')
        -- complete_one's approval test: the template's flag counts only when
        -- the owner may use the template (orchable.usable_template); and a
        -- leaf's template has no successors.
        and not exists (
          select 1 from public.prompt_templates p
          where p.id = t.prompt_template_id
            and ((p.requires_approval and (p.user_id = uid or p.is_public or exists (
                   select 1 from public.lab_orchestrator_configs c
                   where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code)))
                 or p.next_stage_template_id is not null
                 or coalesce(jsonb_array_length(case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids end), 0) > 0))
      returning t.id, t.batch_id
    )
    select coalesce(jsonb_object_agg(d.id::text, true), '{}'::jsonb), count(*),
           orchable.count_moves(array_agg(d.batch_id) filter (where d.batch_id is not null), 'processing', 'completed')
    into leaves, nleaves, counted
    from done d;
    perform set_config('orchable.counting', '', true);

    -- As many leaves as items: every item named a distinct task and was a
    -- leaf (the common case), so every result is the leaf result.
    if nleaves = jsonb_array_length(p_items) then
      return (select coalesce(jsonb_agg(leaf_result), '[]'::jsonb) from generate_series(1, nleaves));
    end if;

    -- Feeders of one barrier (an N:1 merge or a join), set-based: a task
    -- whose only successor is that barrier creates nothing but what the
    -- barrier check creates. One UPDATE completes every such feeder of the
    -- call, then the barrier is checked once per scope (check_barrier, as
    -- complete_one would), before anything else of the call is completed.
    -- Sequentially that is the same as taking these feeders first, each
    -- checked after the last of them: until then each check would have
    -- waited for the feeders still processing. While the checks run, the
    -- call's other completed tasks are leaves (they create nothing) and
    -- feeders of this same barrier, whose only successor is the barrier's
    -- own task, which no check of this barrier reads (upstream_stages
    -- leaves its own stage out). Feeders of a second barrier wait for
    -- complete_one: a barrier upstream of another must be settled before
    -- the other is checked.
    --
    -- The class of a task (the successors spawn_successors would resolve)
    -- depends on its template, its stage key and the launcher's snapshot
    -- in extra.next_stage_configs: one task of each class is classified,
    -- with spawn_successors' own helpers.
    for rep in
      select distinct on (t.prompt_template_id, t.stage_key, t.extra -> 'next_stage_configs') t.*
      from public.ai_tasks t
      -- An array, not a subquery: with a subquery the planner scanned the
      -- whole table when its statistics said few tasks were processing.
      where t.id = any(array(select (e ->> 'task_id')::uuid from jsonb_array_elements(p_items) e
                             where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$'))
        and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
        and not t.requires_approval and t.next_task_config is null
      order by t.prompt_template_id, t.stage_key, t.extra -> 'next_stage_configs'
    loop
      tpl := orchable.usable_template(rep.prompt_template_id, uid);
      continue when tpl.id is null or coalesce(tpl.requires_approval, false);
      sids := orchable.successor_ids(rep, tpl);
      continue when cardinality(sids) <> 1 or sids[1] = rep.prompt_template_id
                 or (barrier.id is not null and sids[1] <> barrier.id);
      succ := orchable.usable_template(sids[1], uid);
      continue when succ.id is null;
      cfg := orchable.successor_config(rep, succ);
      deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
      is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from rep.stage_key);
      continue when not is_join and orchable.cardinality(cfg) <> 'N:1';
      if not is_join then
        deps := array[rep.stage_key];
      end if;
      barrier := succ;
      c_tpl := c_tpl || rep.prompt_template_id;
      c_stage := c_stage || rep.stage_key::text;
      c_snap := c_snap || (rep.extra -> 'next_stage_configs');
      c_cfg := c_cfg || cfg;
      c_deps := c_deps || to_jsonb(deps);
      c_join := c_join || is_join;
      c_succ := c_succ || succ;
    end loop;

    if barrier.id is not null then
      select * into lim from orchable.engine_limits where id;
      perform set_config('orchable.counting', 'deferred', true);
      -- What spawn_successors refuses before a barrier (the lineage depth
      -- cap) and skips (a cancelled batch) stays with complete_one.
      with items as (
        select distinct on (v.task_id) v.task_id, v.output, v.u
        from (
          select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
          from jsonb_array_elements(p_items) with ordinality x(e, o)
          where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
        ) v
        order by v.task_id, v.o
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
            'hooks_ignored', i.u -> 'hooks_ignored',
            'fallback_from', i.u -> 'fallback_from',
            'usage', i.u -> 'usage'))
        from items i, unnest(c_tpl, c_stage, c_snap) with ordinality c(tpl, stage, snap, k)
        where t.id = i.task_id and t.user_id = uid and t.status = 'processing' and t.locked_by = p_worker
          and not t.requires_approval and t.next_task_config is null
          -- Not an index condition (IS NOT DISTINCT FROM): the tasks are
          -- found by id, never by template.
          and (t.prompt_template_id, t.stage_key::text, t.extra -> 'next_stage_configs') is not distinct from (c.tpl, c.stage, c.snap)
          and t.step_number + 1 <= lim.max_depth
          and not exists (select 1 from public.task_batches b
                          where b.id = t.batch_id and b.created_by = uid and b.status = 'cancelled')
        returning t as r, c.k::int as k, orchable.barrier_scope(t, c_cfg[c.k], c_join[c.k]) as scope
      ), grouped as (
        -- One check per class and scope, in a fixed order (two calls
        -- take the barriers' advisory locks in the same order). The
        -- highest task id of a group stands for it.
        select d.r, d.k, dense_rank() over (order by d.k, d.scope)::int as g,
               row_number() over (partition by d.k, d.scope order by (d.r).id desc) = 1 as is_rep
        from done d
      )
      select array_agg((x.r).id), array_agg(x.g),
             array_agg(x.r order by x.g) filter (where x.is_rep),
             array_agg(x.k order by x.g) filter (where x.is_rep),
             orchable.count_moves(array_agg((x.r).batch_id) filter (where (x.r).batch_id is not null), 'processing', 'completed')
      into f_ids, f_grp, reps, g_k, counted
      from grouped x;
      perform set_config('orchable.counting', '', true);

      for i in 1 .. coalesce(cardinality(reps), 0) loop
        g_rc := g_rc || orchable.check_barrier(reps[i], c_succ[g_k[i]], c_cfg[g_k[i]],
                          array(select jsonb_array_elements_text(c_deps[g_k[i]])), c_join[g_k[i]]);
      end loop;
      -- The task standing for its group gets the check's result; the
      -- others waited for it.
      select coalesce(jsonb_object_agg(f.id::text,
               case when f.id = (reps[f.g]).id and g_rc[f.g] >= 0
                    then jsonb_build_object('status', 'completed', 'created', g_rc[f.g], 'waiting', 0)
                    else wait_result end), '{}'::jsonb), count(*)
      into fed, nfed
      from unnest(f_ids, f_grp) f(id, g);

      if nleaves + nfed = jsonb_array_length(p_items) then
        return (select jsonb_agg(coalesce(fed -> lower(e ->> 'task_id'), leaf_result) order by o)
                from jsonb_array_elements(p_items) with ordinality x(e, o));
      end if;
    end if;

    -- The results in the order of p_items; what the UPDATE did not take (a
    -- task with successors, a repeated item, approval, a task not
    -- processing under this worker, a malformed item) goes through
    -- complete_one. Only the first item of a task can have been taken by
    -- the UPDATE; a repeated one is checked like any other (a duplicate,
    -- or PT409 with another output).
    for item, first in
      select e, row_number() over (partition by lower(e ->> 'task_id') order by o) = 1
      from jsonb_array_elements(p_items) with ordinality x(e, o) order by o
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
    for item in select e from jsonb_array_elements(p_items) with ordinality x(e, o) order by o loop
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
