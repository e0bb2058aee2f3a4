create or replace function public.ai_tasks_count_delete() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  insert into public.task_batch_counter_deltas (batch_id, user_id, d_total, d_pending, d_processing, d_completed, d_failed)
  select o.batch_id, o.user_id, -count(*),
         -count(*) filter (where public.task_status_bucket(o.status) = 'pending'),
         -count(*) filter (where public.task_status_bucket(o.status) = 'processing'),
         -count(*) filter (where public.task_status_bucket(o.status) = 'completed'),
         -count(*) filter (where public.task_status_bucket(o.status) = 'failed')
  from old_rows o
  where o.batch_id is not null
    -- A delete that cascades from the batch itself needs no delta.
    and exists (select 1 from public.task_batches b where b.id = o.batch_id)
  group by o.batch_id, o.user_id;
  return null;
end
$$;
