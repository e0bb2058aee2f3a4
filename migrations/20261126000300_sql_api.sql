-- The SQL API: every state change of a task or batch is one of these
-- functions, called as an RPC (PostgREST POST /rest/v1/rpc/<fn> or the direct
-- transport). They are SECURITY INVOKER: they run as the calling user, so RLS
-- decides what they can see and change, and each call is one transaction.
-- Documented in docs/sql-api.md.
--
-- Errors (SQLSTATE → HTTP status through PostgREST's PTxyz convention):
--   PT404  the task/batch/template does not exist or is not visible to the caller
--   PT409  the row is not in a state that allows the call (e.g. completing a
--          task that is not processing under this worker)
--   PT422  the request is well formed but cannot be applied (e.g. an approved
--          output whose split_path is not an array)
--   22023  invalid argument
--
-- Internal helpers live in the schema `orchable`, which PostgREST does not
-- expose; the API functions live in `public`.

create schema if not exists orchable;
grant usage on schema orchable to authenticated, service_role;

------------------------------------------------------------------------------
-- Stage configuration helpers
------------------------------------------------------------------------------

-- Normalises both spellings of a cardinality to 1:1, 1:N or N:1.
create or replace function orchable.cardinality(cfg jsonb) returns text
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select case lower(coalesce(cfg ->> 'cardinality', '1:1'))
    when '1:n' then '1:N' when 'one_to_many' then '1:N'
    when 'n:1' then 'N:1' when 'many_to_one' then 'N:1'
    else '1:1' end
$$;

-- Resolves a dot path inside a stage result. A leading `result.` is ignored;
-- `result`, `.` and '' mean the whole value.
create or replace function orchable.json_path(doc jsonb, path text) returns jsonb
  language plpgsql immutable
  set search_path = ''
as $$
declare
  p text := btrim(coalesce(path, ''));
  part text;
  cur jsonb := doc;
begin
  if p in ('', '.', 'result') then
    return doc;
  end if;
  if p like 'result.%' and not (doc ? 'result') then
    p := substr(p, 8);
  end if;
  foreach part in array string_to_array(p, '.') loop
    if part = '' then
      continue;
    end if;
    if jsonb_typeof(cur) = 'object' then
      cur := cur -> part;
    elsif jsonb_typeof(cur) = 'array' and part ~ '^[0-9]+$' then
      cur := cur -> part::int;
    else
      return null;
    end if;
    if cur is null then
      return null;
    end if;
  end loop;
  return cur;
end
$$;

-- The successor template ids of a task: the task's own next_task_config when
-- set, else its template's next_stage_template_ids (and the legacy single
-- next_stage_template_id), else the launcher's extra.next_stage_configs.
create or replace function orchable.successor_ids(t public.ai_tasks, tpl public.prompt_templates) returns text[]
  language plpgsql stable
  set search_path = ''
as $$
declare
  ids text[];
  ntc jsonb := t.next_task_config;
