-- References a client writes must name the writer's own tasks. Checked after
-- the row (so rows of the same bulk upsert and a root_task_id equal to the
-- row's own id are seen) and before the foreign-key triggers (trigger names
-- sort "Orchable…" before "RI_ConstraintTrigger…"), with one error for "not
-- yours" and "does not exist": no existence oracle.
create or replace function orchable.ai_tasks_check_refs() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if coalesce(current_setting('orchable.engine', true), '') = 'on' then
    return null;
  end if;
  if new.parent_task_id is not null
     and (tg_op = 'INSERT' or new.parent_task_id is distinct from old.parent_task_id)
     and not exists (select 1 from public.ai_tasks p where p.id = new.parent_task_id and p.user_id = new.user_id) then
    raise exception using errcode = '42501',
      message = 'parent_task_id must reference one of your own tasks';
  end if;
  if new.root_task_id is not null
     and (tg_op = 'INSERT' or new.root_task_id is distinct from old.root_task_id)
     and not exists (select 1 from public.ai_tasks p where p.id = new.root_task_id and p.user_id = new.user_id) then
    raise exception using errcode = '42501',
      message = 'root_task_id must reference one of your own tasks';
  end if;
  return null;
end
$$;
