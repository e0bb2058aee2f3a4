-- The free tier (issue #15 part 2; docs/schema.md §10, docs/sql-api.md §9,
-- docs/threat-model.md "Free tier").
--
-- 1. On an upgraded original database, the original's free-tier objects
--    that 20261126000050_upgrade_original.sql left in place go, with their
--    reasons (docs/schema.md §9.4):
--    * triggers trg_task_completed (on_task_completed: +1 per completed
--      free_pool task; orchable charges at submission, so it would double
--      count) and trg_free_tier_start_notify (trigger_notification_on_start:
--      a notifications row per free_pool insert, read by nothing);
--    * every signature of submit_free_tier_tasks, get_free_tier_usage and
--      get_user_usage (orchable defines them again with the contract's
--      argument names and result shapes; a second signature would make
--      PostgREST answer PGRST203, and get_free_tier_usage's result type
--      differs, which create or replace cannot change);
--    * increment_user_usage(p_user_id, …): SECURITY DEFINER, callable by any
--      signed-in user for any user id, so anyone could use up anyone's quota;
--      no live caller;
--    * cleanup_expired_free_tasks(): deleted completed free_pool tasks a day
--      old under pipelines that may still merge them; the quota lives in
--      user_usage, so nothing needs the deletion (its pg_cron job, when
--      there is one, is unscheduled).
--    Their rows (user_usage, notifications, user_profiles,
--    user_subscriptions) are kept.
-- 2. user_profiles (role, tier) and user_usage (monthly counters) exist as
--    the original has them, created when missing; RLS: a user reads their
--    own rows, may edit their own profile but never its role or tier
--    (trigger, next migration), and never writes user_usage.
-- 3. orchable.free_tier_settings: the monthly quota (default 30 tasks),
--    written only by service_role (public.set_free_tier_quota) or postgres.

------------------------------------------------------------------------------
-- 1. The original's free-tier objects.
------------------------------------------------------------------------------
do $$
declare
  r record;
begin
  if to_regclass('public.ai_tasks') is not null then
    drop trigger if exists trg_task_completed on public.ai_tasks;
    drop trigger if exists trg_free_tier_start_notify on public.ai_tasks;
  end if;
  for r in
    select p.oid::regprocedure as sig
    from pg_proc p join pg_namespace ns on ns.oid = p.pronamespace
    where ns.nspname = 'public'
      and p.proname in ('submit_free_tier_tasks', 'get_free_tier_usage', 'get_user_usage', 'increment_user_usage',
                        'on_task_completed', 'trigger_notification_on_start', 'cleanup_expired_free_tasks')
  loop
    execute format('drop function %s', r.sig);
  end loop;
  if to_regclass('cron.job') is not null then
    execute $q$select cron.unschedule(jobid) from cron.job where command ilike '%cleanup_expired_free_tasks%'$q$;
  end if;
  -- The original lets a subscription row set the profile's tier (trigger
  -- tr_sync_tier_to_profile); users never write subscriptions.
  if to_regclass('public.user_subscriptions') is not null then
    revoke insert, update, delete, truncate on public.user_subscriptions from public;
    if exists (select 1 from pg_roles where rolname = 'anon') then
      revoke insert, update, delete, truncate on public.user_subscriptions from anon, authenticated;
    end if;
  end if;
end
$$;

------------------------------------------------------------------------------
-- 2. user_profiles and user_usage.
------------------------------------------------------------------------------
create table if not exists public.user_profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  email text,
  full_name text,
  role character varying not null default 'user'
    constraint user_profiles_role_check check (role in ('user', 'admin', 'superadmin')),
  avatar_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  username text unique,
  settings jsonb,
  tier character varying default 'free'
);
comment on table public.user_profiles is
  'A user''s role (user, admin, superadmin) and tier (free, premium), set by the operator; a user without a row is a free user. The front end reads it (frontend-contract §1.10).';

create table if not exists public.user_usage (
  id uuid primary key default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  month character varying(7) not null,
  task_count integer default 0,
  token_input_count bigint default 0,
  token_output_count bigint default 0,
  updated_at timestamptz default now(),
  unique (user_id, month)
);
comment on table public.user_usage is
  'Free-pool tasks charged per user and month (YYYY-MM, UTC): submitted roots and the tasks the engine creates from them. Written only by orchable''s SECURITY DEFINER functions.';

alter table public.user_profiles enable row level security;
alter table public.user_usage enable row level security;
do $$
declare
  r record;
begin
  for r in select policyname, tablename from pg_policies
           where schemaname = 'public' and tablename in ('user_profiles', 'user_usage') loop
    execute format('drop policy %I on public.%I', r.policyname, r.tablename);
  end loop;
end
$$;
create policy user_profiles_select_own on public.user_profiles for select to authenticated
  using (id = (select auth.uid()));
create policy user_profiles_update_own on public.user_profiles for update to authenticated
  using (id = (select auth.uid())) with check (id = (select auth.uid()));
create policy user_usage_select_own on public.user_usage for select to authenticated
  using (user_id = (select auth.uid()));

revoke all on public.user_profiles, public.user_usage from public;
grant select, insert, update, delete on public.user_profiles, public.user_usage to service_role;
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke all on public.user_profiles, public.user_usage from anon, authenticated;
    grant select, update on public.user_profiles to authenticated;
    grant select on public.user_usage to authenticated;
  end if;
end
$$;

------------------------------------------------------------------------------
-- 3. The operator's settings.
------------------------------------------------------------------------------
create table if not exists orchable.free_tier_settings (
  id boolean primary key default true constraint free_tier_settings_one_row check (id),
  monthly_task_limit integer not null default 30 constraint free_tier_settings_limit check (monthly_task_limit >= 0),
  updated_at timestamptz not null default now()
);
insert into orchable.free_tier_settings (id) values (true) on conflict (id) do nothing;
revoke all on orchable.free_tier_settings from public;
grant select, update on orchable.free_tier_settings to service_role;
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'anon') then
    revoke all on orchable.free_tier_settings from anon, authenticated;
    grant select on orchable.free_tier_settings to authenticated;
  end if;
end
$$;
