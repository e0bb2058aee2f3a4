-- submit_free_tier_tasks at the instant p_at (the quota month). Validates
-- every task first, charges the caller's quota (all or nothing, under a
-- per-user lock: orchable.free_tier_charge), then inserts the tasks as the
-- caller with every field the front end sends (batch_id, launch_id,
-- stage_key, task_type, step_number, input_data, lo_code,
-- prompt_template_id, sequence, extra), status plan, root_task_id = id and
-- tier_source free_pool (which only this function may set on a client
-- insert: orchable.ai_tasks_tier_source). Tasks without a batch_id share one
-- new batch of the caller's. Refused, it inserts nothing and deletes the
-- caller's batches the tasks name that hold no task (the front end creates
-- the batch before it calls), so no empty batch is left behind.
create or replace function orchable.submit_free_tier(p_tasks jsonb, p_at timestamptz) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  uid uuid := orchable.require_user('submit_free_tier_tasks');
  n integer;
  bad text;
  charge jsonb;
  new_bid uuid;
  ids jsonb;
  bids jsonb;
begin
  if p_tasks is null or jsonb_typeof(p_tasks) <> 'array' or jsonb_array_length(p_tasks) = 0 then
    raise exception using errcode = '22023', message = 'p_tasks must be a non-empty JSON array of task objects';
  end if;
  n := jsonb_array_length(p_tasks);
  if n > 100000 then
    raise exception using errcode = '22023', message = 'p_tasks may hold at most 100000 tasks';
  end if;
  select format('p_tasks[%s]: %s', x.o - 1, case
      when jsonb_typeof(x.e) <> 'object' then 'each task must be a JSON object'
      when nullif(x.e ->> 'user_id', '') is not null and x.e ->> 'user_id' <> uid::text
        then 'user_id must be your own user id (or absent)'
      when coalesce(x.e ->> 'status', 'plan') not in ('plan', 'pending')
        then 'status must be plan (or pending, or absent)'
      when coalesce(x.e ->> 'tier_source', 'free_pool') <> 'free_pool'
        then 'tier_source must be free_pool (or absent)'
      when x.e ?| array['id', 'parent_task_id', 'root_task_id'] and (x.e ->> 'id' is not null
           or x.e ->> 'parent_task_id' is not null or x.e ->> 'root_task_id' is not null)
        then 'a free-tier task is a root task: id, parent_task_id and root_task_id are set here'
      end)
  into bad
  from jsonb_array_elements(p_tasks) with ordinality x(e, o)
  where jsonb_typeof(x.e) <> 'object'
     or (nullif(x.e ->> 'user_id', '') is not null and x.e ->> 'user_id' <> uid::text)
     or coalesce(x.e ->> 'status', 'plan') not in ('plan', 'pending')
     or coalesce(x.e ->> 'tier_source', 'free_pool') <> 'free_pool'
     or x.e ->> 'id' is not null or x.e ->> 'parent_task_id' is not null or x.e ->> 'root_task_id' is not null
  order by x.o
  limit 1;
  if bad is not null then
    raise exception using errcode = '22023', message = bad;
  end if;

  charge := orchable.free_tier_charge(n, p_at);
  if not (charge ->> 'success')::boolean then
    delete from public.task_batches b
    where b.created_by = uid
      and b.id in (select nullif(e ->> 'batch_id', '')::uuid from jsonb_array_elements(p_tasks) e)
      and not exists (select 1 from public.ai_tasks t where t.batch_id = b.id);
    return charge;
  end if;

  if exists (select 1 from jsonb_array_elements(p_tasks) e where nullif(e ->> 'batch_id', '') is null) then
    insert into public.task_batches (name, status, created_by, launch_id, orchestrator_config_id)
    select coalesce(e -> 'input_data' ->> '_orchestrator_name', 'Free tier batch'), 'processing', uid,
           nullif(e ->> 'launch_id', '')::uuid, nullif(e -> 'input_data' ->> '_orchestrator_config_id', '')::uuid
    from jsonb_array_elements(p_tasks) with ordinality x(e, o)
    where nullif(e ->> 'batch_id', '') is null
    order by o
    limit 1
    returning id into new_bid;
  end if;

  perform set_config('orchable.free_submit', 'on', true);
  with src as (
    select x.o, x.e, extensions.gen_random_uuid() as id
    from jsonb_array_elements(p_tasks) with ordinality x(e, o)
  ), ins as (
    insert into public.ai_tasks (id, root_task_id, user_id, tier_source, status, batch_id, launch_id, stage_key,
      task_type, step_number, input_data, lo_code, prompt_template_id, sequence, extra)
    select s.id, s.id, uid, 'free_pool', 'plan',
      coalesce(nullif(s.e ->> 'batch_id', '')::uuid, new_bid), nullif(s.e ->> 'launch_id', '')::uuid,
      s.e ->> 'stage_key', coalesce(nullif(s.e ->> 'task_type', ''), 'generic'),
      coalesce((s.e ->> 'step_number')::integer, 1), coalesce(s.e -> 'input_data', '{}'::jsonb), s.e ->> 'lo_code',
      nullif(s.e ->> 'prompt_template_id', ''), (s.e ->> 'sequence')::integer, coalesce(s.e -> 'extra', '{}'::jsonb)
    from src s
    order by s.o
    returning id, batch_id
  )
  select jsonb_agg(ins.id), jsonb_agg(distinct ins.batch_id) into ids, bids from ins;
  perform set_config('orchable.free_submit', '', true);
  return charge || jsonb_build_object('task_ids', ids, 'batch_ids', bids);
end
$$;
