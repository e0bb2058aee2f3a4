-- gemini_caches: the explicit Gemini cached contents a batch's tasks share
-- (the original project's table and columns, kept; rows of the original stay).
-- One row per cached content: (batch, model, content hash, Google project),
-- because a cached content belongs to the project of the key that created
-- it. Every instance finds and renews the same row; the cache janitor deletes
-- the cached content and its row when the batch finishes, is cancelled or
-- idles, and a crash leaks nothing longer than the TTL (expires_at).
create table if not exists public.gemini_caches (
  id uuid primary key default gen_random_uuid(),
  batch_id uuid not null references public.task_batches (id) on delete cascade,
  cache_name varchar not null,
  total_tokens integer default 0,
  created_at timestamptz default timezone('utc', now()),
  expires_at timestamptz not null,
  user_id uuid not null references auth.users (id) on delete cascade
);
-- Columns this engine adds (null in the original's rows).
alter table public.gemini_caches add column if not exists model_id text;
alter table public.gemini_caches add column if not exists content_hash text;
alter table public.gemini_caches add column if not exists project text;
alter table public.gemini_caches add column if not exists last_used_at timestamptz;
create index if not exists gemini_caches_batch_id_idx on public.gemini_caches (batch_id);
create index if not exists gemini_caches_expires_at_idx on public.gemini_caches (expires_at);
create unique index if not exists gemini_caches_shared_key
  on public.gemini_caches (user_id, batch_id, model_id, content_hash, project);

alter table public.gemini_caches enable row level security;
revoke all on public.gemini_caches from public, anon, authenticated;
grant select, insert, update, delete on public.gemini_caches to authenticated, service_role;

-- The owner only (the original: select, insert, delete own; update own is
-- added for renewals).
drop policy if exists gemini_caches_select_own on public.gemini_caches;
create policy gemini_caches_select_own on public.gemini_caches for select to authenticated
  using ((select auth.uid()) = user_id);
drop policy if exists gemini_caches_insert_own on public.gemini_caches;
create policy gemini_caches_insert_own on public.gemini_caches for insert to authenticated
  with check ((select auth.uid()) = user_id
    and exists (select 1 from public.task_batches b where b.id = batch_id and b.created_by = (select auth.uid())));
drop policy if exists gemini_caches_update_own on public.gemini_caches;
create policy gemini_caches_update_own on public.gemini_caches for update to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
drop policy if exists gemini_caches_delete_own on public.gemini_caches;
create policy gemini_caches_delete_own on public.gemini_caches for delete to authenticated
  using ((select auth.uid()) = user_id);
