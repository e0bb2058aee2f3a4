-- A row trigger (after update of status, when a task becomes runnable): one
-- notification naming the owner. PostgreSQL collapses identical payloads
-- within a transaction, so a statement that requeues many tasks of one
-- owner still sends one. It was a statement trigger with transition
-- tables, which copied every updated row (old and new) into two
-- tuplestores on every claim and completion only to find, almost always,
-- no task that became runnable (docs/performance.md, "Design and profile").
create or replace function orchable.notify_update() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform pg_notify('orchable_wakeup', new.user_id::text);
  return null;
end
$$;
