------------------------------------------------------------------------------
-- Engine mode.
--
-- PL/pgSQL, not SQL: every function of the SQL API calls it once per call,
-- and a SQL function that cannot be inlined (it has a SET clause) is parsed
-- and planned again in every transaction that calls it, about 30-60 us of
-- each call's CPU (pgbench, docs/performance.md, eighteenth round); a
-- PL/pgSQL function keeps its plan for the connection.
------------------------------------------------------------------------------
create or replace function orchable.engine_on() returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  perform set_config('orchable.engine', 'on', true);
end
$$;
