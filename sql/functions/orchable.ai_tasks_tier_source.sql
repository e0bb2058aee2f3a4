-- tier_source = 'free_pool' runs a task on the operator's pool keys and is
-- charged to the free-tier quota, so nobody but the free-tier path sets it:
--   * submit_free_tier_tasks (orchable.free_submit on) inserts free_pool
--     roots it has charged;
--   * the engine (orchable.engine on) copies free_pool from the parent to
--     the successors it creates (spawn_successors, check_barrier), counted
--     once inserted (orchable.ai_tasks_count_free);
--   * any other insert that says free_pool gets NULL (the front end upserts
--     whole rows it read; this is engine-owned state, like the lease
--     columns);
--   * a client's update keeps the stored value.
-- The operator (postgres, service_role) may set it freely. The insert
-- trigger fires only for rows that name a tier, so the engine's personal
-- successors pay nothing for it.
create or replace function orchable.ai_tasks_tier_source() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if current_user::text not in ('authenticated', 'anon') then
    return new;
  end if;
  if tg_op = 'UPDATE' then
    new.tier_source := old.tier_source;
    return new;
  end if;
  if new.tier_source = 'free_pool'
     and coalesce(current_setting('orchable.free_submit', true), '') <> 'on'
     and not (new.parent_task_id is not null and coalesce(current_setting('orchable.engine', true), '') = 'on') then
    new.tier_source := null;
  end if;
  return new;
end
$$;
