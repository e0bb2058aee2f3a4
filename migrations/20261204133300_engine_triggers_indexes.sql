-- Engine writes at a lower cost (#17; docs/performance.md, "Design and
-- profile"). Functions changed with it: 20261204133206_engine_cost.sql.

-- 1. The wake-up on requeue is a row trigger that fires only when a task
--    becomes runnable. As a statement trigger with transition tables it made
--    every UPDATE of ai_tasks (each claim and each completion) copy the old
--    and the new rows into two tuplestores and join them.
drop trigger if exists trg_ai_tasks_notify_update on public.ai_tasks;
create trigger trg_ai_tasks_notify_update
  after update of status on public.ai_tasks
  for each row
  when (new.status = 'plan' and old.status is distinct from 'plan')
  execute function orchable.notify_update();

-- 2. Indexes no query needs (each one is written by every non-HOT update
--    whose new row matches its predicate; a claim wrote 12 index entries,
--    now 9; an insert 13, now 9; a completion 8, as before):
--    * ai_tasks_runnable_idx (run_after, id) WHERE plan: the claim is scoped
--      to its owner and walks ai_tasks_user_runnable_idx (user_id, run_after,
--      id) WHERE plan, which due_tasks uses too;
--    * ai_tasks_{batch,launch,root}_open_idx (scope, step_number) WHERE open:
--      check_barrier's open-task test (orchable.scope_has_open) probes
--      ai_tasks_{batch,launch}_stage_idx and ai_tasks_root_idx, which lead
--      with the scope and the stage and end with the status.
drop index if exists public.ai_tasks_runnable_idx;
drop index if exists public.ai_tasks_batch_open_idx;
drop index if exists public.ai_tasks_launch_open_idx;
drop index if exists public.ai_tasks_root_open_idx;

-- 3. Realtime. Supabase Realtime (postgres_changes, via wal2json) builds
--    payload.old from the replica identity, and the front end reads only
--    payload.old.status. REPLICA IDENTITY FULL wrote the whole old row
--    (TOASTed jsonb flattened) into WAL on every update. A unique index on
--    (id, status) as the identity logs the old id and status whenever the
--    status changes, and wal2json takes them from the new row when it does
--    not, so payload.old.status is right on every UPDATE. Only where the
--    table was FULL (it is in the supabase_realtime publication) and status
--    is NOT NULL (an upgraded original database may allow NULL; it stays
--    FULL).
do $$
begin
  if (select relreplident from pg_class where oid = 'public.ai_tasks'::regclass) = 'f'
     and (select attnotnull from pg_attribute where attrelid = 'public.ai_tasks'::regclass and attname = 'status') then
    create unique index if not exists ai_tasks_id_status_key on public.ai_tasks (id, status);
    alter table public.ai_tasks replica identity using index ai_tasks_id_status_key;
  end if;
end
$$;
