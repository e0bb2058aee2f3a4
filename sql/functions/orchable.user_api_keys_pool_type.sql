-- Pool keys (pool_type free_pool or premium_pool) serve other users' tasks,
-- so only the operator designates them: a signed-in user adds and keeps
-- personal keys only. (A user's key in the pool would receive every free
-- user's prompts under the user's own Google project.)
create or replace function orchable.user_api_keys_pool_type() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if current_user::text in ('authenticated', 'anon')
     and ((tg_op = 'INSERT' and new.pool_type is distinct from 'personal')
          or (tg_op = 'UPDATE' and new.pool_type is distinct from old.pool_type)) then
    raise exception using errcode = '42501',
      message = 'pool_type is set by the operator: keys you add are personal';
  end if;
  return new;
end
$$;
