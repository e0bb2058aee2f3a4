create or replace function public.retry_all_failed_in_batch(p_batch_id uuid) returns integer
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  t public.ai_tasks;
  n int := 0;
  uid uuid := orchable.require_user('retry_all_failed_in_batch');
begin
  perform orchable.engine_on();
  -- The front end may pass a launch id (its /batch/:id route carries either).
  if not exists (select 1 from public.task_batches where (id = p_batch_id or launch_id = p_batch_id) and created_by = uid) then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  for t in
    select * from public.ai_tasks
    where (batch_id = p_batch_id or launch_id = p_batch_id) and user_id = uid and status = 'failed'
    order by step_number, created_at
    for update
  loop
    -- An earlier reset may have removed this task (it descended from another).
    if exists (select 1 from public.ai_tasks where id = t.id and user_id = uid and status = 'failed') then
      perform orchable.reset_task(t);
      n := n + 1;
    end if;
  end loop;
  update public.task_batches set status = 'processing'
  where (id = p_batch_id or launch_id = p_batch_id) and created_by = uid and status in ('completed', 'failed') and n > 0;
  return n;
end
$$;
