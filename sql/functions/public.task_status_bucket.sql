------------------------------------------------------------------------------
-- Batch progress: triggers append deltas (a statement-level one per batch for
-- inserts and deletes, one per changed row for status updates). The trigger functions are SECURITY DEFINER so that users
-- need (and have) no privilege on the deltas table at all: they can only
-- produce deltas by changing their own tasks, which RLS has already checked
-- (the functions read nothing but the statement's transition tables). Buckets: pending <- plan, pending, awaiting_approval,
-- generated; processing <- running, processing; completed <- approved,
-- completed, skipped; failed <- failed, cancelled.
------------------------------------------------------------------------------
create or replace function public.task_status_bucket(s public.ai_task_status) returns text
  -- No SET clause and STABLE (the enum's text cast is stable), so the
  -- planner inlines it; declared IMMUTABLE it was never inlined and ran as a
  -- function call per row.
  language sql stable
as $$
  select case s::text
    when 'plan' then 'pending' when 'pending' then 'pending'
    when 'awaiting_approval' then 'pending' when 'generated' then 'pending'
    when 'running' then 'processing' when 'processing' then 'processing'
    when 'approved' then 'completed' when 'completed' then 'completed' when 'skipped' then 'completed'
    else 'failed' end
$$;
