-- The operator's monthly free-pool quota in tasks per user (service_role
-- only; users can read it through get_free_tier_usage but never change it).
create or replace function public.set_free_tier_quota(p_monthly_task_limit integer) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  lim integer;
begin
  if p_monthly_task_limit is null or p_monthly_task_limit < 0 then
    raise exception using errcode = '22023', message = 'p_monthly_task_limit must be zero or a positive number of tasks';
  end if;
  update orchable.free_tier_settings set monthly_task_limit = p_monthly_task_limit, updated_at = now()
  where id
  returning monthly_task_limit into lim;
  return jsonb_build_object('monthly_task_limit', lim);
end
$$;
