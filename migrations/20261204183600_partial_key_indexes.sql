-- Index only the rows that have the key (#17, "Index audit" in
-- docs/performance.md). A B-tree stores NULL keys too, so a root task (no
-- parent, no idempotency key) and a task inserted alone (no batch, launch
-- or root) wrote an entry for each missing key into five indexes, on its
-- insert and again on its claim and its completion: neither update can be
-- HOT, because both change status. No query looks rows up by a NULL key:
-- every lookup is an equality (a strict operator, which implies IS NOT
-- NULL, so the planner uses the partial index with or without a known
-- value), and the foreign keys' ON DELETE SET NULL searches by value.
--
-- Each index is built under a temporary name before the old one goes, so
-- no moment is without it.
create index ai_tasks_parent_idx_new on public.ai_tasks (parent_task_id)
  where parent_task_id is not null;
drop index public.ai_tasks_parent_idx;
alter index public.ai_tasks_parent_idx_new rename to ai_tasks_parent_idx;

create index ai_tasks_batch_stage_idx_new on public.ai_tasks (batch_id, stage_key, status, user_id)
  where batch_id is not null;
drop index public.ai_tasks_batch_stage_idx;
alter index public.ai_tasks_batch_stage_idx_new rename to ai_tasks_batch_stage_idx;

create index ai_tasks_launch_stage_idx_new on public.ai_tasks (launch_id, stage_key, status, user_id)
  where launch_id is not null;
drop index public.ai_tasks_launch_stage_idx;
alter index public.ai_tasks_launch_stage_idx_new rename to ai_tasks_launch_stage_idx;

create index ai_tasks_root_idx_new on public.ai_tasks (root_task_id, stage_key, status, user_id)
  where root_task_id is not null;
drop index public.ai_tasks_root_idx;
alter index public.ai_tasks_root_idx_new rename to ai_tasks_root_idx;

-- Idempotency keys: only spawned children carry one. The unique constraint
-- becomes a partial unique index in three migrations, so that every spawn
-- finds an arbiter at every step: this one adds the partial index beside
-- the constraint; the next makes every ON CONFLICT name its predicate
-- (which both satisfy); the one after drops the constraint and gives the
-- index its name.
create unique index ai_tasks_owner_idempotency_key_partial on public.ai_tasks (user_id, idempotency_key)
  where idempotency_key is not null;
