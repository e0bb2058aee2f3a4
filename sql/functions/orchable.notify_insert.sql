create or replace function orchable.notify_insert() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform orchable.notify_users(array(select distinct n.user_id::text from new_rows n where n.status = 'plan'));
  return null;
end
$$;
