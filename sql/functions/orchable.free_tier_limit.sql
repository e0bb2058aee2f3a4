-- The monthly free-pool quota in tasks (orchable.free_tier_settings, set by
-- the operator with public.set_free_tier_quota; default 30).
create or replace function orchable.free_tier_limit() returns integer
  language sql stable
  set search_path = ''
as $$
  select coalesce((select s.monthly_task_limit from orchable.free_tier_settings s where s.id), 30)
$$;
