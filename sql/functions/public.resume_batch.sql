create or replace function public.resume_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
begin
  if b.status <> 'paused' then
    if b.status in ('pending', 'processing') then
      return jsonb_build_object('status', b.status, 'duplicate', true);
    end if;
    raise exception using errcode = 'PT409', message = format('batch %s is %s and cannot be resumed', p_batch_id, b.status);
  end if;
  -- The fold leaves paused batches alone, so settle the status from the
  -- tasks themselves: work may have finished while the batch was paused.
  update public.task_batches set status = case
      when not exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id
                       and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'))
       and exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id)
        then case when exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id and t.status in ('failed', 'cancelled'))
                  then 'failed' else 'completed' end
      else 'processing' end,
    completed_at = null
  where id = p_batch_id
  returning status into b.status;
  if b.status in ('completed', 'failed') then
    update public.task_batches set completed_at = now() where id = p_batch_id;
  end if;
  perform pg_notify('orchable_wakeup', '');
  return jsonb_build_object('status', b.status);
end
$$;
