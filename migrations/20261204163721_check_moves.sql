-- References checked when they change, not on every write (attack 4b).
--
-- The UPDATE policies of ai_tasks and task_batches checked, on every write,
-- that a task's batch is the writer's own, that its template is readable and
-- that a batch's orchestrator config is readable. A row whose template or
-- config another user had made private after the row named it could then not
-- be written at all: claim_tasks, fail_task, cancel and retry all failed, and
-- one such task made every claim of its owner fail. Its author could stall
-- another tenant's queue by unpublishing a template.
--
-- The policies keep the ownership check (user_id / created_by); the reference
-- checks move to AFTER UPDATE row triggers that fire only when the reference
-- changes (orchable.check_moves, same errors as before: 42501). A row whose
-- template became unreadable can now be claimed, and the runner fails it
-- ("task has no readable prompt template") while the owner's other tasks run.
-- Engine updates, which never change these columns, also no longer pay two
-- EXISTS probes per row. Inserts keep the checks in their policies.

alter policy ai_tasks_update_own on public.ai_tasks
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

alter policy task_batches_update_own on public.task_batches
  using (created_by = (select auth.uid()))
  with check (created_by = (select auth.uid()));

drop trigger if exists "Orchable_ai_tasks_check_moves" on public.ai_tasks;
create trigger "Orchable_ai_tasks_check_moves"
  after update on public.ai_tasks
  for each row
  when (new.batch_id is distinct from old.batch_id or new.prompt_template_id is distinct from old.prompt_template_id)
  execute function orchable.check_moves();

drop trigger if exists "Orchable_task_batches_check_moves" on public.task_batches;
create trigger "Orchable_task_batches_check_moves"
  after update on public.task_batches
  for each row
  when (new.orchestrator_config_id is distinct from old.orchestrator_config_id)
  execute function orchable.check_moves();
