------------------------------------------------------------------------------
-- Row triggers: engine-owned columns.
------------------------------------------------------------------------------
create or replace function public.ai_tasks_before_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  engine boolean := coalesce(current_setting('orchable.engine', true), '') = 'on';
begin
  if tg_op = 'INSERT' then
    new.hierarchy_path := coalesce(new.hierarchy_path, '[]'::jsonb);
    new.retry_count := coalesce(new.retry_count, 0);
    new.attempts := coalesce(new.attempts, 0);
    new.step_number := coalesce(new.step_number, 1);
    new.extra := coalesce(new.extra, '{}'::jsonb);
    new.input_data := coalesce(new.input_data, '{}'::jsonb);
    new.task_type := coalesce(new.task_type, 'generic');
    new.status := coalesce(new.status, 'plan');
    new.run_after := coalesce(new.run_after, now());
    new.requires_approval := coalesce(new.requires_approval, false);
    new.created_at := coalesce(new.created_at, now());
    new.user_id := coalesce(new.user_id, auth.uid());
    if not engine then
      -- A client's row starts with no engine state, whatever it sent (the
      -- front end upserts whole rows it read with select *).
      new.locked_until := null;
      new.locked_by := null;
      new.attempts := 0;
      new.idempotency_key := null;
      new.approved_by := case when new.approved_by is null then null else auth.uid() end;
    end if;
  -- The engine's own updates (a claim and a completion per task) set every
  -- column they change: when none of these defaults would change anything,
  -- they are skipped, and only the status, the lease and updated_at below
  -- are left (about 3 us of a 26 us row update, docs/performance.md, tenth
  -- round; same result, TestBeforeWriteEngineUpdates).
  elsif not engine or new.hierarchy_path is null or new.retry_count is null or new.attempts is null
      or new.step_number is null or new.extra is null or new.run_after is null or new.requires_approval is null then
    new.hierarchy_path := coalesce(new.hierarchy_path, '[]'::jsonb);
    new.retry_count := coalesce(new.retry_count, old.retry_count);
    new.attempts := coalesce(new.attempts, old.attempts);
    new.step_number := coalesce(new.step_number, old.step_number);
    new.extra := coalesce(new.extra, '{}'::jsonb);
    new.run_after := coalesce(new.run_after, now());
    new.requires_approval := coalesce(new.requires_approval, false);
    if not engine then
      -- Engine state is the engine's: a client's update keeps it.
      new.locked_until := old.locked_until;
      new.locked_by := old.locked_by;
      new.attempts := old.attempts;
      new.idempotency_key := old.idempotency_key;
      if new.approved_by is distinct from old.approved_by then
        new.approved_by := case when new.approved_by is null then null else auth.uid() end;
      end if;
    end if;
  end if;
  -- The original's retry RPCs and browser worker wrote `pending` for "queued";
  -- the engine's single runnable state is `plan`.
  if new.status = 'pending' then
    new.status := 'plan';
  end if;
  -- Leaving `processing` always drops the lease.
  if new.status <> 'processing' then
    new.locked_until := null;
    new.locked_by := null;
  end if;
  new.updated_at := now();
  return new;
end
$$;
