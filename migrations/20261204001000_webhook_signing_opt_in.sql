-- The webhook signing trigger becomes opt-in.
--
-- 20261126000900_optional_webhook_signing.sql installs a row trigger on public.ai_tasks wherever
-- Vault, pg_net and pgcrypto exist, which is every hosted Supabase project: `db push` enabled
-- pg_net and installed a trigger that fired on every ai_tasks write, the engine's own included,
-- and logged a line per row while it was not configured. From now on nothing is installed unless
-- the operator asks (`orchable webhooks signing install`, or the SQL that
-- `orchable webhooks signing sql` prints, run in the SQL editor).
--
-- This migration removes what 000900 installed, unless the operator had opted in already: the
-- trigger stays where Vault holds both of its secrets (orchable_webhook_url and
-- orchable_webhook_signing_secret), which only an operator following the signing instructions
-- creates. A kept trigger loses the per-row log line. pg_net stays enabled (other features of a
-- project may use it); `drop extension pg_net` is the operator's call.
do $migration$
declare
  configured boolean := false;
  fn oid;
begin
  select p.oid into fn
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname = 'public' and p.proname = 'orchable_send_signed_webhook' and p.pronargs = 0;
  if fn is null then
    return; -- never installed (no Vault, pg_net or pgcrypto), or removed by the operator
  end if;

  if exists (select from pg_namespace where nspname = 'vault') then
    begin
      execute $q$select count(distinct name) = 2 from vault.decrypted_secrets
                 where name in ('orchable_webhook_url', 'orchable_webhook_signing_secret')$q$
        into configured;
    exception when others then
      configured := false; -- Vault unreadable here: treat as not configured
    end;
  end if;

  if configured and exists (
    select from pg_trigger
    where tgname = 'orchable_signed_webhook' and tgrelid = to_regclass('public.ai_tasks') and not tgisinternal
  ) then
    -- Opted in before this migration: keep it, without the per-row log line.
    execute regexp_replace(pg_get_functiondef(fn),
      'raise log ''orchable: vault secrets[^;]*;', 'null; -- not configured: nothing is sent or logged', 'g');
    raise notice 'orchable: webhook signing trigger kept (Vault holds its secrets)';
    return;
  end if;

  drop trigger if exists orchable_signed_webhook on public.ai_tasks;
  drop function if exists public.orchable_send_signed_webhook();
  raise notice 'orchable: webhook signing trigger not installed; it is opt-in (orchable webhooks signing install)';
end
$migration$;
