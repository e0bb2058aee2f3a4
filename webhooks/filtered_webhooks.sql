-- Optional: filtered webhook triggers on public.ai_tasks (orchable webhooks install).
--
-- This is NOT a migration: nothing applies it unless the operator asks (`orchable webhooks
-- install`, or by pasting it into the SQL editor). It replaces the Studio Database Webhook, which
-- fires on every ai_tasks write, the engine's own claims, lease renewals and completions included,
-- each carrying two full rows (outputs over the service's 1 MiB cap get 413, and Supabase keeps a
-- row per delivery).
--
-- What is sent, through pg_net (net.http_post), after the transaction commits:
--   * INSERT: one webhook per statement and owner when the statement inserted runnable tasks
--     (status plan/pending) that are not successors spawned by the engine (parent_task_id is
--     null): a user's insert or a launch (10,000 rows: one webhook).
--   * UPDATE: one webhook per statement and owner when a task became runnable from anything but
--     processing (a retry, a resume; the engine's release, reschedule and lease re-queue come from
--     processing), or when approved_at was set.
--   * Nothing for the engine's claims, renewals, completions and failures.
-- The body has Supabase's shape {type, table, schema, record, old_record}, with slim rows (ids,
-- owner, status, approved_at): the service re-reads the task as its owner anyway.
--
-- The URL and the shared secret live in Supabase Vault (names orchable_webhook_url and
-- orchable_webhook_secret); the secret is sent in the header named by the trigger argument
-- (WEBHOOK_SECRET_HEADER, default X-Supabase-Webhook-Source). Until both secrets exist nothing is
-- sent. Remove a Studio webhook on ai_tasks (and the optional signing trigger) when installing
-- this, or work is announced twice.

create or replace function orchable.send_task_webhooks()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  payloads jsonb[];
  payload jsonb;
  target_url text;
  secret text;
begin
  -- Decide first (cheap, on the transition tables); read Vault only when something is sent.
  if tg_op = 'INSERT' then
    select coalesce(array_agg(p), '{}') into payloads from (
      select distinct on (n.user_id)
        jsonb_build_object('type', 'INSERT', 'table', tg_table_name, 'schema', tg_table_schema,
          'record', jsonb_build_object('id', n.id, 'user_id', n.user_id, 'batch_id', n.batch_id,
            'launch_id', n.launch_id, 'status', n.status, 'approved_at', n.approved_at),
          'old_record', null) as p
      from new_rows n
      where n.status in ('plan', 'pending') and n.parent_task_id is null
      order by n.user_id, n.id
    ) x;
  else
    select coalesce(array_agg(p), '{}') into payloads from (
      select distinct on (n.user_id)
        jsonb_build_object('type', 'UPDATE', 'table', tg_table_name, 'schema', tg_table_schema,
          'record', jsonb_build_object('id', n.id, 'user_id', n.user_id, 'batch_id', n.batch_id,
            'launch_id', n.launch_id, 'status', n.status, 'approved_at', n.approved_at),
          'old_record', jsonb_build_object('id', o.id, 'user_id', o.user_id, 'batch_id', o.batch_id,
            'launch_id', o.launch_id, 'status', o.status, 'approved_at', o.approved_at)) as p
      from new_rows n join old_rows o on o.id = n.id
      where (n.status in ('plan', 'pending') and o.status is distinct from n.status and o.status <> 'processing')
         or (o.approved_at is null and n.approved_at is not null)
      order by n.user_id, n.id
    ) x;
  end if;
  if cardinality(payloads) = 0 then
    return null;
  end if;

  select s.decrypted_secret into target_url from vault.decrypted_secrets s where s.name = 'orchable_webhook_url';
  select s.decrypted_secret into secret from vault.decrypted_secrets s where s.name = 'orchable_webhook_secret';
  if target_url is null or secret is null then
    return null;
  end if;
  foreach payload in array payloads loop
    perform net.http_post(
      url := target_url,
      body := payload,
      params := '{}'::jsonb,
      headers := jsonb_build_object('Content-Type', 'application/json', tg_argv[0], secret),
      timeout_milliseconds := 5000);
  end loop;
  return null;
end
$$;

revoke all on function orchable.send_task_webhooks() from public, anon, authenticated, service_role;

drop trigger if exists orchable_webhook_insert on public.ai_tasks;
create trigger orchable_webhook_insert after insert on public.ai_tasks
  referencing new table as new_rows
  for each statement execute function orchable.send_task_webhooks('X-Supabase-Webhook-Source');

drop trigger if exists orchable_webhook_update on public.ai_tasks;
create trigger orchable_webhook_update after update on public.ai_tasks
  referencing old table as old_rows new table as new_rows
  for each statement execute function orchable.send_task_webhooks('X-Supabase-Webhook-Source');
