create or replace function public.retry_failed_task(p_task_id uuid) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  uid uuid := orchable.require_user('retry_failed_task');
begin
  perform orchable.engine_on();
  -- By primary key only (RLS keeps the caller to their own rows; the owner
  -- is checked below): with user_id = uid here the planner could walk the
  -- owner's user_id index (orchable.complete_one).
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found or t.user_id is distinct from uid then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status not in ('failed', 'cancelled', 'completed', 'generated') then
    raise exception using errcode = 'PT409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, t.status);
  end if;
  perform orchable.reset_task(t);
end
$$;