begin
  if ntc is not null and jsonb_typeof(ntc) = 'object' and ntc ? 'next_stage_template_ids' then
    ntc := ntc -> 'next_stage_template_ids';
  end if;
  if ntc is not null and jsonb_typeof(ntc) = 'array' and jsonb_array_length(ntc) > 0 then
    select array_agg(coalesce(e ->> 'template_id', e #>> '{}') order by o) into ids
    from jsonb_array_elements(ntc) with ordinality as x(e, o);
    return ids;
  end if;
  if tpl.id is not null then
    if jsonb_typeof(tpl.next_stage_template_ids) = 'array' and jsonb_array_length(tpl.next_stage_template_ids) > 0 then
      select array_agg(e #>> '{}' order by o) into ids
      from jsonb_array_elements(tpl.next_stage_template_ids) with ordinality as x(e, o);
      return ids;
    end if;
    if tpl.next_stage_template_id is not null then
      return array[tpl.next_stage_template_id];
    end if;
  end if;
  if jsonb_typeof(t.extra -> 'next_stage_configs') = 'array' then
    select array_agg(e ->> 'template_id' order by o) into ids
    from jsonb_array_elements(t.extra -> 'next_stage_configs') with ordinality as x(e, o)
    where e ->> 'template_id' is not null;
    return ids;
  end if;
  return '{}';
end
$$;

-- The effective stage config of a successor: its template's stage_config,
-- completed from the launcher snapshot in the parent's extra when the
-- template carries none (fallback only).
create or replace function orchable.successor_config(parent public.ai_tasks, succ public.prompt_templates) returns jsonb
  language sql stable
  set search_path = ''
as $$
  select coalesce((
      select e from jsonb_array_elements(case when jsonb_typeof(parent.extra -> 'next_stage_configs') = 'array'
                                              then parent.extra -> 'next_stage_configs' else '[]'::jsonb end) e
      where e ->> 'template_id' = succ.id limit 1), '{}'::jsonb)
    || coalesce(succ.stage_config, '{}'::jsonb)
$$;

-- Scope of a barrier (N:1 merge or join) for a task: batch (default),
-- launch (batch_grouping global) or the task's own root lineage (isolated,
-- and joins by default: a join combines the outputs of one input row).
create or replace function orchable.barrier_scope(t public.ai_tasks, cfg jsonb, is_join boolean) returns text
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select case
    -- A join combines the outputs of one input row, whatever batch_grouping
    -- says (the Designer writes "global" on every stage; pooling a launch's
    -- rows in a join was a defect of the original).
    when is_join then 'root:' || coalesce(t.root_task_id, t.id)
    when coalesce(cfg ->> 'batch_grouping', '') = 'global' and t.launch_id is not null then 'launch:' || t.launch_id
    when coalesce(cfg ->> 'batch_grouping', '') = 'isolated' then 'root:' || coalesce(t.root_task_id, t.id)
    when t.batch_id is not null then 'batch:' || t.batch_id
    else 'root:' || coalesce(t.root_task_id, t.id) end
$$;

create or replace function orchable.in_scope(t public.ai_tasks, scope text) returns boolean
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select case split_part(scope, ':', 1)
    when 'batch' then t.batch_id::text = split_part(scope, ':', 2)
    when 'launch' then t.launch_id::text = split_part(scope, ':', 2)
    else coalesce(t.root_task_id, t.id)::text = split_part(scope, ':', 2) end
$$;

create or replace function orchable.is_terminal(s public.ai_task_status) returns boolean
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select s in ('completed', 'approved', 'skipped', 'failed', 'cancelled')
$$;

-- Copies return_along_with fields (or the legacy return-along-with) from the
-- parent's input into a child's input.
create or replace function orchable.return_along_with(parent_input jsonb, cfg jsonb, child_input jsonb) returns jsonb
  language plpgsql immutable
  set search_path = ''
as $$
declare
  keys jsonb := coalesce(cfg -> 'return_along_with', cfg -> 'return-along-with');
  k text;
  out jsonb := child_input;
begin
  if keys is null or jsonb_typeof(keys) <> 'array' or jsonb_typeof(parent_input) <> 'object' then
    return out;
  end if;
  if jsonb_typeof(out) <> 'object' then
    out := jsonb_build_object('result', out);
  end if;
  for k in select jsonb_array_elements_text(keys) loop
    if parent_input ? k then
      out := out || jsonb_build_object(k, parent_input -> k);
    end if;
  end loop;
  return out;
end
$$;

-- The stage keys of every template from which the given template can be
-- reached through next_stage_template_ids (its ancestors in the pipeline).
create or replace function orchable.upstream_stages(p_template_id text) returns text[]
  language sql stable
  set search_path = ''
as $$
  with recursive up(id) as (
    select p.id from public.prompt_templates p
    where jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? p_template_id
    union
    select p.id from up
    join public.prompt_templates p
      on jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? up.id
  )
  select coalesce(array_agg(distinct t.stage_key) filter (where t.stage_key is not null), '{}')
  from public.prompt_templates t where t.id in (select id from up)
$$;

------------------------------------------------------------------------------
-- Barriers (N:1 merge and join). check_barrier creates the successor's single
-- child for a scope once every dependency stage in that scope has tasks and
-- none of them, nor anything upstream of them in scope, is unfinished.
-- Finishers of one barrier scope serialise on an advisory transaction lock
-- taken after their own row is updated: the second waits for the first to
-- commit and then sees it as finished, so the last finisher always sees the
-- barrier open, and the idempotency key keeps the child single.
-- Returns 1 when it created the child, 0 when the child already exists or
-- nothing is left to merge, -1 while waiting.
------------------------------------------------------------------------------
create or replace function orchable.check_barrier(
  trig public.ai_tasks, succ public.prompt_templates, cfg jsonb, deps text[], is_join boolean
) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
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
  perform pg_advisory_xact_lock(hashtext('orchable.barrier:' || key));
  if exists (select 1 from public.ai_tasks c where c.idempotency_key = key) then
    return 0;
  end if;

  -- Open while a dependency task in scope is unfinished (the common case,
  -- answered from the (scope, stage_key, status) indexes) ...
  if exists (
    select 1 from public.ai_tasks t
    where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
      and t.stage_key = any(deps)
      and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval')) then
    return -1;
  end if;
  -- ... or while anything upstream of the barrier in scope is unfinished: it
  -- may still produce dependency tasks. When such a task finishes it either
  -- creates children on the way to the dependencies (which check again when
  -- they finish) or ends its branch, which re-checks barriers downstream
  -- (orchable.recheck_downstream); so the last relevant finisher always
  -- comes here. A dependency stage that never got a task in scope (its
  -- branch failed or split into nothing) does not keep the barrier shut.
  if exists (
    select 1 from public.ai_tasks t
    where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
      and t.stage_key = any(orchable.upstream_stages(succ.id))
      and t.stage_key is distinct from succ.stage_key
      and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval')) then
    return -1;
  end if;
  select max(t.step_number) into max_step
  from public.ai_tasks t
  where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);
  max_step := coalesce(max_step, trig.step_number);

  -- The completed dependency task that finished last becomes the parent.
  select * into last_parent from public.ai_tasks t
  where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
    and t.stage_key = any(deps) and t.status in ('completed', 'approved')
  order by t.completed_at desc nulls last, t.id desc
  limit 1;

  select count(*) filter (where t.status in ('completed', 'approved', 'skipped')),
         count(*) filter (where t.status in ('failed', 'cancelled'))
    into merged_count, failed_count
  from public.ai_tasks t
  where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr) and t.stage_key = any(deps);

  if last_parent.id is null then
    -- Every dependency task failed: nothing to merge; the batch ends failed.
    return 0;
  end if;

  if is_join then
    -- The root input plus each dependency's output under its stage key (a
    -- list when a stage has several tasks in scope).
    select input_data into root_input from public.ai_tasks
    where id = coalesce(last_parent.root_task_id, last_parent.id);
    select coalesce(jsonb_object_agg(stage_key, outs), '{}'::jsonb) into dep_outputs
    from (
      select t.stage_key,
             case when count(*) = 1 then (array_agg(coalesce(t.edited_output_data, t.output_data)))[1]
                  else jsonb_agg(coalesce(t.edited_output_data, t.output_data) order by t.sequence, t.created_at) end as outs
      from public.ai_tasks t
      where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
      group by t.stage_key
    ) s;
    child_input := coalesce(root_input, '{}'::jsonb) || dep_outputs;
  else
    -- N:1 merge: the completed parents' outputs concatenated at merge_path;
    -- with the default (output_data) the list of whole outputs.
    merge_path := coalesce(nullif(cfg ->> 'merge_path', ''), 'output_data');
    select coalesce(jsonb_agg(e order by root_seq, seq, created_at, id, ord), '[]'::jsonb) into merged
    from (
      select (select r.sequence from public.ai_tasks r where r.id = t.root_task_id) as root_seq,
             t.sequence as seq, t.created_at, t.id, y.ord, y.e
      from public.ai_tasks t
      cross join lateral (
        select case
          when merge_path = 'output_data' then jsonb_build_array(coalesce(t.edited_output_data, t.output_data))
          when jsonb_typeof(orchable.json_path(coalesce(t.edited_output_data, t.output_data), merge_path)) = 'array'
            then orchable.json_path(coalesce(t.edited_output_data, t.output_data), merge_path)
          when orchable.json_path(coalesce(t.edited_output_data, t.output_data), merge_path) is null then '[]'::jsonb
          else jsonb_build_array(orchable.json_path(coalesce(t.edited_output_data, t.output_data), merge_path))
        end as v
      ) x
      cross join lateral jsonb_array_elements(x.v) with ordinality as y(e, ord)
      where (t.batch_id = sb or t.launch_id = sl or t.root_task_id = sr or t.id = sr)
        and t.stage_key = any(deps) and t.status in ('completed', 'approved')
    ) m;
    child_input := orchable.return_along_with(last_parent.input_data, cfg,
      jsonb_build_object(merge_path, merged, '_merged_from_count', merged_count, '_failed_count', failed_count));
  end if;

  insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
    hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
    extra, idempotency_key)
  values (coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan', child_input, last_parent.user_id,
    last_parent.batch_id, last_parent.launch_id, coalesce(last_parent.root_task_id, last_parent.id), last_parent.id,
    coalesce(last_parent.hierarchy_path, '[]'::jsonb) || to_jsonb(last_parent.id::text),
    max_step + 1, succ.stage_key, succ.id, coalesce(succ.requires_approval, false), 1, 1, last_parent.test_mode,
    jsonb_build_object('parent_stage_key', last_parent.stage_key, 'parent_task_id', last_parent.id,
      '_merged_from_count', merged_count, '_failed_count', failed_count,
      '_barrier', jsonb_build_object('stages', to_jsonb(deps), 'scope', scope, 'kind', case when is_join then 'join' else 'merge' end)),
    key)
  on conflict (idempotency_key) do nothing;
  get diagnostics rc = row_count;
  return rc;
