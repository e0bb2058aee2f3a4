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
  fast_all jsonb;
  grouped jsonb := '{}';
  g public.ai_tasks;
  moved uuid[] := '{}';
  first boolean := true;
  counted integer;
  nfast integer;
  leaf_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 0}';
  uid uuid := orchable.require_user('complete_tasks');
begin
  perform orchable.engine_on();
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) > 1000 then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;

  -- Set-based fast path for the common case: tasks processing under this
  -- worker whose stage has no successors and needs no approval (a leaf:
  -- completing it creates nothing). One UPDATE for all of them, counted
  -- once per batch (orchable.count_moves; the row trigger skips it).
  perform set_config('orchable.counting', 'deferred', true);
  with items as (
    -- The first item of each task (a repeated item is checked later like
    -- any other: a duplicate, or PT409 with a different output).
    select distinct on (v.task_id) v.task_id, v.output, v.u
    from (
      select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
      from jsonb_array_elements(p_items) with ordinality x(e, o)
      where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
    ) v
    order by v.task_id, v.o
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
        'hooks_ignored', i.u -> 'hooks_ignored',
        'fallback_from', i.u -> 'fallback_from',
        'usage', i.u -> 'usage'))
    from items i
    where t.id = i.task_id and t.id in (select id from leaves)
    returning t.id, t.batch_id
  )
  select coalesce(jsonb_object_agg(id::text, true), '{}'::jsonb), count(*),
         orchable.count_moves(array_agg(batch_id) filter (where batch_id is not null), 'processing', 'completed')
  into fast, nfast, counted from done;
  perform set_config('orchable.counting', '', true);

  -- As many leaves completed as there are items: every item named a
  -- distinct task and took the leaf path (the common case), so every
  -- result is the leaf result and the other paths have nothing to do.
  if nfast = jsonb_array_length(p_items) then
    return (select coalesce(jsonb_agg(leaf_result), '[]'::jsonb) from generate_series(1, nfast));
  end if;

  -- Everything else, first all together in one subtransaction: a
  -- subtransaction per item costs a subtransaction id per written item,
  -- and past 64 in one transaction every other session's snapshot
  -- overflows to pg_subtrans lookups. Errors are rare (a lost lease, a
  -- changed output); when an item raises, the whole group is undone and
  -- redone one item at a time, each isolated from the others.
  fast_all := fast;
  begin
    -- Tasks with successors that need no approval: one UPDATE completes
    -- them all (as complete_one would, one by one), then each creates its
    -- successors. The UPDATE runs to completion before the first
    -- spawn_successors, so a barrier sees every feeder of this group done;
    -- the first to close it creates the successor and the others find it
    -- by its idempotency key. The UPDATE is counted once per batch after
    -- the loop; everything the loop writes is counted by the row trigger.
    perform set_config('orchable.counting', 'deferred', true);
    for g in
      with items as (
        select distinct on (v.task_id) v.task_id, v.output, v.u
        from (
          select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u, o
          from jsonb_array_elements(p_items) with ordinality x(e, o)
          where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
        ) v
        where not (fast ? v.task_id::text)
        order by v.task_id, v.o
      )
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
        -- complete_one's approval test: the template's flag counts only when
        -- the owner may use the template (orchable.usable_template).
        and not coalesce((
          select p.requires_approval from public.prompt_templates p
          where p.id = t.prompt_template_id
            and (p.user_id = uid or p.is_public or exists (
              select 1 from public.lab_orchestrator_configs c
              where c.is_public and c.created_by = p.user_id and c.id::text = p.organization_code))), false)
      returning t.*
    loop
      if first then
        perform set_config('orchable.counting', '', true);
        first := false;
      end if;
      if g.batch_id is not null then
        moved := moved || g.batch_id;
      end if;
      res := orchable.spawn_successors(g, false);
      if res ? 'error' then
        update public.ai_tasks set status = 'failed', error_message = res ->> 'error', retry_count = retry_count + 1
        where id = g.id
        returning * into g;
        perform orchable.spawn_successors(g, true);
        res := jsonb_build_object('status', 'failed', 'error', res ->> 'error', 'created', 0);
      else
        res := jsonb_build_object('status', 'completed', 'created', coalesce((res ->> 'created')::int, 0),
                                  'waiting', coalesce((res ->> 'waiting')::int, 0));
      end if;
      grouped := grouped || jsonb_build_object(g.id::text, res);
    end loop;
    perform set_config('orchable.counting', '', true);
    if cardinality(moved) > 0 then
      counted := orchable.count_moves(moved, 'processing', 'completed');
    end if;

    -- The results in the order of p_items; what neither path took (a
    -- repeated item, approval, a task not processing under this worker, a
    -- malformed item) goes through complete_one.
    for item in select e from jsonb_array_elements(p_items) with ordinality x(e, o) order by o loop
      if fast ? lower(item ->> 'task_id') then
        res := leaf_result;
        -- Only the first item of a task took a set-based path; a repeated
        -- item is checked like any other (a different output is refused).
        fast := fast - lower(item ->> 'task_id');
      elsif grouped ? lower(item ->> 'task_id') then
        res := grouped -> lower(item ->> 'task_id');
        grouped := grouped - lower(item ->> 'task_id');
      else
        res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
      end if;
      results := results || res; -- in place: plpgsql appends to an expanded array
    end loop;
  exception when others then
    results := '{}';
    fast := fast_all; -- variables are not rolled back with the subtransaction
    for item in select e from jsonb_array_elements(p_items) with ordinality x(e, o) order by o loop
      if fast ? lower(item ->> 'task_id') then
        res := leaf_result;
        fast := fast - lower(item ->> 'task_id');
      else
        begin
          res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
        exception when others then
          res := jsonb_build_object('error', sqlerrm, 'code', sqlstate);
        end;
      end if;
      results := results || res;
    end loop;
  end;
  return to_jsonb(results);
end
$$;
