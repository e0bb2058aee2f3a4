------------------------------------------------------------------------------
-- A barrier's check, with its child inserted at once (orchable.barrier_child
-- decides and makes it): -1 while the scope has an unfinished task, else the
-- children inserted (0 or 1). complete_one and the recheck paths call it;
-- complete_tasks calls barrier_child and inserts a call's children together.
------------------------------------------------------------------------------
create or replace function orchable.check_barrier(
  trig public.ai_tasks, succ public.prompt_templates, cfg jsonb, deps text[], is_join boolean
) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b record;
  rc int;
begin
  -- An assignment, not SELECT … INTO, which starts an executor: this
  -- wrapper then adds 2.5 us to a check instead of 5 (docs/performance.md,
  -- twenty-second round).
  b := orchable.barrier_child(trig, succ, cfg, deps, is_join, null);
  if b.rc <> 1 then
    return b.rc;
  end if;
  insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
    hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
    extra, idempotency_key, tier_source)
  select k.id, k.task_type, k.status, k.input_data, k.user_id, k.batch_id, k.launch_id, k.root_task_id, k.parent_task_id,
    k.hierarchy_path, k.step_number, k.stage_key, k.prompt_template_id, k.requires_approval, k.sequence, k.total_steps, k.test_mode,
    k.extra, k.idempotency_key, k.tier_source
  from (select (b.child).*) k
  on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing;
  get diagnostics rc = row_count;
  return rc;
end
$$;
