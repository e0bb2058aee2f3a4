-- Supabase's default privileges of projects created before 2026 (or with
-- "default privileges for new entities" on), for tests only: applied after
-- the local shim and before the migrations, so the RLS matrix and the
-- catalog checks can run against what such a project grants to every new
-- table, function and sequence. Never part of the migrations.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;
