create or replace function public.reject_task(
  p_task_id uuid,
  p_reason text,
  p_regenerate boolean default false
) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  tid_ tid;
  t public.ai_tasks;
  uid uuid := orchable.require_user('reject_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key, then read by row version (orchable.lock_task).
  tid_ := orchable.lock_task(p_task_id, uid);
  if tid_ is null then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  select * into t from public.ai_tasks where ctid = tid_;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  if coalesce(p_regenerate, false) then
    -- Regenerate with the reviewer's notes (the runner adds extra.reviewer_notes to the prompt).
    update public.ai_tasks set status = 'plan', run_after = now(), output_data = null, completed_at = null,
      attempts = 0, error_message = null,
      extra = extra || jsonb_build_object('reviewer_notes', p_reason, 'rejected_output', t.output_data)
    where ctid = tid_ and id = p_task_id;
    return jsonb_build_object('status', 'plan');
  end if;
  update public.ai_tasks set status = 'failed', error_message = 'rejected by reviewer: ' || coalesce(p_reason, '(no reason)'),
    completed_at = now(), edit_notes = p_reason
  where ctid = tid_ and id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;
