create or replace function public.retry_failed_task(p_task_id uuid) returns void
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  tid_ tid;
  t public.ai_tasks;
  uid uuid := orchable.require_user('retry_failed_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key, then read by row version (orchable.lock_task).
  tid_ := orchable.lock_task(p_task_id, uid);
  if tid_ is null then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  select * into t from public.ai_tasks where ctid = tid_;
  if t.status not in ('failed', 'cancelled', 'completed', 'generated') then
    raise exception using errcode = 'PT409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, t.status);
  end if;
  perform orchable.reset_task(t);
end
$$;
