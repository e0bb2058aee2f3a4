-- The caller's monthly usage rows, newest month first, the month of p_at
-- always first (a zero row when nothing was used yet), so the front end's
-- data[0] is the current month. p_user_id must be the caller: any other id,
-- whether or not such a user exists, raises the same error (no oracle).
create or replace function orchable.user_usage(p_user_id uuid, p_at timestamptz)
returns table (month character varying, task_count integer, token_input_count bigint, token_output_count bigint)
  language plpgsql stable
  set search_path = ''
as $$
declare
  uid uuid := orchable.require_user('get_user_usage');
  m text := orchable.free_tier_month(p_at);
begin
  if p_user_id is distinct from uid then
    raise exception using errcode = '42501', message = 'get_user_usage: p_user_id must be your own user id';
  end if;
  return query
    select m::character varying, coalesce(u.task_count, 0), coalesce(u.token_input_count, 0::bigint),
           coalesce(u.token_output_count, 0::bigint)
    from (select 1) one
    left join public.user_usage u on u.user_id = uid and u.month = m
    union all
    (select u.month, coalesce(u.task_count, 0), coalesce(u.token_input_count, 0::bigint),
            coalesce(u.token_output_count, 0::bigint)
     from public.user_usage u
     where u.user_id = uid and u.month::text <> m
     order by u.month desc);
end
$$;
