-- Local Supabase shim: makes a plain PostgreSQL look enough like a Supabase
-- project for development and tests. It is applied by `orchable migrate --local`
-- only when the `auth` schema is missing and is NEVER part of the migrations a
-- real project receives (it lives outside the embedded migration set).
--
-- Definitions follow supabase/auth migrations (20240625163155_set_search_path,
-- 20220531120530_add_auth_jwt_function) and the Supabase role layout.

-- Roles are cluster-wide, and the tests migrate many databases at once: on a
-- new cluster two migrations may create the same role or membership
-- together, and the later one fails on the catalog's unique index (23505)
-- once the first commits. Each is made in its own block that leaves one
-- made meanwhile alone.
do $$
declare
  r record;
begin
  for r in select * from (values ('anon', 'nologin noinherit'), ('authenticated', 'nologin noinherit'),
                                 ('service_role', 'nologin noinherit bypassrls'), ('authenticator', 'login noinherit')) v(name, opts)
  loop
    if not exists (select 1 from pg_roles where rolname = r.name) then
      begin
        execute format('create role %I %s', r.name, r.opts);
      exception when unique_violation or duplicate_object then
        null; -- another migration created it meanwhile
      end;
    end if;
  end loop;
  -- PostgREST connects as authenticator; the tests and the direct transport
  -- connect as the owner, who must be able to `set local role` to each.
  for r in select * from (values ('authenticator'), (current_user)) v(member) loop
    begin
      execute format('grant anon, authenticated, service_role to %I', r.member);
    exception when unique_violation or sqlstate 'XX000' then
      null; -- another migration granted it meanwhile ("tuple concurrently updated")
    end;
  end loop;
end
$$;

-- Supabase's per-role settings (supabase/postgres migrations): PostgREST logs
-- in as authenticator (8 s statement and lock timeouts for its session) and
-- applies the impersonated role's own settings to each request (anon 3 s,
-- authenticated 8 s; service_role has none, so the authenticator's 8 s
-- holds). The PostgREST test server and the direct transport apply them the
-- same way, so a statement that is too slow for a real project fails in the
-- tests too. Roles are cluster-wide: this sets them for every database, once
-- (parallel migrations of other databases race on the same catalog row, so a
-- value already there is left alone and a concurrent update is tolerated).
do $$
declare
  s record;
begin
  for s in select * from (values ('anon', 'statement_timeout', '3s'), ('authenticated', 'statement_timeout', '8s'),
                                 ('authenticator', 'statement_timeout', '8s'), ('authenticator', 'lock_timeout', '8s')) v(r, k, val)
  loop
    if not exists (select from pg_roles where rolname = s.r and rolconfig @> array[s.k || '=' || s.val]) then
      begin
        execute format('alter role %I set %s = %L', s.r, s.k, s.val);
      exception when sqlstate 'XX000' then
        null; -- "tuple concurrently updated": another migration is setting it
      end;
    end if;
  end loop;
end
$$;

create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  id uuid primary key default extensions.gen_random_uuid(),
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  is_anonymous boolean not null default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- As Supabase's (supabase/auth, migrations/20220224000811): no SET clause,
-- so the planner inlines it. With one it ran as a function call in every
-- policy and engine statement (a fifth of the database CPU of a pipeline
-- task in the local profile, a cost hosted projects do not have). Names
-- are schema-qualified instead.
create or replace function auth.uid() returns uuid
  language sql stable
as $$
  select coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb operator(pg_catalog.->>) 'sub')
  )::pg_catalog.uuid
$$;

create or replace function auth.role() returns text
  language sql stable
  set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
  language sql stable
  set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
  language sql stable
  set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt() to anon, authenticated, service_role;

-- Supabase's default privileges on public: the API roles may use the schema,
-- tables are exposed only through explicit grants in the migrations.
grant usage on schema public to anon, authenticated, service_role;