end
$$;

------------------------------------------------------------------------------
-- Successor creation: runs inside the completing (approving, failing)
-- transaction, after the parent's own row has been updated. Children carry
-- an idempotency key, so a repeated call never creates a duplicate.
-- Returns {created, waiting} or {error} (nothing created) when a 1:N
-- split_path does not resolve to an array.
-- With only_barriers (the parent failed or was rejected) only N:1/join
-- successors are re-checked, since a finished parent may open them.
------------------------------------------------------------------------------
create or replace function orchable.spawn_successors(parent public.ai_tasks, only_barriers boolean)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  tpl public.prompt_templates;
  succ public.prompt_templates;
  result jsonb := coalesce(parent.edited_output_data, parent.output_data);
  sid text;
  cfg jsonb;
  card text;
  deps text[];
  is_join boolean;
  arr jsonb;
  n int;
  created int := 0;
  waiting int := 0;
  bsize int;
  parent_path jsonb := coalesce(parent.hierarchy_path, '[]'::jsonb) || to_jsonb(parent.id::text);
  root uuid := coalesce(parent.root_task_id, parent.id);
  rc int;
  plan jsonb := '[]'::jsonb;
  item jsonb;
  dead_end boolean := only_barriers;
begin
  select * into tpl from public.prompt_templates where id = parent.prompt_template_id;
  if parent.batch_id is not null
     and exists (select 1 from public.task_batches where id = parent.batch_id and status = 'cancelled') then
    return jsonb_build_object('created', 0, 'waiting', 0);
  end if;

  -- Pass 1: resolve every successor and validate splits before inserting
  -- anything, so a bad split_path fails the parent without half its children.
  foreach sid in array orchable.successor_ids(parent, tpl) loop
    select * into succ from public.prompt_templates where id = sid;
    if not found then
      if only_barriers then
        continue;
      end if;
      return jsonb_build_object('error', format('successor template %s does not exist or is not visible', sid));
    end if;
    cfg := orchable.successor_config(parent, succ);
    card := orchable.cardinality(cfg);
    deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
    is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from parent.stage_key);
    if not is_join and card = '1:N' and not only_barriers then
      arr := orchable.json_path(result, cfg ->> 'split_path');
      if arr is null or jsonb_typeof(arr) <> 'array' then
        return jsonb_build_object('error', format('split_path %s of stage %s did not resolve to an array in the output of task %s',
          coalesce(quote_literal(cfg ->> 'split_path'), '(missing)'), coalesce(succ.stage_key, succ.id), parent.id));
      end if;
    end if;
    plan := plan || jsonb_build_object('sid', sid, 'cfg', cfg, 'card', card, 'deps', to_jsonb(deps), 'join', is_join);
  end loop;

  -- Pass 2: create; direct children first, so a barrier checked in the same
  -- transaction sees them.
  for item in select e from jsonb_array_elements(plan) with ordinality x(e, o)
              order by (e ->> 'join')::boolean or e ->> 'card' = 'N:1', o loop
    select * into succ from public.prompt_templates where id = item ->> 'sid';
    cfg := item -> 'cfg';
    card := item ->> 'card';
    is_join := (item ->> 'join')::boolean;
    deps := array(select jsonb_array_elements_text(item -> 'deps'));

    if is_join or card = 'N:1' then
      if not is_join then
        deps := array[parent.stage_key];
      end if;
      rc := orchable.check_barrier(parent, succ, cfg, deps, is_join);
      if rc < 0 then
        waiting := waiting + 1;
      else
        created := created + rc;
      end if;

    elsif only_barriers then
      continue;

    elsif card = '1:1' then
      insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
        hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
        split_group_id, extra, idempotency_key)
      values (coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
        orchable.return_along_with(parent.input_data, cfg, result), parent.user_id,
        parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1, succ.stage_key, succ.id,
        coalesce(succ.requires_approval, false), 1, 1, parent.test_mode, parent.split_group_id,
        jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
        parent.id || '/' || succ.id)
      on conflict (idempotency_key) do nothing;
      get diagnostics rc = row_count;
      created := created + rc;

    else -- 1:N
      arr := orchable.json_path(result, cfg ->> 'split_path');
      n := jsonb_array_length(arr);
      if n = 0 then
        dead_end := true;
      end if;
      if coalesce(cfg ->> 'split_mode', 'per_item') = 'per_batch' then
        bsize := case when cfg ->> 'batch_size' ~ '^[0-9]{1,6}$' then greatest((cfg ->> 'batch_size')::int, 1) else 10 end;
        insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key)
        select coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object(
              'items', (select jsonb_agg(e order by o) from jsonb_array_elements(arr) with ordinality x(e, o)
                        where o > b * bsize and o <= (b + 1) * bsize),
              '_batch_index', b)),
          parent.user_id, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), b + 1, ceil(n::numeric / bsize)::int,
          parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/b' || b
        from generate_series(0, ceil(n::numeric / bsize)::int - 1) b
        on conflict (idempotency_key) do nothing;
      else
        insert into public.ai_tasks (task_type, status, input_data, user_id, batch_id, launch_id, root_task_id, parent_task_id,
          hierarchy_path, step_number, stage_key, prompt_template_id, requires_approval, sequence, total_steps, test_mode,
          split_group_id, extra, idempotency_key)
        select coalesce(succ.stage_config ->> 'task_type', succ.stage_key, 'generic'), 'plan',
          orchable.return_along_with(parent.input_data, cfg,
            coalesce(parent.input_data, '{}'::jsonb) || jsonb_build_object('item', e, '_split_index', o - 1, '_split_total', n)),
          parent.user_id, parent.batch_id, parent.launch_id, root, parent.id, parent_path, parent.step_number + 1,
          succ.stage_key, succ.id, coalesce(succ.requires_approval, false), o, n, parent.test_mode, parent.id,
          jsonb_build_object('parent_stage_key', parent.stage_key, 'parent_task_id', parent.id),
          parent.id || '/' || succ.id || '/' || (o - 1)
        from jsonb_array_elements(arr) with ordinality x(e, o)
        on conflict (idempotency_key) do nothing;
      end if;
      get diagnostics rc = row_count;
      created := created + rc;
    end if;
  end loop;

  -- A branch that ends here (failure, rejection, an empty split) may be the
  -- last thing a barrier further downstream was waiting for.
  if dead_end then
    created := created + orchable.recheck_downstream(parent);
  end if;
  return jsonb_build_object('created', created, 'waiting', waiting);
