-- A user's role and tier are the operator's (or the subscription's) to set:
-- a signed-in user may edit the rest of their profile, never these.
create or replace function orchable.user_profiles_guard() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if current_user::text in ('authenticated', 'anon') then
    if tg_op = 'INSERT' then
      raise exception using errcode = '42501', message = 'user_profiles rows are created by the operator';
    end if;
    if new.role is distinct from old.role or new.tier is distinct from old.tier or new.id is distinct from old.id then
      raise exception using errcode = '42501', message = 'role and tier are set by the operator';
    end if;
  end if;
  return new;
end
$$;
