create or replace function public.ai_tasks_count_insert() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  insert into public.task_batch_counter_deltas (batch_id, user_id, d_total, d_pending, d_processing, d_completed, d_failed)
  select n.batch_id, n.user_id, count(*),
         count(*) filter (where public.task_status_bucket(n.status) = 'pending'),
         count(*) filter (where public.task_status_bucket(n.status) = 'processing'),
         count(*) filter (where public.task_status_bucket(n.status) = 'completed'),
         count(*) filter (where public.task_status_bucket(n.status) = 'failed')
  from new_rows n
  where n.batch_id is not null
  group by n.batch_id, n.user_id;
  return null;
end
$$;
