-- spawn_successors: make a completed task's children (1:1 successors and
-- splits) and check its barriers (N:1 merges and joins), as the task's owner
-- (docs/pipeline-semantics.md). With only_barriers, only the barriers are
-- checked (a task that failed or was rejected).
--
-- p_tpl and p_sids: the parent's template as the owner may use it
-- (orchable.usable_template(parent.prompt_template_id, parent.user_id)) and
-- its successors' ids (orchable.successor_ids(parent, p_tpl)), when the
-- caller has them already: complete_task has looked both up to decide
-- whether to call (docs/performance.md, thirty-first round). With p_sids
-- null, both are looked up here.
create or replace function orchable.spawn_successors(parent public.ai_tasks, only_barriers boolean,
                                                     p_tpl public.prompt_templates default null, p_sids text[] default null)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := parent.user_id;
  lim orchable.engine_limits;
  tpl public.prompt_templates := p_tpl;
  sids text[] := p_sids;
  succ public.prompt_templates;
  -- The successors resolved in pass 1, in plan order (pass 2 reads them
  -- back instead of looking each template up again).
  succs public.prompt_templates[] := '{}';
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
  k int;
  -- Pass 1's plan, one element per successor kept (succs' order): its
  -- stage settings, cardinality, whether it is a join, and its dependsOn.
  cfgs jsonb[] := '{}';
  cards text[] := '{}';
  joins boolean[] := '{}';
  depss jsonb[] := '{}';
  barrier boolean;
  dead_end boolean := only_barriers;
  est bigint;
  in_size bigint;
begin
  -- Defence in depth: the engine acts for the parent's owner only.
  if (select auth.uid()) is not null and owner is distinct from (select auth.uid()) then
    raise exception using errcode = '42501', message = 'spawn_successors: the task belongs to another owner';
  end if;
  select * into lim from orchable.engine_limits where id;
  if sids is null then
    tpl := orchable.usable_template(parent.prompt_template_id, owner);
    sids := orchable.successor_ids(parent, tpl);
  end if;
  if parent.batch_id is not null
     and exists (select 1 from public.task_batches where id = parent.batch_id and created_by = owner and status = 'cancelled') then
    return jsonb_build_object('created', 0, 'waiting', 0);
  end if;

  -- Pass 1: resolve every successor and validate splits and bounds before
  -- inserting anything, so a bad split fails the parent without half its
  -- children.
  foreach sid in array sids loop
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
    succs := succs || succ;
    cfgs := cfgs || cfg;
    cards := cards || card;
    joins := joins || is_join;
    depss := depss || to_jsonb(deps);
  end loop;

  -- Pass 2: the children of 1:1 and split successors first, then the
  -- barriers (N:1 merges and joins), each kind in pass 1's order: a barrier
  -- is checked once this parent's other children exist.
  for i in 1 .. 2 * cardinality(succs) loop
    k := (i - 1) % cardinality(succs) + 1;
    succ := succs[k];
    cfg := cfgs[k];
    card := cards[k];
    is_join := joins[k];
    barrier := is_join or card = 'N:1';
    continue when barrier <> (i > cardinality(succs));

    if barrier then
      if is_join then
        deps := array(select jsonb_array_elements_text(depss[k]));
      else
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
      insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
        hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
        split_group_id, extra, idempotency_key, tier_source)
      values (orchable.child_id(parent.id), coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
        orchable.return_along_with(parent.input_data, cfg, result), owner,
        parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1, succ.stage_key, succ.id,
        coalesce(succ.requires_approval, false), 1, 1, parent.test_mode, parent.split_group_id,
        jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
        parent.id || '/' || succ.id,
        case when parent.tier_source = 'free_pool' then 'free_pool' end)
      on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing;
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
        insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key, tier_source)
        select orchable.child_id(parent.id), coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object(
              'items', (select jsonb_agg(e order by o) from jsonb_array_elements(arr) with ordinality x(e, o)
                        where o > b * bsize and o <= (b + 1) * bsize),
              '_batch_index', b)),
          owner, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), b + 1, ceil(n::numeric / bsize)::int,
          parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/b' || b,
          case when parent.tier_source = 'free_pool' then 'free_pool' end
        from generate_series(0, ceil(n::numeric / bsize)::int - 1) b
        on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing;
      else
        insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key, tier_source)
        select orchable.child_id(parent.id), coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object('item', e, '_split_index', o - 1, '_split_total', n)),
          owner, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), o, n, parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/' || (o - 1),
          case when parent.tier_source = 'free_pool' then 'free_pool' end
        from jsonb_array_elements(arr) with ordinality x(e, o)
        on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing;
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
