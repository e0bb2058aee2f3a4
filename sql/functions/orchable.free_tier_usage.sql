-- The caller's free-pool usage for the month of p_at: one row of the
-- contract's get_free_tier_usage shape (month, used, limit, remaining).
create or replace function orchable.free_tier_usage(p_at timestamptz)
returns table (month character varying, used integer, "limit" integer, remaining integer)
  language plpgsql stable
  set search_path = ''
as $$
declare
  uid uuid := orchable.require_user('get_free_tier_usage');
  m text := orchable.free_tier_month(p_at);
  lim integer := orchable.free_tier_limit();
  n integer;
begin
  select coalesce(u.task_count, 0) into n from public.user_usage u where u.user_id = uid and u.month = m;
  n := coalesce(n, 0);
  return query select m::character varying, n, lim, greatest(lim - n, 0);
end
$$;
