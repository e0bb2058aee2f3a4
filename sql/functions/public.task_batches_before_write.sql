create or replace function public.task_batches_before_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new.orchestrator_config_id := coalesce(new.orchestrator_config_id, new.orchestrator_id);
  new.orchestrator_id := new.orchestrator_config_id;
  if tg_op = 'INSERT' then
    new.created_by := coalesce(new.created_by, auth.uid());
    new.global_context := coalesce(new.global_context, '{}'::jsonb);
    new.execution_delay_seconds := coalesce(new.execution_delay_seconds, 0);
    new.status := coalesce(new.status, 'pending');
    new.name := coalesce(new.name, 'Batch');
    -- Counters come from the tasks, never from the client (the original
    -- double-counted: the launcher wrote total_tasks = N and the trigger added N).
    new.total_tasks := 0;
    new.pending_tasks := 0;
    new.processing_tasks := 0;
    new.completed_tasks := 0;
    new.failed_tasks := 0;
    new.finished_tasks := 0;
  elsif coalesce(current_setting('orchable.folding', true), '') <> 'on' then
    -- Only fold_batch_counters() changes the counters.
    new.total_tasks := old.total_tasks;
    new.pending_tasks := old.pending_tasks;
    new.processing_tasks := old.processing_tasks;
    new.completed_tasks := old.completed_tasks;
    new.failed_tasks := old.failed_tasks;
    new.finished_tasks := old.finished_tasks;
  end if;
  if new.launch_id is not null
     and (tg_op = 'INSERT' or new.launch_id is distinct from old.launch_id)
     and orchable.launch_id_taken(new.launch_id, new.created_by) then
    raise exception using errcode = '42501',
      message = 'launch_id is already used by another account; omit it to get a fresh one';
  end if;
  new.updated_at := now();
  return new;
end
$$;
