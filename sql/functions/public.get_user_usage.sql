-- The original front end's usage page (frontend-contract §2): the caller's
-- monthly usage, the current month first. Only the caller's own id is
-- accepted (see orchable.user_usage).
create or replace function public.get_user_usage(p_user_id uuid)
returns table (month character varying, task_count integer, token_input_count bigint, token_output_count bigint)
  language sql stable
  set search_path = ''
  set jit = off
as $$
  select * from orchable.user_usage(p_user_id, now())
$$;
