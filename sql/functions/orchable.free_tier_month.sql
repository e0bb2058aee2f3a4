-- The quota month ('YYYY-MM', UTC) of an instant: the key of user_usage.
create or replace function orchable.free_tier_month(p_at timestamptz) returns text
  language sql immutable
  set search_path = ''
as $$
  select to_char(p_at at time zone 'UTC', 'YYYY-MM')
$$;
