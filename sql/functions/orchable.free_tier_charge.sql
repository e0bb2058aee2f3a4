-- Charges p_tasks free-pool tasks to the caller's quota for the month of
-- p_at, all or nothing. The caller's user_usage row of that month is locked
-- (created first when missing) until the transaction ends, so concurrent
-- submissions of one user are serialised and cannot both pass the quota;
-- other users are not blocked. Returns the contract's shape:
-- {success, used, limit, remaining} or, refused (nothing charged),
-- {success: false, error: "QUOTA_EXCEEDED", used, limit, remaining}.
-- SECURITY DEFINER: users cannot write user_usage; the charge is always the
-- caller's own (auth.uid()), never a user named by an argument.
create or replace function orchable.free_tier_charge(p_tasks integer, p_at timestamptz) returns jsonb
  language plpgsql volatile
  security definer
  set search_path = ''
as $$
declare
  uid uuid := orchable.require_user('submit_free_tier_tasks');
  m text := orchable.free_tier_month(p_at);
  lim integer := orchable.free_tier_limit();
  used integer;
begin
  if p_tasks is null or p_tasks < 1 then
    raise exception using errcode = '22023', message = 'the number of tasks to charge must be positive';
  end if;
  insert into public.user_usage (user_id, month, task_count) values (uid, m, 0)
  on conflict (user_id, month) do nothing;
  select coalesce(u.task_count, 0) into used from public.user_usage u
  where u.user_id = uid and u.month = m for update;
  if used + p_tasks > lim then
    return jsonb_build_object('success', false, 'error', 'QUOTA_EXCEEDED', 'used', used, 'limit', lim,
                              'remaining', greatest(lim - used, 0), 'requested', p_tasks);
  end if;
  update public.user_usage u set task_count = used + p_tasks, updated_at = now()
  where u.user_id = uid and u.month = m;
  return jsonb_build_object('success', true, 'used', used + p_tasks, 'limit', lim,
                            'remaining', greatest(lim - used - p_tasks, 0));
end
$$;
