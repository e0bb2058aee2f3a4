------------------------------------------------------------------------------
-- Wake-up on LISTEN/NOTIFY: one notification per statement that makes a task
-- runnable (collapsed by PostgreSQL within a transaction).
------------------------------------------------------------------------------
-- The payload lists the owners of the newly runnable tasks (comma-separated
-- UUIDs), so a listener can hand them to its dispatcher without a sweep; an
-- empty payload (too many owners for NOTIFY's 8000 bytes) means "sweep".
create or replace function orchable.notify_users(users text[]) returns void
  language plpgsql
  set search_path = ''
as $$
begin
  if cardinality(users) = 0 then
    return;
  end if;
  perform pg_notify('orchable_wakeup', case when cardinality(users) <= 200 then array_to_string(users, ',') else '' end);
end
$$;
