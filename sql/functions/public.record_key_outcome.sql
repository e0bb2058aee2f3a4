-- Records the outcome of one model call with one key:
--   success       reset consecutive failures and the key's own block
--   failure       not the key's fault (5xx, timeout): count it only
--   rate_limited  block (project, p_model) until p_blocked_until
--   key_blocked   block the key until p_blocked_until
--   invalid       deactivate the key with p_reason
-- and appends a row to api_key_usage_log.
create or replace function public.record_key_outcome(
  p_key_id uuid,
  p_model text,
  p_outcome text,
  p_error_code text default null,
  p_blocked_until timestamptz default null,
  p_reason text default null,
  p_tokens integer default null,
  p_task_id uuid default null,
  p_latency_ms integer default null
)
returns void
language plpgsql
security invoker
set search_path = ''
set jit = off
as $$
declare
  v_user uuid := (select auth.uid());
  v_key public.user_api_keys%rowtype;
  v_ok boolean := p_outcome = 'success';
  v_fault boolean := p_outcome in ('rate_limited', 'key_blocked', 'invalid');
begin
  if v_user is null then
    raise exception 'record_key_outcome: not authenticated' using errcode = '42501';
  end if;
  if p_outcome is null or p_outcome not in ('success', 'failure', 'rate_limited', 'key_blocked', 'invalid') then
    raise exception 'record_key_outcome: unknown outcome %', p_outcome using errcode = '22023';
  end if;
  if p_outcome in ('rate_limited', 'key_blocked') and p_blocked_until is null then
    raise exception 'record_key_outcome: % needs p_blocked_until', p_outcome using errcode = '22023';
  end if;

  select * into v_key from public.user_api_keys where id = p_key_id;
  if not found then
    raise exception 'record_key_outcome: key % not found or not visible', p_key_id using errcode = 'PT404';
  end if;

  insert into public.api_key_health as h (
    user_api_key_id, user_id, last_used_at, last_success_at, last_failure_at, consecutive_failures,
    total_requests, successful_requests, failed_requests, blocked_until, block_reason, last_error_code, updated_at)
  values (
    p_key_id, v_user, now(),
    case when v_ok then now() end,
    case when not v_ok then now() end,
    case when v_fault then 1 else 0 end,
    1,
    case when v_ok then 1 else 0 end,
    case when v_ok then 0 else 1 end,
    case when p_outcome = 'key_blocked' then p_blocked_until end,
    case when v_fault then left(p_reason, 255) end,
    case when not v_ok then left(p_error_code, 50) end,
    now())
  on conflict (user_api_key_id) do update set
    last_used_at = now(),
    last_success_at = case when v_ok then now() else h.last_success_at end,
    last_failure_at = case when v_ok then h.last_failure_at else now() end,
    consecutive_failures = case when v_ok then 0 when v_fault then h.consecutive_failures + 1 else h.consecutive_failures end,
    total_requests = h.total_requests + 1,
    successful_requests = h.successful_requests + case when v_ok then 1 else 0 end,
    failed_requests = h.failed_requests + case when v_ok then 0 else 1 end,
    blocked_until = case
      when p_outcome = 'key_blocked' then greatest(h.blocked_until, p_blocked_until)
      when v_ok then null
      else h.blocked_until end,
    block_reason = case when v_fault then left(p_reason, 255) when v_ok then null else h.block_reason end,
    last_error_code = case when v_ok then h.last_error_code else left(p_error_code, 50) end,
    updated_at = now();

  if p_outcome = 'rate_limited' then
    insert into public.api_key_project_blocks as b (user_id, project, model, blocked_until, reason, updated_at)
    values (v_user, coalesce(nullif(v_key.project, ''), 'key:' || v_key.id::text), p_model, p_blocked_until, p_reason, now())
    on conflict (user_id, project, model) do update set
      blocked_until = greatest(b.blocked_until, excluded.blocked_until),
      reason = excluded.reason,
      updated_at = now();
  end if;

  if p_outcome = 'invalid' then
    update public.user_api_keys
       set is_active = false,
           deactivated_reason = coalesce(p_reason, p_error_code, 'invalid key'),
           updated_at = now()
     where id = p_key_id;
  end if;

  insert into public.api_key_usage_log (
    user_api_key_id, task_id, job_id, request_type, model_used, tokens_used, success,
    error_code, error_message, latency_ms, metadata_json, user_id)
  values (
    p_key_id, p_task_id, p_task_id::text, 'generate_content', p_model, p_tokens, v_ok,
    p_error_code, case when p_error_code is not null then p_reason end, p_latency_ms,
    jsonb_build_object('outcome', p_outcome, 'blocked_until', p_blocked_until), v_user);
end;
$$;
