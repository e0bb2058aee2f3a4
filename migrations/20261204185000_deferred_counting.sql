-- The batch counters' row trigger skips the status changes of a set-based
-- engine statement that counts them itself (#17): claim_tasks and
-- complete_tasks move many tasks in one UPDATE and write one delta row per
-- batch through orchable.count_moves (next migration) instead of one per
-- task. They mark such a statement with the transaction-local setting
-- orchable.counting = 'deferred'; every other write (the front end, the
-- fail and approval paths, complete_one) is counted row by row as before. A
-- change of batch is always counted here.
--
-- This migration comes first: until the functions set the mark, the WHEN
-- below is what it was, so no change is counted twice or missed in between.
drop trigger if exists trg_ai_tasks_count_update on public.ai_tasks;
create trigger trg_ai_tasks_count_update
  after update of status, batch_id on public.ai_tasks
  for each row
  when (old.batch_id is distinct from new.batch_id
        or (old.status is distinct from new.status
            and current_setting('orchable.counting', true) is distinct from 'deferred'))
  execute function public.ai_tasks_count_update();
