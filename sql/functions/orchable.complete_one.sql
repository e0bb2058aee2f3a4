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
  tid_ tid;
  t public.ai_tasks;
  tpl public.prompt_templates;
  needs_approval boolean;
  sids text[];
  res jsonb := '{}'::jsonb;
  u jsonb := coalesce(p_usage, '{}'::jsonb);
  uid uuid := orchable.require_user('complete_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key (orchable.lock_task).
  tid_ := orchable.lock_task(p_task_id, uid);
  if tid_ is null then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  -- The row version locked above (a TID scan: cheaper than any index, so
  -- the planner takes it whatever it expects of the owner), and below the
  -- UPDATE by it (this transaction holds the lock: still the current one).
  select * into t from public.ai_tasks where ctid = tid_;
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

  -- The template as the owner may use it, assigned (not read as a table
  -- function in a SELECT: that cost about 90 us a call, docs/
  -- performance.md, thirtieth round); also the successors' source below.
  tpl := orchable.usable_template(t.prompt_template_id, uid);
  needs_approval := t.requires_approval or coalesce(tpl.requires_approval, false);

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
      'hooks_ignored', u -> 'hooks_ignored',
      'fallback_from', u -> 'fallback_from',
      'usage', u -> 'usage'))
  where ctid = tid_ and id = p_task_id
  returning * into t;

  -- A task without successors (orchable.successor_ids, as
  -- spawn_successors resolves them from the same task and template) makes
  -- nothing: spawn_successors would return {created 0, waiting 0} for it,
  -- after about 170 us of its own lookups (thirtieth round). A dead end
  -- re-checks the barriers downstream only for a split that made no child,
  -- which has a successor. The template and the ids are handed to
  -- spawn_successors, which would look both up again (thirty-first round).
  if not needs_approval then
    sids := orchable.successor_ids(t, tpl);
  end if;
  if cardinality(sids) > 0 then
    res := orchable.spawn_successors(t, false, tpl, sids);
    if res ? 'error' then
      update public.ai_tasks set status = 'failed', error_message = res ->> 'error', retry_count = retry_count + 1
      where id = p_task_id
      returning * into t;
      perform orchable.spawn_successors(t, true, tpl, sids);
      return jsonb_build_object('status', 'failed', 'error', res ->> 'error', 'created', 0);
    end if;
  end if;

  return jsonb_build_object('status', case when needs_approval then 'generated' else 'completed' end,
                            'created', coalesce((res ->> 'created')::int, 0),
                            'waiting', coalesce((res ->> 'waiting')::int, 0));
end
$$;
