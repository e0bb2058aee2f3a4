-- The caller's active Gemini keys with their block state for p_model, in one
-- round trip. Blocks are returned as stored (past values included): the
-- caller compares them with its own clock.
create or replace function public.usable_api_keys(p_model text)
returns table (
  id uuid,
  key_name text,
  api_key_encrypted text,
  model_preference text,
  priority integer,
  project text,
  last_used_at timestamptz,
  blocked_until timestamptz,
  project_blocked_until timestamptz
)
language sql
stable
security invoker
set search_path = ''
set jit = off
as $$
  select k.id, k.key_name::text, k.api_key_encrypted, k.model_preference::text, k.priority, k.project,
         h.last_used_at, h.blocked_until, b.blocked_until
  from public.user_api_keys k
  left join public.api_key_health h on h.user_api_key_id = k.id
  left join public.api_key_project_blocks b
    on b.user_id = k.user_id
   and b.project = coalesce(nullif(k.project, ''), 'key:' || k.id::text)
   and b.model = p_model
  where k.user_id = (select auth.uid())
    and k.is_active
    and k.provider = 'gemini'
$$;
