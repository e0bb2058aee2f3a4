------------------------------------------------------------------------------
-- launch_batch: a batch and one root task per input row, for a pipeline's
-- first stage template.
--
-- p_rows is json, not jsonb, and each row is made jsonb on its own, as
-- complete_tasks' items are: declared jsonb, PostgREST's json_to_record
-- made the whole array one jsonb value before the call (100,000 rows:
-- 177 MB of the server's memory mapped and 0.65 s, against 84 MB and
-- 0.32 s as json; docs/performance.md, twenty-seventh round).
------------------------------------------------------------------------------
create or replace function public.launch_batch(
  p_template_id text,
  p_rows json,
  p_name text default null,
  p_global_context jsonb default '{}'::jsonb,
  p_launch_id uuid default null,
  p_execution_delay_seconds integer default 0,
  p_orchestrator_config_id uuid default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
  -- A launch of up to 100,000 rows takes longer than Supabase's 8 s for
  -- authenticated; PostgREST (v12+) and the direct transport apply a
  -- function's own statement_timeout to the call.
  set statement_timeout = '60s'
as $$
declare
  tpl public.prompt_templates;
  bid uuid;
  lid uuid := coalesce(p_launch_id, extensions.gen_random_uuid());
  ids jsonb;
  nrows integer;
  uid uuid := orchable.require_user('launch_batch');
begin
  -- Engine mode: the root tasks' references are set here, not by a client
  -- (the batch's launch id is still checked by the task_batches trigger).
  perform orchable.engine_on();
  if p_rows is null or json_typeof(p_rows) <> 'array' then
    raise exception using errcode = '22023', message = 'p_rows must be a non-empty JSON array of input rows';
  end if;
  nrows := json_array_length(p_rows);
  if nrows = 0 then
    raise exception using errcode = '22023', message = 'p_rows must be a non-empty JSON array of input rows';
  end if;
  if nrows > 100000 then
    raise exception using errcode = '22023', message = 'p_rows may hold at most 100000 rows';
  end if;
  tpl := orchable.usable_template(p_template_id, uid);
  if tpl.id is null then
    raise exception using errcode = 'PT404', message = format('template %s not found or not visible', p_template_id);
  end if;
  insert into public.task_batches (name, status, orchestrator_config_id, created_by, global_context, execution_delay_seconds, launch_id)
  values (coalesce(p_name, coalesce(tpl.name, tpl.id) || ' - Launch ' || left(lid::text, 8)), 'processing',
          p_orchestrator_config_id, (select auth.uid()), coalesce(p_global_context, '{}'::jsonb),
          greatest(coalesce(p_execution_delay_seconds, 0), 0), lid)
  returning id into bid;

  with rows as (
    select extensions.gen_random_uuid() as id, e::jsonb as input, o - 1 as idx
    from json_array_elements(p_rows) with ordinality x(e, o)
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
