------------------------------------------------------------------------------
-- renew_gemini_cache: record that the caller extended a cached content's TTL.
------------------------------------------------------------------------------
create or replace function public.renew_gemini_cache(p_cache_name text, p_expires_at timestamptz) returns boolean
  language sql volatile
  set search_path = ''
  set jit = off
as $$
  with u as (
    update public.gemini_caches set expires_at = greatest(expires_at, p_expires_at), last_used_at = now()
    where user_id = (select auth.uid()) and cache_name = p_cache_name
    returning 1
  )
  select exists (select 1 from u)
$$;
