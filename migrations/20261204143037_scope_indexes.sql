-- Barrier scope indexes carry the owner (#17, "Flat as the scope grows" in
-- docs/performance.md). Every barrier query filters on the scope, the
-- stages, the status and the owner (user_id, for tenancy). With the owner
-- outside these indexes, the generic plan a pooled connection caches after
-- five executions ANDed the scope index with the owner's index
-- (ai_tasks_owner_idempotency_key), and so read one index entry for every
-- task the owner has, on every feeder's completion: the cost of a completion
-- grew with the owner's table. With user_id as the last key column one index
-- answers every condition, and the probe reads only the scope's entries of
-- the stages asked for.
drop index if exists public.ai_tasks_batch_stage_idx;
create index if not exists ai_tasks_batch_stage_idx on public.ai_tasks (batch_id, stage_key, status, user_id);
drop index if exists public.ai_tasks_launch_stage_idx;
create index if not exists ai_tasks_launch_stage_idx on public.ai_tasks (launch_id, stage_key, status, user_id);
drop index if exists public.ai_tasks_root_idx;
create index if not exists ai_tasks_root_idx on public.ai_tasks (root_task_id, stage_key, status, user_id);
