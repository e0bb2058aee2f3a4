create or replace function public.release_task(p_task_id uuid, p_worker text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
  uid uuid := orchable.require_user('release_task');
begin
  perform orchable.engine_on();
  update public.ai_tasks set status = 'plan', run_after = now(), attempts = greatest(attempts - 1, 0)
  where id = p_task_id and user_id = uid and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return jsonb_build_object('released', n = 1);
end
$$;
