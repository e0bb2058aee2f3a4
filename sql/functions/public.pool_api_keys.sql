-- The operator's free-pool keys (user_api_keys.pool_type = 'free_pool',
-- active, Gemini) with their block state for p_model, for free-pool tasks
-- (tier_source = 'free_pool') only. service_role only: the raw values never
-- reach a user. The model's free-tier limits come from the original's model
-- catalog (ai_model_settings' system row for p_model) where it exists, else
-- NULL.
create or replace function public.pool_api_keys(p_model text)
returns table (
  id uuid,
  user_id uuid,
  key_name text,
  api_key_encrypted text,
  model_preference text,
  priority integer,
  project text,
  last_used_at timestamptz,
  blocked_until timestamptz,
  project_blocked_until timestamptz,
  free_tier_rpm integer,
  free_tier_tpm integer,
  free_tier_rpd integer
)
  language plpgsql stable
  security definer
  set search_path = ''
  set jit = off
as $$
declare
  rpm integer;
  tpm integer;
  rpd integer;
begin
  if to_regclass('public.ai_model_settings') is not null then
    execute 'select s.free_tier_rpm, s.free_tier_tpm, s.free_tier_rpd from public.ai_model_settings s
             where s.model_id = $1 and s.user_id is null and coalesce(s.is_active, true)
             order by s.updated_at desc nulls last limit 1'
      into rpm, tpm, rpd using p_model;
  end if;
  return query
    select k.id, k.user_id, k.key_name::text, k.api_key_encrypted, k.model_preference::text, k.priority, k.project,
           h.last_used_at, h.blocked_until, b.blocked_until, rpm, tpm, rpd
    from public.user_api_keys k
    left join public.api_key_health h on h.user_api_key_id = k.id
    left join public.api_key_project_blocks b
      on b.user_id = k.user_id
     and b.project = coalesce(nullif(k.project, ''), 'key:' || k.id::text)
     and b.model = p_model
    where k.pool_type = 'free_pool'
      and k.is_active
      and k.provider = 'gemini';
end
$$;
