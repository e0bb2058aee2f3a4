------------------------------------------------------------------------------
-- Barriers (N:1 merge and join), scoped to the triggering task's owner.
-- See 20261126000300_sql_api.sql for the locking argument, unchanged.
-- N:1 merge input (as the original made it): {<merge_path>: [...]} where
-- each completed parent contributes the elements of the array at merge_path
-- (default output_data) of its output, a scalar there is appended, and a
-- parent without the key contributes its whole output.
--
-- barrier_child decides a barrier's check and makes its child without
-- inserting it: rc -1 while the scope has an unfinished task, 0 when the
-- child exists already or no parent completed, 1 with the child to insert
-- (on conflict (user_id, idempotency_key) do nothing). check_barrier
-- inserts it at once; complete_tasks checks every scope of a call first and
-- inserts their children in one statement (a one-row INSERT into ai_tasks
-- cost about 0.3 ms of a closing's 0.9: the statement's set-up for twelve
-- indexes, five foreign keys and two statement triggers; docs/
-- performance.md, twenty-second round). The advisory lock it takes is held
-- to the end of the transaction, so the child is inserted under it.
--
-- upstream: the stages probed after deps, as orchable.barrier_upstream
-- gives them for succ and the owner; null: looked up here, once deps are
-- found finished, and returned, so a caller that checks several scopes of
-- one barrier looks them up at most once (and not at all while every
-- scope it checks is still open).
------------------------------------------------------------------------------
create or replace function orchable.barrier_child(
  trig public.ai_tasks, succ public.prompt_templates, cfg jsonb, deps text[], is_join boolean,
  inout upstream text[], out rc integer, out child public.ai_tasks
) returns record
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := trig.user_id;
  scope text := orchable.barrier_scope(trig, cfg, is_join);
  kind text := split_part(scope, ':', 1);
  sb uuid := case when kind = 'batch' then split_part(scope, ':', 2)::uuid end;
  sl uuid := case when kind = 'launch' then split_part(scope, ':', 2)::uuid end;
  sr uuid := case when kind = 'root' then split_part(scope, ':', 2)::uuid end;
  key text := 'barrier/' || succ.id || '/' || scope;
  max_step int;
  merged jsonb;
  merged_count int;
  failed_count int;
  merge_path text;
  root_input jsonb;
  child_input jsonb;
  last_parent public.ai_tasks;
  last_id uuid;