end
$$;

-- Walks the pipeline graph downstream of a task's stage and re-checks every
-- barrier there, using the latest finished task of the barrier's feeding
-- stage in the same scope as the trigger.
create or replace function orchable.recheck_downstream(t public.ai_tasks) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  frontier text[];
  nxt text[];
  seen text[] := '{}';
  x public.prompt_templates;
  succ public.prompt_templates;
  sid text;
  cfg jsonb;
  deps text[];
  is_join boolean;
  created int := 0;
  depth int := 0;
  rc int;
begin
  select array(select jsonb_array_elements_text(case when jsonb_typeof(p.next_stage_template_ids) = 'array'
                                                     then p.next_stage_template_ids else '[]'::jsonb end))
    into frontier
  from public.prompt_templates p where p.id = t.prompt_template_id;
  while cardinality(frontier) > 0 and depth < 20 loop
    depth := depth + 1;
    nxt := '{}';
    foreach sid in array frontier loop
      continue when sid = any(seen);
      seen := seen || sid;
      select * into x from public.prompt_templates where id = sid;
      continue when not found;
      -- Barriers fed by stage x.
      for succ in
        select p.* from public.prompt_templates p
        where p.id in (select jsonb_array_elements_text(case when jsonb_typeof(x.next_stage_template_ids) = 'array'
                                                            then x.next_stage_template_ids else '[]'::jsonb end))
      loop
        cfg := coalesce(succ.stage_config, '{}'::jsonb);
        deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
        is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from x.stage_key);
        continue when not is_join and orchable.cardinality(cfg) <> 'N:1';
        if not is_join then
          deps := array[x.stage_key];
        end if;
        -- The dead-end task itself is the trigger: it sits in the barrier's
        -- scope, and check_barrier takes the barrier's lock before it reads
        -- anything, so a concurrent finisher of the feeding stage either sees
        -- this task finished or is seen finished by it.
        rc := orchable.check_barrier(t, succ, cfg, deps, is_join);
        created := created + greatest(rc, 0);
      end loop;
      nxt := nxt || array(select jsonb_array_elements_text(case when jsonb_typeof(x.next_stage_template_ids) = 'array'
                                                               then x.next_stage_template_ids else '[]'::jsonb end));
    end loop;
    frontier := nxt;
  end loop;
  return created;
end
$$;

------------------------------------------------------------------------------
-- claim_tasks: conditional plan → processing with a lease, for up to p_limit
-- of the caller's due tasks (optionally only the given ids). Returns the run
-- context of each claimed task in one round trip.
------------------------------------------------------------------------------
create or replace function public.claim_tasks(
  p_worker text,
  p_lease_seconds integer default 300,
  p_limit integer default 1,
  p_task_ids uuid[] default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  out jsonb;
begin
  if p_worker is null or p_worker = '' then
    raise exception using errcode = '22023', message = 'p_worker is required';
  end if;
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = '22023', message = 'p_limit must be between 1 and 1000';
  end if;

  with cand as (
    select t.id
    from public.ai_tasks t
    where t.status = 'plan'
      and t.run_after <= now()
      and (p_task_ids is null or t.id = any(p_task_ids))
      -- A scalar filter, not NOT EXISTS: as an anti-join the planner assumed
      -- it removed almost every row and sorted the whole queue (O(queue));
      -- this way it walks the runnable index in order and stops at p_limit.
      and (t.batch_id is null or not coalesce((
        select b.status in ('paused', 'cancelled') or coalesce(b.execution_delay_seconds, 0) > 0
        from public.task_batches b where b.id = t.batch_id), false))
    order by t.run_after, t.id
    limit p_limit
    for update of t skip locked
  ), delayed as (
    -- Batches with execution_delay_seconds: one start per delay interval.
    select t.id, b.id as batch_id, b.execution_delay_seconds
    from public.task_batches b
    cross join lateral (
      select t.id from public.ai_tasks t
      where t.batch_id = b.id and t.status = 'plan' and t.run_after <= now()
        and (p_task_ids is null or t.id = any(p_task_ids))
      order by t.run_after, t.id
      limit 1
      for update of t skip locked
    ) t
    where b.execution_delay_seconds > 0
      and b.status not in ('paused', 'cancelled')
      and (b.next_start_at is null or b.next_start_at <= now())
    limit greatest(p_limit - (select count(*) from cand), 0)
  ), spaced as (
    -- Re-checked under the row lock: of two concurrent claimers only the
    -- first starts a task of a delayed batch.
    update public.task_batches b
    set next_start_at = now() + make_interval(secs => d.execution_delay_seconds)
    from delayed d
    where b.id = d.batch_id and (b.next_start_at is null or b.next_start_at <= now())
    returning b.id
  ), picked as (
    select id from cand
    union all
    select d.id from delayed d join spaced s on s.id = d.batch_id
  ), upd as (
    update public.ai_tasks t
    set status = 'processing',
        locked_until = now() + make_interval(secs => p_lease_seconds),
        locked_by = p_worker,
        attempts = t.attempts + 1,
        started_at = now()
    from picked
    where t.id = picked.id
    returning t.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'task', to_jsonb(u),
    'template', (select to_jsonb(p) from public.prompt_templates p where p.id = u.prompt_template_id),
    'batch', (select jsonb_build_object('id', b.id, 'name', b.name, 'status', b.status, 'global_context', b.global_context,
                                        'execution_delay_seconds', b.execution_delay_seconds, 'launch_id', b.launch_id)
              from public.task_batches b where b.id = u.batch_id)
  )), '[]'::jsonb)
  into out
  from upd u;
  return out;
end
$$;

