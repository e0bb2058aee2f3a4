------------------------------------------------------------------------------
-- gemini_caches_due (service_role): the batches, with their owners, whose
-- cached contents should go: the batch has no task left to run (finished,
-- cancelled, or idle: nothing in plan, pending or processing), or a cache
-- has expired. Ids and owners only; the release runs as the owner.
-- only_expired is true when the batch still runs (release the expired rows
-- only).
------------------------------------------------------------------------------
create or replace function public.gemini_caches_due(p_limit integer default 100)
returns table (user_id uuid, batch_id uuid, only_expired boolean)
  language sql stable
  set search_path = ''
  set jit = off
as $$
  select c.user_id, c.batch_id,
    bool_and(exists (select 1 from public.ai_tasks t
                     where t.batch_id = c.batch_id and t.status in ('plan', 'pending', 'processing'))) as only_expired
  from public.gemini_caches c
  group by c.user_id, c.batch_id
  having bool_or(c.expires_at <= now())
      or not bool_and(exists (select 1 from public.ai_tasks t
                              where t.batch_id = c.batch_id and t.status in ('plan', 'pending', 'processing')))
  order by min(c.expires_at)
  limit greatest(1, least(coalesce(p_limit, 100), 1000))
$$;
