-- import_pipeline: writes an imported orchestration bundle (see
-- pipeline.Import) in one transaction: the lab_orchestrator_configs row and
-- one prompt_templates row per stage, inserted or updated in place by id.
--
-- SECURITY INVOKER: it runs as the caller, so RLS decides what it may write.
-- A user can only create rows they own and only update rows they already
-- own; updating someone else's row fails with 42501. Ownership never moves
-- on update (the prompt_templates trigger keeps user_id, and created_by is
-- not in the update list of lab_orchestrator_configs).
--
-- p_config    {id, name, description, steps[, owner]}; owner (a user id) is
--             only read when the caller has no auth.uid() (service_role).
-- p_templates [{id, name, description, template, stage_key, stage_config,
--               next_stage_template_ids, default_ai_settings, input_schema,
--               output_schema, requires_approval, is_active}, ...]
--             organization_code is always the config id.
-- Returns     {config_id, template_ids (in p_templates order),
--              root_template_id (the first template whose stage_config has
--              no dependsOn), deactivated (templates of this config that
--              the import no longer has; set is_active = false)}.
-- Errors: 22023 for a malformed argument, 42501 from RLS.

create or replace function public.import_pipeline(p_config jsonb, p_templates jsonb) returns jsonb
  language plpgsql volatile
  security invoker
  set search_path = ''
as $$
declare
  cid uuid;
  owner uuid := (select auth.uid());
  ids jsonb;
  root text;
  bad text;
  deactivated integer;
begin
  if p_config is null or jsonb_typeof(p_config) <> 'object' then
    raise exception using errcode = '22023', message = 'p_config must be a JSON object';
  end if;
  if coalesce(p_config ->> 'id', '') !~ '^[0-9a-fA-F-]{36}$' then
    raise exception using errcode = '22023', message = 'p_config.id must be a UUID';
  end if;
  cid := (p_config ->> 'id')::uuid;
  if owner is null and coalesce(p_config ->> 'owner', '') ~ '^[0-9a-fA-F-]{36}$' then
    owner := (p_config ->> 'owner')::uuid; -- service_role importing for a user
  end if;
  if owner is null then
    raise exception using errcode = '22023',
      message = 'import_pipeline needs an owner: call it as a signed-in user (or as service_role with p_config.owner)';
  end if;
  if coalesce(btrim(p_config ->> 'name'), '') = '' then
    raise exception using errcode = '22023', message = 'p_config.name is required';
  end if;
  if p_templates is null or jsonb_typeof(p_templates) <> 'array' or jsonb_array_length(p_templates) = 0 then
    raise exception using errcode = '22023', message = 'p_templates must be a non-empty JSON array';
  end if;
  select format('p_templates[%s]: %s', o - 1, case
      when jsonb_typeof(e) <> 'object' then 'must be an object'
      when coalesce(e ->> 'id', '') = '' then 'id is required'
      when e ->> 'template' is null then 'template is required'
      when coalesce(e ->> 'stage_key', '') = '' then 'stage_key is required'
      else 'stage_config must be an object' end)
    into bad
  from jsonb_array_elements(p_templates) with ordinality x(e, o)
  where jsonb_typeof(e) <> 'object' or coalesce(e ->> 'id', '') = '' or e ->> 'template' is null
     or coalesce(e ->> 'stage_key', '') = ''
     or jsonb_typeof(coalesce(e -> 'stage_config', '{}'::jsonb)) <> 'object'
  order by o limit 1;
  if bad is not null then
    raise exception using errcode = '22023', message = bad;
  end if;
  if (select count(distinct e ->> 'id') from jsonb_array_elements(p_templates) e) <> jsonb_array_length(p_templates) then
    raise exception using errcode = '22023', message = 'p_templates has duplicate ids';
  end if;

  insert into public.lab_orchestrator_configs (id, name, description, steps, created_by)
  values (cid, p_config ->> 'name', p_config ->> 'description',
          case when jsonb_typeof(p_config -> 'steps') = 'array' then p_config -> 'steps' else '[]'::jsonb end,
          owner)
  on conflict (id) do update
    set name = excluded.name, description = excluded.description, steps = excluded.steps;

  insert into public.prompt_templates (id, name, description, template, stage_key, stage_config,
    next_stage_template_ids, default_ai_settings, input_schema, output_schema, requires_approval,
    organization_code, is_active, user_id)
  select e ->> 'id', e ->> 'name', e ->> 'description', e ->> 'template', e ->> 'stage_key',
    coalesce(e -> 'stage_config', '{}'::jsonb),
    case when jsonb_typeof(e -> 'next_stage_template_ids') = 'array' then e -> 'next_stage_template_ids' else '[]'::jsonb end,
    case when jsonb_typeof(e -> 'default_ai_settings') = 'object' then e -> 'default_ai_settings' else '{}'::jsonb end,
    nullif(e -> 'input_schema', 'null'::jsonb), nullif(e -> 'output_schema', 'null'::jsonb),
    coalesce((e ->> 'requires_approval')::boolean, false),
    cid::text, coalesce((e ->> 'is_active')::boolean, true), owner
  from jsonb_array_elements(p_templates) with ordinality x(e, o)
  order by o
  on conflict (id) do update
    set name = excluded.name, description = excluded.description, template = excluded.template,
        stage_key = excluded.stage_key, stage_config = excluded.stage_config,
        next_stage_template_ids = excluded.next_stage_template_ids,
        default_ai_settings = excluded.default_ai_settings, input_schema = excluded.input_schema,
        output_schema = excluded.output_schema, requires_approval = excluded.requires_approval,
        organization_code = excluded.organization_code, is_active = excluded.is_active;

  select jsonb_agg(e ->> 'id' order by o) into ids
  from jsonb_array_elements(p_templates) with ordinality x(e, o);

  select e ->> 'id' into root
  from jsonb_array_elements(p_templates) with ordinality x(e, o)
  where coalesce(jsonb_array_length(case when jsonb_typeof(e -> 'stage_config' -> 'dependsOn') = 'array'
                                         then e -> 'stage_config' -> 'dependsOn' end), 0) = 0
  order by o limit 1;

  -- Stages dropped from the bundle: keep the rows (tasks reference them) but
  -- take them out of use. RLS limits this to the caller's own rows.
  update public.prompt_templates t set is_active = false
  where t.organization_code = cid::text and t.is_active
    and not exists (select 1 from jsonb_array_elements(p_templates) e where e ->> 'id' = t.id);
  get diagnostics deactivated = row_count;

  return jsonb_build_object('config_id', cid, 'template_ids', ids, 'root_template_id', root,
                            'deactivated', deactivated);
end
$$;

revoke all on function public.import_pipeline(jsonb, jsonb) from public, anon;
grant execute on function public.import_pipeline(jsonb, jsonb) to authenticated, service_role;