begin
  rc := 0;
  perform pg_advisory_xact_lock(hashtext('orchable.barrier:' || owner::text || ':' || key));
  if exists (select 1 from public.ai_tasks c where c.user_id = owner and c.idempotency_key = key) then
    return;
  end if;

  if orchable.scope_has_open(owner, sb, sl, sr, deps) then
    rc := -1;
    return;
  end if;
  -- Looked up only when the feeders are done: most checks stop above.
  upstream := coalesce(upstream, orchable.barrier_upstream(succ, owner, deps));
  if orchable.scope_has_open(owner, sb, sl, sr, upstream) then
    rc := -1;
    return;
  end if;
  -- The barrier closes: read the scope once (orchable.scope_tasks, one
  -- index per scope kind) and build everything from that one read. This is
  -- the only completion of a scope that reads all of it, as its input is
  -- made of every parent's output; every other feeder stops at the
  -- scope_has_open probes above.
  merge_path := coalesce(nullif(cfg ->> 'merge_path', ''), 'output_data');
  with s as materialized (
    select t.id, t.status, t.step_number, t.completed_at, t.sequence, t.created_at, t.root_task_id, t.stage_key,
           coalesce(t.edited_output_data, t.output_data) as o
    from orchable.scope_tasks(owner, sb, sl, sr, deps) t
  )
  select max(s.step_number),
         count(*) filter (where s.status in ('completed', 'approved', 'skipped')),
         count(*) filter (where s.status in ('failed', 'cancelled')),
         (select l.id from s l where l.status in ('completed', 'approved')
          order by l.completed_at desc nulls last, l.id desc limit 1),
         case when is_join then (
           select coalesce(jsonb_object_agg(g.stage_key, g.outs), '{}'::jsonb)
           from (
             select j.stage_key,
                    case when count(*) = 1 then (array_agg(j.o))[1]
                         else jsonb_agg(j.o order by j.sequence, j.created_at) end as outs
             from s j where j.status in ('completed', 'approved')
             group by j.stage_key
           ) g)
         else (
           select coalesce(jsonb_agg(y.e order by m.root_seq, m.sequence, m.created_at, m.id, y.ord), '[]'::jsonb)
           from (
             select p.*,
                    -- A root is its own root (no lookup); a feeder below a
                    -- root takes its root's sequence.
                    case when p.root_task_id = p.id then p.sequence
                         when p.root_task_id is not null then
                           (select r.sequence from public.ai_tasks r where r.id = p.root_task_id and r.user_id = owner)
                    end as root_seq
             from s p where p.status in ('completed', 'approved')
           ) m
           -- OFFSET 0 keeps the path read once per feeder: flattened into
           -- the CASE below, it ran once per mention of vv.v, 2-4 times
           -- (docs/performance.md, twenty-sixth round).
           cross join lateral (select orchable.json_path(m.o, merge_path) as v offset 0) vv
           cross join lateral (
             select case
               when m.o is null then '[]'::jsonb
               when jsonb_typeof(vv.v) = 'array' then vv.v
               when vv.v is null then jsonb_build_array(m.o)
               else jsonb_build_array(vv.v)
             end as v
           ) x
           cross join lateral jsonb_array_elements(x.v) with ordinality as y(e, ord))
         end
    into max_step, merged_count, failed_count, last_id, merged
  from s;
  max_step := coalesce(max_step, trig.step_number);

  if last_id is null then
    return;
  end if;
  select * into last_parent from public.ai_tasks t where t.id = last_id and t.user_id = owner;
  if last_parent.user_id is distinct from owner then
    raise exception using errcode = '42501', message = 'barrier parent belongs to another owner; refusing';
  end if;

  if is_join then
    select input_data into root_input from public.ai_tasks
    where id = coalesce(last_parent.root_task_id, last_parent.id) and user_id = owner;
    child_input := coalesce(root_input, '{}'::jsonb) || merged;
  else
    child_input := orchable.return_along_with(last_parent.input_data, cfg,
      jsonb_build_object(merge_path, merged, '_merged_from_count', merged_count, '_failed_count', failed_count));
  end if;

  -- The child, for the caller to insert (on conflict (user_id,
  -- idempotency_key) do nothing, as check_barrier does).
  child.id := orchable.child_id(last_parent.id);
  child.task_type := coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic');
  child.status := 'plan';
  child.input_data := child_input;
  child.user_id := owner;
  child.batch_id := last_parent.batch_id;
  child.launch_id := last_parent.launch_id;
  child.root_task_id := coalesce(last_parent.root_task_id, last_parent.id);
  child.parent_task_id := last_parent.id;
  child.hierarchy_path := coalesce(last_parent.hierarchy_path, '[]'::jsonb) || to_jsonb(last_parent.id::text);
  child.step_number := max_step + 1;
  child.stage_key := succ.stage_key;
  child.prompt_template_id := succ.id;
  child.requires_approval := coalesce(succ.requires_approval, false);
  child.sequence := 1;
  child.total_steps := 1;
  child.test_mode := last_parent.test_mode;
  child.extra := jsonb_build_object('parent_stage_key', last_parent.stage_key, 'parent_task_id', last_parent.id,
      'merge_path', case when not is_join then merge_path end,
      '_merged_from_count', merged_count, '_failed_count', failed_count,
      '_barrier', jsonb_build_object('stages', to_jsonb(deps), 'scope', scope, 'kind', case when is_join then 'join' else 'merge' end));
  child.idempotency_key := key;
  child.tier_source := case when last_parent.tier_source = 'free_pool' then 'free_pool' end;
  rc := 1;
end
$$;
