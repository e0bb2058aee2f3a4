------------------------------------------------------------------------------
-- record_gemini_cache: record a cached content the caller just created for
-- (batch, model, content hash, project). When another instance recorded a
-- live one first, that one is kept and returned with won = false (the caller
-- deletes its own); an expired row is replaced (its name is returned in
-- replaced, for deletion).
------------------------------------------------------------------------------
create or replace function public.record_gemini_cache(
  p_batch_id uuid,
  p_model text,
  p_content_hash text,
  p_project text,
  p_cache_name text,
  p_total_tokens integer,
  p_expires_at timestamptz
) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  uid uuid := orchable.require_user('record_gemini_cache');
  old public.gemini_caches;
begin
  select * into old from public.gemini_caches
  where user_id = uid and batch_id = p_batch_id and model_id = p_model and content_hash = p_content_hash and project = p_project
  for update;
  if found and old.expires_at > now() then
    return jsonb_build_object('cache_name', old.cache_name, 'expires_at', old.expires_at, 'won', false);
  end if;
  if found then
    update public.gemini_caches set cache_name = p_cache_name, total_tokens = p_total_tokens, expires_at = p_expires_at,
      created_at = now(), last_used_at = now()
    where id = old.id;
    return jsonb_build_object('cache_name', p_cache_name, 'expires_at', p_expires_at, 'won', true, 'replaced', old.cache_name);
  end if;
  insert into public.gemini_caches (batch_id, cache_name, total_tokens, expires_at, user_id, model_id, content_hash, project, last_used_at)
  values (p_batch_id, p_cache_name, p_total_tokens, p_expires_at, uid, p_model, p_content_hash, p_project, now())
  on conflict (user_id, batch_id, model_id, content_hash, project) do nothing;
  if not found then
    select * into old from public.gemini_caches
    where user_id = uid and batch_id = p_batch_id and model_id = p_model and content_hash = p_content_hash and project = p_project;
    return jsonb_build_object('cache_name', old.cache_name, 'expires_at', old.expires_at, 'won', false);
  end if;
  return jsonb_build_object('cache_name', p_cache_name, 'expires_at', p_expires_at, 'won', true);
end
$$;
