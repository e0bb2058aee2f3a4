------------------------------------------------------------------------------
-- get_batch_progress: exact counts from the tasks themselves (the counters in
-- task_batches are folded asynchronously; this is exact at every moment), and
-- status and completed_at derived from those counts (orchable.batch_status),
-- never from the folded row: completed_at of a finished batch is when its
-- last task finished. tokens and estimated_cost_usd sum what completed
-- tasks recorded in extra.usage (every call of a run, cached tokens and the
-- cost from the engine's price table; docs/cost.md), falling back to the
-- token columns for tasks without it.
------------------------------------------------------------------------------
create or replace function public.get_batch_progress(p_batch_id uuid) returns jsonb
  language plpgsql stable
  set search_path = ''
  set jit = off
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
           max(coalesce(completed_at, updated_at)) as finished_at,
           sum(coalesce(u.prompt, prompt_token_count, 0)) as prompt,
           sum(coalesce(u.cached, 0)) as cached,
           sum(coalesce(u.candidates, candidates_token_count, 0)) as candidates,
           sum(coalesce(u.thoughts, thoughts_token_count, 0)) as thoughts,
           sum(coalesce(u.tool_use, 0)) as tool_use,
           sum(coalesce(u.total, total_token_count, 0)) as billed,
           sum(u.cost) as cost,
           count(*) filter (where u.cost is null and (u.total > 0 or coalesce(total_token_count, 0) > 0)) as unpriced
    from public.ai_tasks t
    cross join lateral (
      select max(v) filter (where k = 'prompt_token_count') as prompt,
             max(v) filter (where k = 'cached_content_token_count') as cached,
             max(v) filter (where k = 'candidates_token_count') as candidates,
             max(v) filter (where k = 'thoughts_token_count') as thoughts,
             max(v) filter (where k = 'tool_use_prompt_token_count') as tool_use,
             max(v) filter (where k = 'total_token_count') as total,
             max(v) filter (where k = 'estimated_cost_usd') as cost
      from (select e.key as k, (e.value #>> '{}')::numeric as v
            from jsonb_each(case when jsonb_typeof(t.extra -> 'usage') = 'object' then t.extra -> 'usage' else '{}'::jsonb end) e
            where jsonb_typeof(e.value) = 'number') x
    ) u
    where batch_id = p_batch_id group by 1, 2
  ), k as (
    select coalesce(sum(n), 0)::bigint as total,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'pending'), 0)::bigint as pending,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'processing'), 0)::bigint as processing,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'completed'), 0)::bigint as completed,
      coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'failed'), 0)::bigint as failed,
      coalesce(sum(n) filter (where status = 'generated'), 0)::bigint as awaiting_approval,
      coalesce(sum(tokens), 0)::bigint as total_tokens,
      max(finished_at) as last_finished,
      jsonb_build_object('prompt', coalesce(sum(prompt), 0)::bigint, 'cached_content', coalesce(sum(cached), 0)::bigint,
        'candidates', coalesce(sum(candidates), 0)::bigint, 'thoughts', coalesce(sum(thoughts), 0)::bigint,
        'tool_use_prompt', coalesce(sum(tool_use), 0)::bigint, 'total', coalesce(sum(billed), 0)::bigint) as tokens,
      round(coalesce(sum(cost), 0), 6) as estimated_cost_usd,
      coalesce(sum(unpriced), 0)::bigint as unpriced_tasks
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
    'tokens', s.tokens, 'estimated_cost_usd', s.estimated_cost_usd, 'unpriced_tasks', s.unpriced_tasks,
    'by_stage', coalesce((select jsonb_object_agg(stage_key, x.s) from (
        select stage_key, jsonb_object_agg(status, n) as s from c group by stage_key) x), '{}'::jsonb))
  into out
  from s;
  return out;
end
$$;
