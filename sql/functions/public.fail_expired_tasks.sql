-- Gives up, as their owner, on the caller's tasks whose lease expired
-- p_max_attempts times: they fail for good and barriers downstream are
-- re-checked as the owner.
create or replace function public.fail_expired_tasks(p_max_attempts integer default 5) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  uid uuid := orchable.require_user('fail_expired_tasks');
  failed int := 0;
  t public.ai_tasks;
begin
  perform orchable.engine_on();
  p_max_attempts := greatest(coalesce(p_max_attempts, 5), 1);
  for t in
    update public.ai_tasks set status = 'failed', completed_at = now(), retry_count = retry_count + 1,
      error_message = format('worker %s lost the task %s times (lease expired); giving up', locked_by, attempts)
    where id in (select x.id from public.ai_tasks x
                 where x.user_id = uid and x.status = 'processing' and x.locked_until < now()
                   and x.attempts >= p_max_attempts
                 for update skip locked)
    returning *
  loop
    failed := failed + 1;
    perform orchable.spawn_successors(t, true);
  end loop;
  return jsonb_build_object('failed', failed);
end
$$;
