------------------------------------------------------------------------------
-- find_gemini_cache: the caller's live cached content for (batch, model,
-- content hash, Google project), or null. Live means it expires after
-- p_valid_until (the caller asks for some time left to use it).
------------------------------------------------------------------------------
create or replace function public.find_gemini_cache(
  p_batch_id uuid,
  p_model text,
  p_content_hash text,
  p_project text,
  p_valid_until timestamptz default now()
) returns jsonb
  language sql stable
  set search_path = ''
  set jit = off
as $$
  select jsonb_build_object('cache_name', c.cache_name, 'expires_at', c.expires_at, 'total_tokens', c.total_tokens)
  from public.gemini_caches c
  where c.user_id = (select auth.uid()) and c.batch_id = p_batch_id and c.model_id = p_model
    and c.content_hash = p_content_hash and c.project = p_project and c.expires_at > p_valid_until
  order by c.expires_at desc
  limit 1
$$;
