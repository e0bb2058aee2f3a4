create or replace function public.import_pipeline(p_config jsonb, p_templates jsonb) returns jsonb
  language plpgsql volatile
  security invoker
  set search_path = ''
  set jit = off
as $$
declare
  cid uuid;
  owner uuid := (select auth.uid());
  ids jsonb;
  root text;
  bad text;
  deactivated integer;
  taken text[];
  remap jsonb;
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

  -- Ids another account already holds are replaced by private ones (see the
  -- header); references between the imported templates follow.
  if orchable.config_id_of_other(cid, owner) then
    cid := orchable.private_id(owner, cid::text);
    if orchable.config_id_of_other(cid, owner) then
      raise exception using errcode = '23505', message = format('config id %s is already used by another account', p_config ->> 'id');
    end if;
  end if;
  taken := orchable.template_ids_of_others(array(select e ->> 'id' from jsonb_array_elements(p_templates) e), owner);
  if cardinality(taken) > 0 then
    select jsonb_object_agg(x, orchable.private_id(owner, x)::text || '_' ||
             coalesce((select e ->> 'stage_key' from jsonb_array_elements(p_templates) e where e ->> 'id' = x limit 1), 'stage'))
      into remap
    from unnest(taken) x;
    select jsonb_agg(
             (e || jsonb_build_object('id', coalesce(remap ->> (e ->> 'id'), e ->> 'id')))
             || case when jsonb_typeof(e -> 'next_stage_template_ids') = 'array' then jsonb_build_object(
                  'next_stage_template_ids', (select coalesce(jsonb_agg(coalesce(remap ->> n, n) order by o), '[]'::jsonb)
                                              from jsonb_array_elements_text(e -> 'next_stage_template_ids') with ordinality y(n, o)))
                else '{}'::jsonb end
             order by o)
      into p_templates
    from jsonb_array_elements(p_templates) with ordinality x(e, o);
    if cardinality(orchable.template_ids_of_others(array(select e ->> 'id' from jsonb_array_elements(p_templates) e), owner)) > 0 then
      raise exception using errcode = '23505', message = 'a template id of this import is already used by another account';
    end if;
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
