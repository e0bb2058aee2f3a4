------------------------------------------------------------------------------
-- Engine mode.
------------------------------------------------------------------------------
create or replace function orchable.engine_on() returns void
  language sql volatile
  set search_path = ''
as $$
  select set_config('orchable.engine', 'on', true)
$$;
