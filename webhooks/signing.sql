-- Optional: sign the ai_tasks webhooks per Standard Webhooks (orchable webhooks signing install).
--
-- This is NOT a migration: nothing applies it unless the operator asks (`orchable webhooks signing
-- install`, or by pasting the output of `orchable webhooks signing sql` into the SQL editor).
--
-- It installs a trigger on public.ai_tasks (after insert or update, per row) that sends the
-- Supabase-format payload {"type", "table", "schema", "record", "old_record"} with full rows
-- through pg_net, with the headers webhook-id, webhook-timestamp and
-- webhook-signature = "v1," || base64(HMAC-SHA256(secret, id || '.' || timestamp || '.' || body)),
-- which the service verifies with WEBHOOK_MODE=standard and WEBHOOK_SIGNING_SECRET.
-- It fires on every ai_tasks write, the engine's own included; prefer the filtered triggers
-- (`orchable webhooks install`) unless the signature is what you need, and do not install both.
--
-- The URL and the secret live in Supabase Vault:
--   select vault.create_secret('https://<your-service>/webhooks/supabase', 'orchable_webhook_url');
--   select vault.create_secret('whsec_<base64 of 32 random bytes>', 'orchable_webhook_signing_secret');
-- Until both exist the trigger sends nothing (and logs nothing). pg_net keeps queued requests,
-- headers included, in net.http_request_queue for a moment; the signature is per message, so that
-- does not expose the secret. It needs Vault, pg_net and pgcrypto (created when available).
do $install$
declare
  crypto_schema text;
begin
  if not exists (select from pg_namespace where nspname = 'vault') then
    raise exception 'orchable: Supabase Vault (schema vault) is missing: the signing trigger keeps its URL and secret there';
  end if;
  if not exists (select from pg_namespace where nspname = 'net') then
    if not exists (select from pg_available_extensions where name = 'pg_net') then
      raise exception 'orchable: pg_net is not available: enable it (Dashboard > Database > Extensions) and run this again';
    end if;
    execute 'create extension if not exists pg_net';
  end if;
  select n.nspname into crypto_schema
  from pg_extension e join pg_namespace n on n.oid = e.extnamespace
  where e.extname = 'pgcrypto';
  if crypto_schema is null then
    if not exists (select from pg_available_extensions where name = 'pgcrypto') then
      raise exception 'orchable: pgcrypto is not available';
    end if;
    execute 'create schema if not exists extensions';
    execute 'create extension if not exists pgcrypto with schema extensions';
    crypto_schema := 'extensions';
  end if;

  -- SECURITY DEFINER: the users whose writes fire the trigger cannot read vault.decrypted_secrets.
  -- It is a trigger function (it cannot be called as an RPC), it reads only the two named secrets,
  -- and the row it sends has already passed RLS; search_path is empty and every name is qualified.
  execute format($ddl$
    create or replace function public.orchable_send_signed_webhook()
    returns trigger
    language plpgsql
    security definer
    set search_path = ''
    as $fn$
    declare
      target_url text;
      signing_secret text;
      payload jsonb;
      message_id text;
      sent_at bigint;
      signature text;
    begin
      select s.decrypted_secret into target_url
      from vault.decrypted_secrets s where s.name = 'orchable_webhook_url';
      select s.decrypted_secret into signing_secret
      from vault.decrypted_secrets s where s.name = 'orchable_webhook_signing_secret';
      if target_url is null or signing_secret is null then
        return null; -- not configured: nothing is sent or logged
      end if;

      payload := jsonb_build_object(
        'type', tg_op,
        'table', tg_table_name,
        'schema', tg_table_schema,
        'record', case when tg_op = 'DELETE' then null else to_jsonb(new) end,
        'old_record', case when tg_op = 'INSERT' then null else to_jsonb(old) end
      );
      message_id := 'msg_' || replace(pg_catalog.gen_random_uuid()::text, '-', '');
      sent_at := floor(extract(epoch from pg_catalog.clock_timestamp()))::bigint;
      -- pg_net sends convert_to(body::text, 'UTF8'), so these are exactly the bytes signed here.
      signature := pg_catalog.encode(
        %1$I.hmac(
          pg_catalog.convert_to(message_id || '.' || sent_at::text || '.' || payload::text, 'UTF8'),
          pg_catalog.decode(pg_catalog.regexp_replace(signing_secret, '^(v1,)?whsec_', ''), 'base64'),
          'sha256'),
        'base64');

      perform net.http_post(
        url := target_url,
        body := payload,
        params := '{}'::jsonb,
        headers := jsonb_build_object(
          'Content-Type', 'application/json',
          'webhook-id', message_id,
          'webhook-timestamp', sent_at::text,
          'webhook-signature', 'v1,' || signature),
        timeout_milliseconds := 5000);
      return null;
    end
    $fn$
  $ddl$, crypto_schema);

  -- A trigger function: nobody calls it directly.
  execute 'revoke all on function public.orchable_send_signed_webhook() from public';
  execute 'revoke all on function public.orchable_send_signed_webhook() from anon, authenticated';
  execute 'drop trigger if exists orchable_signed_webhook on public.ai_tasks';
  execute 'create trigger orchable_signed_webhook after insert or update on public.ai_tasks '
       || 'for each row execute function public.orchable_send_signed_webhook()';
end
$install$;
