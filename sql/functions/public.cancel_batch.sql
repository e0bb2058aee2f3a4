create or replace function public.cancel_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
  n int;
begin
  if b.status = 'cancelled' then
    return jsonb_build_object('status', 'cancelled', 'duplicate', true, 'cancelled_tasks', 0);
  end if;
  update public.task_batches set status = 'cancelled' where id = p_batch_id;
  update public.ai_tasks set status = 'cancelled', error_message = 'batch cancelled', completed_at = now()
  where batch_id = p_batch_id and status in ('plan', 'pending', 'generated');
  get diagnostics n = row_count;
  return jsonb_build_object('status', 'cancelled', 'cancelled_tasks', n);
end
$$;
