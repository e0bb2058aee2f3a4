-- The caller's user id; raises when the caller is not a signed-in user
-- (service_role has no business running engine logic).
create or replace function orchable.require_user(fn text) returns uuid
  language plpgsql stable
  set search_path = ''
as $$
declare
  uid uuid := (select auth.uid());
begin
  if uid is null then
    raise exception using errcode = '42501',
      message = format('%s must be called as a signed-in user (the task owner), not as the service identity', fn);
  end if;
  return uid;
end
$$;
