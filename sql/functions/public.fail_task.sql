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
  set jit = off
as $$
declare
  tid_ tid;
  t public.ai_tasks;
  uid uuid := orchable.require_user('fail_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key, then read by row version (orchable.lock_task).
  tid_ := orchable.lock_task(p_task_id, uid);
  if tid_ is null then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  select * into t from public.ai_tasks where ctid = tid_;
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
      where ctid = tid_ and id = p_task_id;
      return jsonb_build_object('status', 'cancelled');
    end if;
    update public.ai_tasks set status = 'plan', run_after = p_retry_at, error_message = p_error,
      retry_count = retry_count + 1
    where ctid = tid_ and id = p_task_id;
    return jsonb_build_object('status', 'plan', 'run_after', p_retry_at);
  end if;

  update public.ai_tasks set status = 'failed', error_message = p_error, retry_count = retry_count + 1,
    completed_at = now()
  where ctid = tid_ and id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;
