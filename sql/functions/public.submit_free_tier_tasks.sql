-- The original front end's free-tier launch (frontend-contract §2): root
-- tasks for the caller's batch, run on the operator's pool keys, charged to
-- the caller's monthly quota. Returns {success, used, limit, remaining,
-- task_ids, batch_ids} or {success: false, error: "QUOTA_EXCEEDED", used,
-- limit, remaining}. See orchable.submit_free_tier.
create or replace function public.submit_free_tier_tasks(p_tasks jsonb) returns jsonb
  language sql volatile
  set search_path = ''
  set jit = off
  set statement_timeout = '60s'
as $$
  select orchable.submit_free_tier(p_tasks, now())
$$;