------------------------------------------------------------------------------
-- complete_task: store the validated output and usage, then (unless the
-- stage needs approval) mark it completed and create its successors, all in
-- one transaction. Repeating a completion returns duplicate = true.
------------------------------------------------------------------------------
create or replace function orchable.complete_one(
  p_task_id uuid,
  p_worker text,
  p_output jsonb,
  p_usage jsonb
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  tpl_approval boolean;
  needs_approval boolean;
  res jsonb := '{}'::jsonb;
  u jsonb := coalesce(p_usage, '{}'::jsonb);
begin
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if p_output is null then
    raise exception using errcode = '22023', message = 'p_output is required';
  end if;
  if t.status in ('completed', 'generated', 'approved', 'failed') and t.locked_by is null and t.output_data is not distinct from p_output then
    return jsonb_strip_nulls(jsonb_build_object('status', t.status, 'duplicate', true, 'created', 0,
      'error', case when t.status = 'failed' then t.error_message end));
  end if;
  if t.status <> 'processing' or t.locked_by is distinct from p_worker then
    raise exception using errcode = 'PT409',
      message = format('task %s is %s%s, not processing under worker %s', p_task_id, t.status,
                       coalesce(' (leased by ' || t.locked_by || ')', ''), p_worker);
  end if;
  if p_output is null then
    raise exception using errcode = '22023', message = 'p_output is required';
  end if;

  select coalesce(requires_approval, false) into tpl_approval from public.prompt_templates where id = t.prompt_template_id;
  needs_approval := t.requires_approval or coalesce(tpl_approval, false);

  update public.ai_tasks set
    status = case when needs_approval then 'generated'::public.ai_task_status else 'completed'::public.ai_task_status end,
    output_data = p_output,
    error_message = null,
    completed_at = now(),
    model_id = coalesce(u ->> 'model_id', model_id),
    model_version = coalesce(u ->> 'model_version', model_version),
    api_key_id = coalesce((u ->> 'api_key_id')::uuid, api_key_id),
    prompt_token_count = coalesce((u ->> 'prompt_token_count')::int, prompt_token_count),
    candidates_token_count = coalesce((u ->> 'candidates_token_count')::int, candidates_token_count),
    thoughts_token_count = coalesce((u ->> 'thoughts_token_count')::int, thoughts_token_count),
    total_token_count = coalesce((u ->> 'total_token_count')::int, total_token_count),
    extra = extra || jsonb_strip_nulls(jsonb_build_object(
      'used_api_key_name', u ->> 'api_key_name',
      'response_id', u ->> 'response_id',
      'regenerations', (u ->> 'regenerations')::int))
  where id = p_task_id
  returning * into t;

  if not needs_approval then
    res := orchable.spawn_successors(t, false);
    if res ? 'error' then
      update public.ai_tasks set status = 'failed', error_message = res ->> 'error', retry_count = retry_count + 1
      where id = p_task_id
      returning * into t;
      perform orchable.spawn_successors(t, true);
      return jsonb_build_object('status', 'failed', 'error', res ->> 'error', 'created', 0);
    end if;
  end if;

  return jsonb_build_object('status', case when needs_approval then 'generated' else 'completed' end,
                            'created', coalesce((res ->> 'created')::int, 0),
                            'waiting', coalesce((res ->> 'waiting')::int, 0));
end
$$;

create or replace function public.complete_task(
  p_task_id uuid,
  p_worker text,
  p_output jsonb,
  p_usage jsonb default '{}'::jsonb
) returns jsonb
  language sql volatile
  set search_path = ''
as $$
  select orchable.complete_one(p_task_id, p_worker, p_output, p_usage)
$$;

-- complete_tasks: complete_task for many tasks of the caller in one
-- transaction (one commit), for workers that finish many tasks at once.
-- p_items is a JSON array of {task_id, output, usage}. Each item is applied
-- on its own (a failing item does not undo the others) and the result is an
-- array in the same order: complete_task's result, or {"error", "code"}.
create or replace function public.complete_tasks(p_worker text, p_items jsonb) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  item jsonb;
  res jsonb;
  results jsonb[] := '{}';
  fast jsonb;
  leaf_result constant jsonb := '{"status": "completed", "created": 0, "waiting": 0}';
begin
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) > 1000 then
    raise exception using errcode = '22023', message = 'p_items must be a JSON array of at most 1000 {task_id, output, usage}';
  end if;

  -- Set-based fast path for the common case: tasks processing under this
  -- worker whose stage has no successors and needs no approval (a leaf:
  -- completing it creates nothing). One UPDATE for all of them.
  with items as (
    select (e ->> 'task_id')::uuid as task_id, e -> 'output' as output, coalesce(e -> 'usage', '{}'::jsonb) as u
    from jsonb_array_elements(p_items) e
    where e ->> 'task_id' ~ '^[0-9a-fA-F-]{36}$' and jsonb_typeof(e -> 'output') is not null and e -> 'output' <> 'null'::jsonb
  ), leaves as (
    select t.id from public.ai_tasks t
    join items i on i.task_id = t.id
    left join public.prompt_templates p on p.id = t.prompt_template_id
    where t.status = 'processing' and t.locked_by = p_worker
      and not t.requires_approval and not coalesce(p.requires_approval, false)
      and t.next_task_config is null and not (t.extra ? 'next_stage_configs')
      and p.next_stage_template_id is null
      and coalesce(jsonb_array_length(case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids end), 0) = 0
    for update of t
  ), done as (
    update public.ai_tasks t set
      status = 'completed',
      output_data = i.output,
      error_message = null,
      completed_at = now(),
      model_id = coalesce(i.u ->> 'model_id', t.model_id),
      model_version = coalesce(i.u ->> 'model_version', t.model_version),
      api_key_id = coalesce((i.u ->> 'api_key_id')::uuid, t.api_key_id),
      prompt_token_count = coalesce((i.u ->> 'prompt_token_count')::int, t.prompt_token_count),
      candidates_token_count = coalesce((i.u ->> 'candidates_token_count')::int, t.candidates_token_count),
      thoughts_token_count = coalesce((i.u ->> 'thoughts_token_count')::int, t.thoughts_token_count),
      total_token_count = coalesce((i.u ->> 'total_token_count')::int, t.total_token_count),
      extra = t.extra || jsonb_strip_nulls(jsonb_build_object(
        'used_api_key_name', i.u ->> 'api_key_name',
        'response_id', i.u ->> 'response_id',
        'regenerations', (i.u ->> 'regenerations')::int))
    from items i
    where t.id = i.task_id and t.id in (select id from leaves)
    returning t.id
  )
  select coalesce(jsonb_object_agg(id::text, true), '{}'::jsonb) into fast from done;

  -- Everything else one by one, each isolated from the others.
  for item in select e from jsonb_array_elements(p_items) with ordinality x(e, o) order by o loop
    if fast ? lower(item ->> 'task_id') then
      res := leaf_result;
    else
      begin
        res := orchable.complete_one((item ->> 'task_id')::uuid, p_worker, item -> 'output', coalesce(item -> 'usage', '{}'::jsonb));
      exception when others then
        res := jsonb_build_object('error', sqlerrm, 'code', sqlstate);
      end;
    end if;
    results := results || res; -- in place: plpgsql appends to an expanded array
  end loop;
  return to_jsonb(results);
end
$$;

