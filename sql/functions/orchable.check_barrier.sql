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
  dep_outputs jsonb;
  root_input jsonb;
  child_input jsonb;
  last_parent public.ai_tasks;
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
  select max(t.step_number) into max_step
  from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);
  max_step := coalesce(max_step, trig.step_number);

  select * into last_parent from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
    and t.stage_key = any(deps) and t.status in ('completed', 'approved')
  order by t.completed_at desc nulls last, t.id desc
  limit 1;

  select count(*) filter (where t.status in ('completed', 'approved', 'skipped')),
         count(*) filter (where t.status in ('failed', 'cancelled'))
    into merged_count, failed_count
  from public.ai_tasks t
  where t.user_id = owner
    and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);

  if last_parent.id is null then
    return 0;
  end if;
  if last_parent.user_id is distinct from owner then
    raise exception using errcode = '42501', message = 'barrier parent belongs to another owner; refusing';
  end if;

  if is_join then
    select input_data into root_input from public.ai_tasks
    where id = coalesce(last_parent.root_task_id, last_parent.id) and user_id = owner;
    select coalesce(jsonb_object_agg(stage_key, outs), '{}'::jsonb) into dep_outputs
    from (
      select t.stage_key,
             case when count(*) = 1 then (array_agg(coalesce(t.edited_output_data, t.output_data)))[1]
                  else jsonb_agg(coalesce(t.edited_output_data, t.output_data) order by t.sequence, t.created_at) end as outs
      from public.ai_tasks t
      where t.user_id = owner
        and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
      group by t.stage_key
    ) s;
    child_input := coalesce(root_input, '{}'::jsonb) || dep_outputs;
  else
    merge_path := coalesce(nullif(cfg ->> 'merge_path', ''), 'output_data');
    select coalesce(jsonb_agg(e order by root_seq, seq, created_at, id, ord), '[]'::jsonb) into merged
    from (
      select (select r.sequence from public.ai_tasks r where r.id = t.root_task_id and r.user_id = owner) as root_seq,
             t.sequence as seq, t.created_at, t.id, y.ord, y.e
      from public.ai_tasks t
      cross join lateral (select coalesce(t.edited_output_data, t.output_data) as o) oo
      cross join lateral (select orchable.json_path(oo.o, merge_path) as v) vv
      cross join lateral (
        select case
          when oo.o is null then '[]'::jsonb
          when jsonb_typeof(vv.v) = 'array' then vv.v
          when vv.v is null then jsonb_build_array(oo.o)
          else jsonb_build_array(vv.v)
        end as v
      ) x
      cross join lateral jsonb_array_elements(x.v) with ordinality as y(e, ord)
      where t.user_id = owner
        and (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
    ) m;
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
  on conflict (user_id, idempotency_key) do nothing;
  get diagnostics rc = row_count;
  return rc;
end
$$;
