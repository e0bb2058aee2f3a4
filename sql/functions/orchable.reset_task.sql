------------------------------------------------------------------------------
-- Retries. retry_failed_task keeps the front end's name and argument; it
-- resets the task to plan and removes what was derived from it: its
-- descendants and any merge/join child whose barrier counted it (with their
-- descendants), so the barrier fires again when it finishes.
------------------------------------------------------------------------------
create or replace function orchable.reset_task(t public.ai_tasks) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  removed int := 0;
  n int;
  downstream text[];
begin
  -- Stage keys at or downstream of the task's stage in the pipeline graph:
  -- a barrier child whose dependency stages include one of them may have
  -- counted the task or its descendants, so it is rebuilt when they finish.
  with recursive walk(id, depth) as (
    select t.prompt_template_id, 0
    union
    select n.sid, w.depth + 1
    from walk w
    join public.prompt_templates p on p.id = w.id and orchable.template_usable(p, t.user_id)
    cross join lateral jsonb_array_elements_text(
      case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids else '[]'::jsonb end) as n(sid)
    where w.depth < 50
  )
  select coalesce(array_agg(distinct p.stage_key) filter (where p.stage_key is not null), '{}')
    into downstream
  from walk w join public.prompt_templates p on p.id = w.id and orchable.template_usable(p, t.user_id);
  downstream := downstream || t.stage_key::text;

  -- What goes: the tasks with t in their hierarchy_path (its descendants),
  -- the barrier children of t's scopes whose dependency stages are at or
  -- after t's, and their descendants. Each is found through an index
  -- (orchable.descendant_ids walks parent_task_id; the barrier scope index),
  -- never by reading all the owner's tasks: that read 100,000 rows per task
  -- reset for an owner with 100,000 tasks, and retrying a batch resets each
  -- of its failed tasks.
  with barrier_children as (
    select c.id from public.ai_tasks c
    where c.idempotency_key like 'barrier/%'
      and c.user_id = t.user_id
      -- The scopes t is in (orchable.barrier_scope makes no other kind).
      and (c.extra -> '_barrier' ->> 'scope') = any (array[
            'batch:' || t.batch_id, 'launch:' || t.launch_id, 'root:' || coalesce(t.root_task_id, t.id)])
      and exists (select 1 from jsonb_array_elements_text(c.extra -> '_barrier' -> 'stages') s(k) where s.k = any(downstream))
      and orchable.in_scope(t, c.extra -> '_barrier' ->> 'scope')
  ), doomed as (
    select d.id from orchable.descendant_ids(t.user_id, t.id) d(id)
    union
    select bc.id from barrier_children bc
    union
    select d.id from barrier_children bc, orchable.descendant_ids(t.user_id, bc.id) d(id)
  )
  -- By primary key: as a join, the planner read all the owner's tasks to
  -- meet the few doomed ones.
  delete from public.ai_tasks where id = any (array(select id from doomed)) and id <> t.id;
  get diagnostics n = row_count;
  removed := removed + n;
  update public.ai_tasks set status = 'plan', run_after = now(), error_message = null, output_data = null,
    started_at = null, completed_at = null, attempts = 0, approved_at = null, approved_by = null,
    edited_output_data = null
  where id = t.id and user_id = t.user_id;
  return removed;
end
$$;
