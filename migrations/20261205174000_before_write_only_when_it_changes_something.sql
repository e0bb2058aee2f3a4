-- The row trigger ai_tasks_before_write runs only when it would change the
-- row (docs/performance.md, thirteenth round).
--
-- For the engine's writes (orchable.engine = on) the trigger's whole effect
-- is: a NULL in a defaulted column gets its default, 'pending' becomes
-- 'plan', a status other than 'processing' drops the lease, and updated_at
-- becomes now(). When the statement has already made every one of these
-- true, the trigger returns the row unchanged; the WHEN below skips it then.
-- A claim and a completion set updated_at (and a completion the lease)
-- themselves, so their two updates per task no longer run the function:
-- about 2.5 us a row of about 24 (40,000 rows, psql, four alternating runs).
--
-- Every other write runs it as before: a client's (orchable.engine is not
-- 'on', so its engine columns are still kept or cleared), and any engine
-- write that leaves something for the trigger to do. A NULL anywhere in the
-- condition runs the trigger (coalesce(..., false)).
drop trigger if exists trg_ai_tasks_before_write on public.ai_tasks;
create trigger trg_ai_tasks_before_write
  before insert or update on public.ai_tasks
  for each row
  when (not coalesce(
    current_setting('orchable.engine', true) = 'on'
    and new.updated_at = now()
    and new.status <> 'pending'
    and (new.status = 'processing' or (new.locked_until is null and new.locked_by is null))
    and new.hierarchy_path is not null and new.retry_count is not null and new.attempts is not null
    and new.step_number is not null and new.extra is not null and new.input_data is not null
    and new.task_type is not null and new.status is not null and new.run_after is not null
    and new.requires_approval is not null and new.created_at is not null and new.user_id is not null,
    false))
  execute function public.ai_tasks_before_write();
