create or replace function orchable.notify_update() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform orchable.notify_users(array(
    select distinct n.user_id::text from new_rows n join old_rows o on o.id = n.id
    where n.status = 'plan' and o.status <> 'plan'));
  return null;
end
$$;
