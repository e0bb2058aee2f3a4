------------------------------------------------------------------------------
-- pause_batch: refuses a batch that is finished by its tasks' exact counts
-- (the folded status may lag behind them) or cancelled.
------------------------------------------------------------------------------
create or replace function public.pause_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
  st text;
begin
  select orchable.batch_status(b.status, count(*),
           count(*) filter (where public.task_status_bucket(t.status) = 'pending'),
           count(*) filter (where public.task_status_bucket(t.status) = 'processing'),
           count(*) filter (where public.task_status_bucket(t.status) = 'completed'),
           count(*) filter (where public.task_status_bucket(t.status) = 'failed'))
    into st
  from public.ai_tasks t where t.batch_id = p_batch_id;
  if st in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT409', message = format('batch %s is %s and cannot be paused', p_batch_id, st);
  end if;
  update public.task_batches set status = 'paused' where id = p_batch_id;
  return jsonb_build_object('status', 'paused');
end
$$;