------------------------------------------------------------------------------
-- fail_task: record a failure. With p_retry_at and not p_permanent the task
-- goes back to plan (run_after = p_retry_at); otherwise it fails for good and
-- barriers downstream are re-checked (a failed parent does not block a merge).
------------------------------------------------------------------------------
create or replace function public.fail_task(
  p_task_id uuid,
  p_worker text,
  p_error text,
  p_retry_at timestamptz default null,
  p_permanent boolean default true
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
begin
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status in ('failed', 'plan', 'cancelled') and t.locked_by is null and t.error_message is not distinct from p_error then
    return jsonb_build_object('status', t.status, 'duplicate', true);
  end if;
  if t.status <> 'processing' or t.locked_by is distinct from p_worker then
    raise exception using errcode = 'PT409',
      message = format('task %s is %s, not processing under worker %s', p_task_id, t.status, p_worker);
  end if;
  if coalesce(p_error, '') = '' then
    raise exception using errcode = '22023', message = 'p_error is required';
  end if;

  if not coalesce(p_permanent, true) and p_retry_at is not null then
    -- A task of a cancelled batch is not rescheduled.
    if exists (select 1 from public.task_batches b where b.id = t.batch_id and b.status = 'cancelled') then
      update public.ai_tasks set status = 'cancelled', error_message = p_error, retry_count = retry_count + 1,
        completed_at = now()
      where id = p_task_id;
      return jsonb_build_object('status', 'cancelled');
    end if;
    update public.ai_tasks set status = 'plan', run_after = p_retry_at, error_message = p_error,
      retry_count = retry_count + 1
    where id = p_task_id;
    return jsonb_build_object('status', 'plan', 'run_after', p_retry_at);
  end if;

  update public.ai_tasks set status = 'failed', error_message = p_error, retry_count = retry_count + 1,
    completed_at = now()
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;

------------------------------------------------------------------------------
-- renew_leases / release_task: lease upkeep for long model calls and for a
-- graceful shutdown (the task goes back to plan; the attempt is not counted).
------------------------------------------------------------------------------
create or replace function public.renew_leases(p_task_ids uuid[], p_worker text, p_lease_seconds integer default 300)
  returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
begin
  if p_lease_seconds is null or p_lease_seconds < 5 or p_lease_seconds > 3600 then
    raise exception using errcode = '22023', message = 'p_lease_seconds must be between 5 and 3600';
  end if;
  update public.ai_tasks set locked_until = now() + make_interval(secs => p_lease_seconds)
  where id = any(p_task_ids) and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return n;
end
$$;

create or replace function public.release_task(p_task_id uuid, p_worker text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  n int;
begin
  update public.ai_tasks set status = 'plan', run_after = now(), attempts = greatest(attempts - 1, 0)
  where id = p_task_id and status = 'processing' and locked_by = p_worker;
  get diagnostics n = row_count;
  return jsonb_build_object('released', n = 1);
end
$$;

------------------------------------------------------------------------------
-- Approval.
------------------------------------------------------------------------------
create or replace function public.approve_task(
  p_task_id uuid,
  p_edited_output jsonb default null,
  p_edit_notes text default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  res jsonb;
begin
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status = 'completed' and t.approved_at is not null then
    return jsonb_build_object('status', 'completed', 'duplicate', true, 'created', 0);
  end if;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  update public.ai_tasks set status = 'completed', approved_at = now(), approved_by = (select auth.uid()),
    edited_output_data = p_edited_output, edit_notes = p_edit_notes
  where id = p_task_id
  returning * into t;
  res := orchable.spawn_successors(t, false);
  if res ? 'error' then
    raise exception using errcode = 'PT422', message = res ->> 'error';
  end if;
  return jsonb_build_object('status', 'completed', 'created', (res ->> 'created')::int, 'waiting', (res ->> 'waiting')::int);
end
$$;

create or replace function public.reject_task(
  p_task_id uuid,
  p_reason text,
  p_regenerate boolean default false
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
begin
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  if coalesce(p_regenerate, false) then
    -- Regenerate with the reviewer's notes (the runner adds extra.reviewer_notes to the prompt).
    update public.ai_tasks set status = 'plan', run_after = now(), output_data = null, completed_at = null,
      attempts = 0, error_message = null,
      extra = extra || jsonb_build_object('reviewer_notes', p_reason, 'rejected_output', t.output_data)
    where id = p_task_id;
    return jsonb_build_object('status', 'plan');
  end if;
  update public.ai_tasks set status = 'failed', error_message = 'rejected by reviewer: ' || coalesce(p_reason, '(no reason)'),
    completed_at = now(), edit_notes = p_reason
  where id = p_task_id
  returning * into t;
  perform orchable.spawn_successors(t, true);
  return jsonb_build_object('status', 'failed');
end
$$;

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
    join public.prompt_templates p on p.id = w.id
    cross join lateral jsonb_array_elements_text(
      case when jsonb_typeof(p.next_stage_template_ids) = 'array' then p.next_stage_template_ids else '[]'::jsonb end) as n(sid)
    where w.depth < 50
  )
  select coalesce(array_agg(distinct p.stage_key) filter (where p.stage_key is not null), '{}')
    into downstream
  from walk w join public.prompt_templates p on p.id = w.id;
  downstream := downstream || t.stage_key::text;

  with barrier_children as (
    select c.id from public.ai_tasks c
    where c.idempotency_key like 'barrier/%'
      and c.user_id = t.user_id
      and exists (select 1 from jsonb_array_elements_text(c.extra -> '_barrier' -> 'stages') s(k) where s.k = any(downstream))
      and orchable.in_scope(t, c.extra -> '_barrier' ->> 'scope')
  ), doomed as (
    select d.id from public.ai_tasks d
    where d.user_id = t.user_id
      and (d.hierarchy_path @> jsonb_build_array(t.id::text)
       or d.id in (select id from barrier_children)
       or exists (select 1 from barrier_children bc where d.hierarchy_path @> jsonb_build_array(bc.id::text)))
  )
  delete from public.ai_tasks where id in (select id from doomed) and id <> t.id;
  get diagnostics n = row_count;
  removed := removed + n;
  update public.ai_tasks set status = 'plan', run_after = now(), error_message = null, output_data = null,
    started_at = null, completed_at = null, attempts = 0, approved_at = null, approved_by = null,
    edited_output_data = null
  where id = t.id;
  return removed;
end
$$;

create or replace function public.retry_failed_task(p_task_id uuid) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
begin
  select * into t from public.ai_tasks where id = p_task_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  if t.status not in ('failed', 'cancelled', 'completed', 'generated') then
    raise exception using errcode = 'PT409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, t.status);
  end if;
  perform orchable.reset_task(t);
end
$$;

create or replace function public.retry_all_failed_in_batch(p_batch_id uuid) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  t public.ai_tasks;
  n int := 0;
begin
  -- The front end may pass a launch id (its /batch/:id route carries either).
  if not exists (select 1 from public.task_batches where id = p_batch_id or launch_id = p_batch_id) then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  for t in
    select * from public.ai_tasks
    where (batch_id = p_batch_id or launch_id = p_batch_id) and status = 'failed'
    order by step_number, created_at
    for update
  loop
    -- An earlier reset may have removed this task (it descended from another).
    if exists (select 1 from public.ai_tasks where id = t.id and status = 'failed') then
      perform orchable.reset_task(t);
      n := n + 1;
    end if;
  end loop;
  update public.task_batches set status = 'processing'
  where (id = p_batch_id or launch_id = p_batch_id) and status in ('completed', 'failed') and n > 0;
  return n;
end
$$;

------------------------------------------------------------------------------
-- Batch control.
------------------------------------------------------------------------------
create or replace function orchable.own_batch(p_batch_id uuid) returns public.task_batches
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches;
begin
  select * into b from public.task_batches where id = p_batch_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  return b;
end
$$;

create or replace function public.pause_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
begin
  if b.status in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT409', message = format('batch %s is %s and cannot be paused', p_batch_id, b.status);
  end if;
  update public.task_batches set status = 'paused' where id = p_batch_id;
  return jsonb_build_object('status', 'paused');
end
$$;

create or replace function public.resume_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
begin
  if b.status <> 'paused' then
    if b.status in ('pending', 'processing') then
      return jsonb_build_object('status', b.status, 'duplicate', true);
    end if;
    raise exception using errcode = 'PT409', message = format('batch %s is %s and cannot be resumed', p_batch_id, b.status);
  end if;
  -- The fold leaves paused batches alone, so settle the status from the
  -- tasks themselves: work may have finished while the batch was paused.
  update public.task_batches set status = case
      when not exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id
                       and t.status in ('plan', 'pending', 'running', 'processing', 'generated', 'awaiting_approval'))
       and exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id)
        then case when exists (select 1 from public.ai_tasks t where t.batch_id = p_batch_id and t.status in ('failed', 'cancelled'))
                  then 'failed' else 'completed' end
      else 'processing' end,
    completed_at = null
  where id = p_batch_id
  returning status into b.status;
  if b.status in ('completed', 'failed') then
    update public.task_batches set completed_at = now() where id = p_batch_id;
  end if;
  perform pg_notify('orchable_wakeup', '');
  return jsonb_build_object('status', b.status);
end
$$;

create or replace function public.cancel_batch(p_batch_id uuid) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches := orchable.own_batch(p_batch_id);
  n int;
begin
  if b.status = 'cancelled' then
    return jsonb_build_object('status', 'cancelled', 'duplicate', true, 'cancelled_tasks', 0);
  end if;
  update public.task_batches set status = 'cancelled' where id = p_batch_id;
  update public.ai_tasks set status = 'cancelled', error_message = 'batch cancelled', completed_at = now()
  where batch_id = p_batch_id and status in ('plan', 'pending', 'generated');
  get diagnostics n = row_count;
  return jsonb_build_object('status', 'cancelled', 'cancelled_tasks', n);
end
$$;

------------------------------------------------------------------------------
-- launch_batch: a batch and one root task per input row, for a pipeline's
-- first stage template.
------------------------------------------------------------------------------
create or replace function public.launch_batch(
  p_template_id text,
  p_rows jsonb,
  p_name text default null,
  p_global_context jsonb default '{}'::jsonb,
  p_launch_id uuid default null,
  p_execution_delay_seconds integer default 0,
  p_orchestrator_config_id uuid default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  tpl public.prompt_templates;
  bid uuid;
  lid uuid := coalesce(p_launch_id, extensions.gen_random_uuid());
  ids jsonb;
begin
  if (select auth.uid()) is null then
    raise exception using errcode = '42501', message = 'launch_batch must be called as a signed-in user (the batch owner)';
  end if;
  if p_rows is null or jsonb_typeof(p_rows) <> 'array' or jsonb_array_length(p_rows) = 0 then
    raise exception using errcode = '22023', message = 'p_rows must be a non-empty JSON array of input rows';
  end if;
  if jsonb_array_length(p_rows) > 100000 then
    raise exception using errcode = '22023', message = 'p_rows may hold at most 100000 rows';
  end if;
  select * into tpl from public.prompt_templates where id = p_template_id;
  if not found then
    raise exception using errcode = 'PT404', message = format('template %s not found or not visible', p_template_id);
  end if;
  insert into public.task_batches (name, status, orchestrator_config_id, created_by, global_context, execution_delay_seconds, launch_id)
  values (coalesce(p_name, coalesce(tpl.name, tpl.id) || ' - Launch ' || left(lid::text, 8)), 'processing',
          p_orchestrator_config_id, (select auth.uid()), coalesce(p_global_context, '{}'::jsonb),
          greatest(coalesce(p_execution_delay_seconds, 0), 0), lid)
  returning id into bid;

  with rows as (
    select extensions.gen_random_uuid() as id, e as input, o - 1 as idx
    from jsonb_array_elements(p_rows) with ordinality x(e, o)
  ), ins as (
    insert into public.ai_tasks (id, task_type, status, input_data, user_id, batch_id, launch_id, root_task_id,
      step_number, stage_key, prompt_template_id, requires_approval, sequence, lo_code, hierarchy_path, extra)
    select r.id, coalesce(tpl.stage_config ->> 'task_type', tpl.stage_key, 'generic'), 'plan',
      case when jsonb_typeof(r.input) = 'object' then r.input else jsonb_build_object('input', r.input) end,
      (select auth.uid()), bid, lid, r.id, 1, tpl.stage_key, tpl.id, coalesce(tpl.requires_approval, false), r.idx,
      coalesce(r.input ->> 'lo_code', r.input ->> 'code'), '[]'::jsonb,
      jsonb_build_object('launcher_metadata', jsonb_build_object('original_index', r.idx, 'launch_id', lid))
    from rows r
    returning id, sequence
  )
  select jsonb_agg(id order by sequence) into ids from ins;
  return jsonb_build_object('batch_id', bid, 'launch_id', lid, 'task_ids', ids);
end
$$;

------------------------------------------------------------------------------
-- get_batch_progress: exact counts from the tasks themselves (the counters in
-- task_batches are folded asynchronously; this is exact at every moment).
------------------------------------------------------------------------------
create or replace function public.get_batch_progress(p_batch_id uuid) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  b public.task_batches;
  out jsonb;
begin
  select * into b from public.task_batches where id = p_batch_id;
  if not found then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  with c as (
    select coalesce(stage_key, '') as stage_key, status::text as status, count(*) as n,
           sum(coalesce(total_token_count, 0)) as tokens
    from public.ai_tasks where batch_id = p_batch_id group by 1, 2
  )
  select jsonb_build_object(
    'batch_id', b.id, 'name', b.name, 'status', b.status, 'launch_id', b.launch_id,
    'created_at', b.created_at, 'completed_at', b.completed_at,
    'total', coalesce(sum(n), 0),
    'pending', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'pending'), 0),
    'processing', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'processing'), 0),
    'completed', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'completed'), 0),
    'failed', coalesce(sum(n) filter (where public.task_status_bucket(status::public.ai_task_status) = 'failed'), 0),
    'awaiting_approval', coalesce(sum(n) filter (where status = 'generated'), 0),
    'total_tokens', coalesce(sum(tokens), 0),
    'by_stage', coalesce((select jsonb_object_agg(stage_key, s) from (
        select stage_key, jsonb_object_agg(status, n) as s from c group by stage_key) x), '{}'::jsonb))
  into out
  from c;
  return out;
