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
  -- By primary key only (RLS keeps the caller to their own rows; the owner
  -- is checked below): with user_id = uid here the planner could walk the
  -- owner's user_id index (orchable.complete_one).
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found or t.user_id is distinct from uid then
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
