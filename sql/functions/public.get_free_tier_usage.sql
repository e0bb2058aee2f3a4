-- The original front end's free-tier meter (frontend-contract §2): the
-- caller's free-pool tasks this month (UTC), the quota and what is left.
create or replace function public.get_free_tier_usage()
returns table (month character varying, used integer, "limit" integer, remaining integer)
  language sql stable
  set search_path = ''
  set jit = off
as $$
  select * from orchable.free_tier_usage(now())
$$;