end
$$;

------------------------------------------------------------------------------
-- Service-only: find due work across tenants (ids and owners, never
-- content), fairly across users, and re-queue expired leases.
------------------------------------------------------------------------------
create or replace function public.due_tasks(p_limit integer default 500, p_per_user integer default 50) returns jsonb
  language sql stable
  set search_path = ''
as $$
  with recursive users as (
    (select t.user_id from public.ai_tasks t where t.status = 'plan' and t.run_after <= now() order by t.user_id limit 1)
    union all
    select (select t.user_id from public.ai_tasks t
            where t.status = 'plan' and t.run_after <= now() and t.user_id > u.user_id
            order by t.user_id limit 1)
    from users u where u.user_id is not null
  ), picked as (
    select x.id, x.user_id, x.run_after
    from users u
    cross join lateral (
      select t.id, t.user_id, t.run_after from public.ai_tasks t
      where t.user_id = u.user_id and t.status = 'plan' and t.run_after <= now()
        and not exists (select 1 from public.task_batches b where b.id = t.batch_id and b.status in ('paused', 'cancelled'))
      order by t.run_after, t.id
      limit greatest(p_per_user, 1)
    ) x
    where u.user_id is not null
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'user_id', user_id) order by run_after), '[]'::jsonb)
  from (select * from picked order by run_after limit greatest(p_limit, 1)) p
