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
    -- A task with successors is completed by complete_one, one at a time,
    -- each with its successors: a completed task must be one whose
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
