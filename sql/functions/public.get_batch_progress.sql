------------------------------------------------------------------------------
-- get_batch_progress: exact counts from the tasks themselves (the counters in
-- task_batches are folded asynchronously; this is exact at every moment), and
-- status and completed_at derived from those counts (orchable.batch_status),
-- never from the folded row: completed_at of a finished batch is when its
-- last task finished.
------------------------------------------------------------------------------
create or replace function public.get_batch_progress(p_batch_id uuid) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  b public.task_batches;
  out jsonb;
begin
  select * into b from public.task_batches where id = p_batch_id;
  if not found then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  with c as (
    select coalesce(stage_key, '') as stage_key, status::text as status, count(*) as n,
           sum(coalesce(total_token_count, 0)) as tokens,
           max(coalesce(completed_at, updated_at)) as finished_at
    from public.ai_tasks where batch_id = p_batch_id group by 1, 2
  ), k as (
    select coalesce(sum(n), 0)::bigint as total,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'pending'), 0)::bigint as pending,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'processing'), 0)::bigint as processing,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'completed'), 0)::bigint as completed,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'failed'), 0)::bigint as failed,
      coalesce(sum(n) filter (where status = 'generated'), 0)::bigint as awaiting_approval,
      coalesce(sum(tokens), 0)::bigint as total_tokens,
      max(finished_at) as last_finished
    from c
  ), s as (
    select k.*, orchable.batch_status(b.status, total, pending, processing, completed, failed) as status
    from k
  )
  select jsonb_build_object(
    'batch_id', b.id, 'name', b.name, 'status', s.status, 'launch_id', b.launch_id,
    'created_at', b.created_at,
    'completed_at', case
      when s.status in ('completed', 'failed') then coalesce(s.last_finished, b.completed_at)
      when s.status = 'cancelled' then coalesce(b.completed_at, s.last_finished)
      end,
    'total', s.total, 'pending', s.pending, 'processing', s.processing,
    'completed', s.completed, 'failed', s.failed, 'awaiting_approval', s.awaiting_approval,
    'total_tokens', s.total_tokens,
    'by_stage', coalesce((select jsonb_object_agg(stage_key, x.s) from (
        select stage_key, jsonb_object_agg(status, n) as s from c group by stage_key) x), '{}'::jsonb))
  into out
  from s;
  return out;
end
$$;
