------------------------------------------------------------------------------
-- get_batch_progress: exact counts from the tasks themselves (the counters in
-- task_batches are folded asynchronously; this is exact at every moment).
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
           sum(coalesce(total_token_count, 0)) as tokens
    from public.ai_tasks where batch_id = p_batch_id group by 1, 2
  )
  select jsonb_build_object(
    'batch_id', b.id, 'name', b.name, 'status', b.status, 'launch_id', b.launch_id,
    'created_at', b.created_at, 'completed_at', b.completed_at,
    'total', coalesce(sum(n), 0),
    'pending', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'pending'), 0),
    'processing', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'processing'), 0),
    'completed', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'completed'), 0),
    'failed', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'failed'), 0),
    'awaiting_approval', coalesce(sum(n) filter (where status = 'generated'), 0),
    'total_tokens', coalesce(sum(tokens), 0),
    'by_stage', coalesce((select jsonb_object_agg(stage_key, s) from (
        select stage_key, jsonb_object_agg(status, n) as s from c group by stage_key) x), '{}'::jsonb))
  into out
  from c;
  return out;
end
$$;
