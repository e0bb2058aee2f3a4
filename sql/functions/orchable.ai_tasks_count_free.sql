-- Counts a free-pool task the engine created from a free-pool parent
-- against its owner's quota (orchable.free_tier_count). An AFTER INSERT
-- row trigger, so a successor skipped by ON CONFLICT (the engine re-running
-- a spawn) is not counted; submitted roots (no parent) were charged by
-- submit_free_tier_tasks.
create or replace function orchable.ai_tasks_count_free() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if new.user_id = (select auth.uid()) then
    perform orchable.free_tier_count(1);
  end if;
  return null;
end
$$;
