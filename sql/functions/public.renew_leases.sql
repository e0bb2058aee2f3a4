------------------------------------------------------------------------------
-- renew_leases / release_task: lease upkeep for long model calls and for a
-- graceful shutdown (the task goes back to plan; the attempt is not counted).
------------------------------------------------------------------------------
create or replace function public.renew_leases(p_task_ids uuid[], p_worker text, p_lease_seconds integer default 300)
  returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
  uid uuid := orchable.require_user('renew_leases');
begin
  perform orchable.engine_on();
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  update public.ai_tasks set locked_until = now() + make_interval(secs => p_lease_seconds)
  where id = any(p_task_ids) and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return n;
end
$$;
