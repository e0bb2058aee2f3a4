------------------------------------------------------------------------------
-- Expired leases. The service identity (BYPASSRLS) only flips leases: a task
-- whose worker died goes back to plan; a task that lost its lease
-- p_max_attempts times is left as it is and its owner is named, so the
-- sweeper gives it up as that owner (fail_expired_tasks). Nothing here reads
-- content or runs the successor/barrier logic. A crash between the two
-- leaves the task listed again by the next sweep.
------------------------------------------------------------------------------
create or replace function public.requeue_expired_leases(p_max_attempts integer default 5) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  requeued int;
  owners jsonb;
begin
  perform orchable.engine_on();
  p_max_attempts := greatest(coalesce(p_max_attempts, 5), 1);
  update public.ai_tasks set status = 'plan', run_after = now(),
    error_message = format('lease of worker %s expired; re-queued', locked_by)
  where status = 'processing' and locked_until < now() and attempts < p_max_attempts;
  get diagnostics requeued = row_count;
  select coalesce(jsonb_agg(distinct t.user_id), '[]'::jsonb) into owners
  from public.ai_tasks t
  where t.status = 'processing' and t.locked_until < now() and t.attempts >= p_max_attempts;
  return jsonb_build_object('requeued', requeued, 'give_up_owners', owners);
end
$$;
