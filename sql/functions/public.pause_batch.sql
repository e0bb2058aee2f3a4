create or replace function public.pause_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
begin
  if b.status in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT409', message = format('batch %s is %s and cannot be paused', p_batch_id, b.status);
  end if;
  update public.task_batches set status = 'paused' where id = p_batch_id;
  return jsonb_build_object('status', 'paused');
end
$$;
