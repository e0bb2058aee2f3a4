create or replace function public.release_task(p_task_id uuid, p_worker text) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  n int;
  tid_ tid;
  uid uuid := orchable.require_user('release_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key (orchable.lock_task), then updated by row version
  -- (one TID: cheaper than any index).
  tid_ := orchable.lock_task(p_task_id, uid);
  update public.ai_tasks set status = 'plan', run_after = now(), attempts = greatest(attempts - 1, 0)
  where ctid = tid_ and id = p_task_id and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return jsonb_build_object('released', n = 1);
end
$$;
