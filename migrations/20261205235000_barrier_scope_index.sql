-- The barrier children of a scope, by owner and scope. Resetting a task
-- (retry_failed_task, retry_all_failed_in_batch) removes the merge and join
-- children whose barrier counted it: those of the scopes the task is in. Without this index that question
-- read every task of the owner that has an idempotency key, which is every
-- task the engine made: 100,000 rows per task reset for an owner with
-- 100,000 tasks, and a batch's retry resets each of its failed tasks
-- (TestRetryReadsOnlyTheTaskTree; docs/performance.md, sixteenth round).
-- Only barrier children are in it (one per merge or join), so the engine's
-- other writes add no entry to it.
create index if not exists ai_tasks_barrier_scope_idx
  on public.ai_tasks (user_id, ((extra -> '_barrier') ->> 'scope'))
  where idempotency_key like 'barrier/%';