$$;

create or replace function public.requeue_expired_leases(p_max_attempts integer default 5) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  requeued int;
  failed int;
  t public.ai_tasks;
begin
  failed := 0;
  p_max_attempts := greatest(coalesce(p_max_attempts, 5), 1);
  for t in
    update public.ai_tasks set status = 'failed', completed_at = now(), retry_count = retry_count + 1,
      error_message = format('worker %s lost the task %s times (lease expired); giving up', locked_by, attempts)
    where status = 'processing' and locked_until < now() and attempts >= p_max_attempts
    returning *
  loop
    failed := failed + 1;
    perform orchable.spawn_successors(t, true);
  end loop;
  update public.ai_tasks set status = 'plan', run_after = now(),
    error_message = format('lease of worker %s expired; re-queued', locked_by)
  where status = 'processing' and locked_until < now();
  get diagnostics requeued = row_count;
  return jsonb_build_object('requeued', requeued, 'failed', failed);
end
$$;

------------------------------------------------------------------------------
-- Wake-up on LISTEN/NOTIFY: one notification per statement that makes a task
-- runnable (collapsed by PostgreSQL within a transaction).
------------------------------------------------------------------------------
-- The payload lists the owners of the newly runnable tasks (comma-separated
-- UUIDs), so a listener can hand them to its dispatcher without a sweep; an
-- empty payload (too many owners for NOTIFY's 8000 bytes) means "sweep".
create or replace function orchable.notify_users(users text[]) returns void
  language plpgsql
  set search_path = ''
as $$
begin
  if cardinality(users) = 0 then
    return;
  end if;
  perform pg_notify('orchable_wakeup', case when cardinality(users) <= 200 then array_to_string(users, ',') else '' end);
end
$$;

create or replace function orchable.notify_insert() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform orchable.notify_users(array(select distinct n.user_id::text from new_rows n where n.status = 'plan'));
  return null;
end
$$;

create or replace function orchable.notify_update() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform orchable.notify_users(array(
    select distinct n.user_id::text from new_rows n join old_rows o on o.id = n.id
    where n.status = 'plan' and o.status <> 'plan'));
  return null;
end
$$;

drop trigger if exists trg_ai_tasks_notify_insert on public.ai_tasks;
create trigger trg_ai_tasks_notify_insert
  after insert on public.ai_tasks
  referencing new table as new_rows
  for each statement execute function orchable.notify_insert();

drop trigger if exists trg_ai_tasks_notify_update on public.ai_tasks;
create trigger trg_ai_tasks_notify_update
  after update on public.ai_tasks
  referencing old table as old_rows new table as new_rows
  for each statement execute function orchable.notify_update();

------------------------------------------------------------------------------
-- Privileges: the user API to authenticated (and service_role); the
-- cross-tenant functions to service_role only; nothing to anon.
------------------------------------------------------------------------------
revoke execute on all functions in schema orchable from public, anon;
grant execute on all functions in schema orchable to authenticated, service_role;
-- Trigger and helper functions of the schema migration: not callable by anon.
revoke execute on all functions in schema public from public, anon;
grant execute on function public.task_status_bucket(public.ai_task_status) to authenticated, service_role;

revoke execute on function
  public.claim_tasks(text, integer, integer, uuid[]),
  public.complete_task(uuid, text, jsonb, jsonb),
  public.complete_tasks(text, jsonb),
  public.fail_task(uuid, text, text, timestamptz, boolean),
  public.renew_leases(uuid[], text, integer),
  public.release_task(uuid, text),
  public.approve_task(uuid, jsonb, text),
  public.reject_task(uuid, text, boolean),
  public.retry_failed_task(uuid),
  public.retry_all_failed_in_batch(uuid),
  public.pause_batch(uuid),
  public.resume_batch(uuid),
  public.cancel_batch(uuid),
  public.launch_batch(text, jsonb, text, jsonb, uuid, integer, uuid),
  public.get_batch_progress(uuid),
  public.due_tasks(integer, integer),
  public.requeue_expired_leases(integer)
  from public, anon;

grant execute on function
  public.claim_tasks(text, integer, integer, uuid[]),
  public.complete_task(uuid, text, jsonb, jsonb),
  public.complete_tasks(text, jsonb),
  public.fail_task(uuid, text, text, timestamptz, boolean),
  public.renew_leases(uuid[], text, integer),
  public.release_task(uuid, text),
  public.approve_task(uuid, jsonb, text),
  public.reject_task(uuid, text, boolean),
  public.retry_failed_task(uuid),
  public.retry_all_failed_in_batch(uuid),
  public.pause_batch(uuid),
  public.resume_batch(uuid),
  public.cancel_batch(uuid),
  public.launch_batch(text, jsonb, text, jsonb, uuid, integer, uuid),
  public.get_batch_progress(uuid)
  to authenticated, service_role;

grant execute on function public.due_tasks(integer, integer), public.requeue_expired_leases(integer) to service_role;
