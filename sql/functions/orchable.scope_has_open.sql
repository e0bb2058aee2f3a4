-- Whether the owner has an unfinished task of one of the stages in a barrier
-- scope (exactly one of p_batch, p_launch, p_root is set). check_barrier
-- asks this on every feeder's completion. Each branch is guarded by its
-- parameter, so the cached (generic) plan skips the unset scopes and probes
-- one index: written as one OR over batch_id, launch_id and root_task_id,
-- the generic plan scanned the whole table (1.6 ms a check at 13,000 tasks,
-- growing with the table; docs/performance.md, "Design and profile").
create or replace function orchable.scope_has_open(p_owner uuid, p_batch uuid, p_launch uuid, p_root uuid, p_stages text[])
  returns boolean
  language plpgsql stable
  set search_path = ''
as $$
begin
  return exists (select 1 from public.ai_tasks t
                 where p_batch is not null and t.batch_id = p_batch and t.user_id = p_owner and t.stage_key = any(p_stages)
                   and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'))
      or exists (select 1 from public.ai_tasks t
                 where p_launch is not null and t.launch_id = p_launch and t.user_id = p_owner and t.stage_key = any(p_stages)
                   and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'))
      or exists (select 1 from public.ai_tasks t
                 where p_root is not null and t.root_task_id = p_root and t.user_id = p_owner and t.stage_key = any(p_stages)
                   and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'))
      or exists (select 1 from public.ai_tasks t
                 where p_root is not null and t.id = p_root and t.user_id = p_owner and t.stage_key = any(p_stages)
                   and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'));
end
$$;
