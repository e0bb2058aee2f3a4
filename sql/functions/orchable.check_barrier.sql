------------------------------------------------------------------------------
-- Barriers (N:1 merge and join), scoped to the triggering task's owner.
-- See 20261126000300_sql_api.sql for the locking argument, unchanged.
-- N:1 merge input (as the original made it): {<merge_path>: [...]} where
-- each completed parent contributes the elements of the array at merge_path
-- (default output_data) of its output, a scalar there is appended, and a
-- parent without the key contributes its whole output.
------------------------------------------------------------------------------
create or replace function orchable.check_barrier(
  trig public.ai_tasks, succ public.prompt_templates, cfg jsonb, deps text[], is_join boolean
) returns integer
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
  rc int;
begin
  perform pg_advisory_xact_lock(hashtext('orchable.barrier:' || owner::text || ':' || key));
  if exists (select 1 from public.ai_tasks c where c.user_id = owner and c.idempotency_key = key) then
    return 0;
  end if;

  if orchable.scope_has_open(owner, sb, sl, sr, deps)
     or orchable.scope_has_open(owner, sb, sl, sr,
          array_remove(orchable.upstream_stages(succ.id, owner, succ.user_id), succ.stage_key::text)) then
    return -1;
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
           cross join lateral (select orchable.json_path(m.o, merge_path) as v) vv
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
    return 0;
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

  insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
    hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
    extra, idempotency_key, tier_source)
  values (coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan', child_input, owner,
    last_parent.batch_id, last_parent.launch_id, coalesce(last_parent.root_task_id, last_parent.id), last_parent.id,
    coalesce(last_parent.hierarchy_path, '[]'::jsonb) || to_jsonb(last_parent.id::text),
    max_step + 1, succ.stage_key, succ.id, coalesce(succ.requires_approval, false), 1, 1, last_parent.test_mode,
    jsonb_build_object('parent_stage_key', last_parent.stage_key, 'parent_task_id', last_parent.id,
      'merge_path', case when not is_join then merge_path end,
      '_merged_from_count', merged_count, '_failed_count', failed_count,
      '_barrier', jsonb_build_object('stages', to_jsonb(deps), 'scope', scope, 'kind', case when is_join then 'join' else 'merge' end)),
    key, case when last_parent.tier_source = 'free_pool' then 'free_pool' end)
  on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing;
  get diagnostics rc = row_count;
  return rc;
end
$$;
