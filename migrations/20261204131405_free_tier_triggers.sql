-- The free tier's triggers (functions in the previous migration; see
-- 20261204120000_free_tier.sql and docs/threat-model.md "Free tier").

-- tier_source free_pool: set only by submit_free_tier_tasks, copied by the
-- engine to the successors of a free_pool task, kept on client updates. The
-- insert trigger fires only for rows that name a tier (launch_batch roots
-- and the engine's personal successors do not); names sort after
-- trg_ai_tasks_before_write.
drop trigger if exists trg_ai_tasks_tier_source_insert on public.ai_tasks;
create trigger trg_ai_tasks_tier_source_insert
  before insert on public.ai_tasks
  for each row
  when (new.tier_source is not null)
  execute function orchable.ai_tasks_tier_source();
drop trigger if exists trg_ai_tasks_tier_source_update on public.ai_tasks;
create trigger trg_ai_tasks_tier_source_update
  before update of tier_source on public.ai_tasks
  for each row
  when (new.tier_source is distinct from old.tier_source)
  execute function orchable.ai_tasks_tier_source();

-- Successors the engine created from a free-pool task count against the
-- owner's quota once inserted (not when ON CONFLICT skips them).
drop trigger if exists trg_ai_tasks_count_free on public.ai_tasks;
create trigger trg_ai_tasks_count_free
  after insert on public.ai_tasks
  for each row
  when (new.tier_source = 'free_pool' and new.parent_task_id is not null)
  execute function orchable.ai_tasks_count_free();

-- Pool keys are the operator's.
drop trigger if exists trg_user_api_keys_pool_type on public.user_api_keys;
create trigger trg_user_api_keys_pool_type
  before insert or update of pool_type on public.user_api_keys
  for each row
  execute function orchable.user_api_keys_pool_type();

-- Role and tier are the operator's.
drop trigger if exists trg_user_profiles_guard on public.user_profiles;
create trigger trg_user_profiles_guard
  before insert or update on public.user_profiles
  for each row
  execute function orchable.user_profiles_guard();
