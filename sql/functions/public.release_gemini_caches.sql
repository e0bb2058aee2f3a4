------------------------------------------------------------------------------
-- release_gemini_caches: forget the caller's cached contents of a batch
-- (all of them, or with p_only_expired only those past expires_at) and
-- return them, so the caller deletes each from Gemini with a key of its
-- project.
------------------------------------------------------------------------------
create or replace function public.release_gemini_caches(p_batch_id uuid, p_only_expired boolean default false) returns jsonb
  language sql volatile
  set search_path = ''
  set jit = off
as $$
  with d as (
    delete from public.gemini_caches
    where user_id = (select auth.uid()) and batch_id = p_batch_id and (not p_only_expired or expires_at <= now())
    returning cache_name, model_id, project, expires_at
  )
  select coalesce(jsonb_agg(jsonb_build_object('cache_name', cache_name, 'model_id', model_id, 'project', project,
    'expired', expires_at <= now())), '[]'::jsonb)
  from d
$$;
