-- tier_source = 'free_pool' runs a task on the operator's pool keys and is
-- charged to the free-tier quota, so nobody but the free-tier path sets it:
--   * submit_free_tier_tasks (orchable.free_submit on) inserts free_pool
--     roots it has charged;
--   * a task the engine creates from a free_pool parent is free_pool too
--     (counted once inserted: orchable.ai_tasks_count_free);
--   * any other client or engine insert that says free_pool gets NULL (the
--     front end upserts whole rows it read; this is engine-owned state, like
--     the lease columns);
--   * a client's update keeps the stored value.
-- The operator (postgres, service_role) may set it freely.
create or replace function orchable.ai_tasks_tier_source() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  parent_tier text;
begin
  if current_user::text not in ('authenticated', 'anon') then
    return new;
  end if;
  if tg_op = 'UPDATE' then
    new.tier_source := old.tier_source;
    return new;
  end if;
  if coalesce(current_setting('orchable.free_submit', true), '') = 'on' then
    return new;
  end if;
  if new.tier_source = 'free_pool' then
    new.tier_source := null;
  end if;
  if new.parent_task_id is not null and coalesce(current_setting('orchable.engine', true), '') = 'on' then
    select p.tier_source into parent_tier from public.ai_tasks p where p.id = new.parent_task_id;
    if parent_tier = 'free_pool' then
      new.tier_source := 'free_pool';
    end if;
  end if;
  return new;
end
$$;
