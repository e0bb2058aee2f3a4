create or replace function orchable.recheck_downstream(t public.ai_tasks) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  owner uuid := t.user_id;
  frontier text[];
  nxt text[];
  seen text[] := '{}';
  x public.prompt_templates;
  start public.prompt_templates;
  succ public.prompt_templates;
  sid text;
  cfg jsonb;
  deps text[];
  is_join boolean;
  created int := 0;
  depth int := 0;
  rc int;
begin
  start := orchable.usable_template(t.prompt_template_id, owner);
  frontier := array(select jsonb_array_elements_text(case when jsonb_typeof(start.next_stage_template_ids) = 'array'
                                                          then start.next_stage_template_ids else '[]'::jsonb end));
  while cardinality(frontier) > 0 and depth < 20 loop
    depth := depth + 1;
    nxt := '{}';
    foreach sid in array frontier loop
      continue when sid = any(seen);
      seen := seen || sid;
      x := orchable.usable_template(sid, owner);
      continue when x.id is null;
      for succ in
        select p.* from public.prompt_templates p
        where p.id in (select jsonb_array_elements_text(case when jsonb_typeof(x.next_stage_template_ids) = 'array'
                                                            then x.next_stage_template_ids else '[]'::jsonb end))
          and orchable.template_usable(p, owner)
      loop
        cfg := coalesce(succ.stage_config, '{}'::jsonb);
        deps := array(select jsonb_array_elements_text(case when jsonb_typeof(cfg -> 'dependsOn') = 'array' then cfg -> 'dependsOn' else '[]'::jsonb end));
        is_join := cardinality(deps) > 1 or (cardinality(deps) = 1 and deps[1] is distinct from x.stage_key);
        continue when not is_join and orchable.cardinality(cfg) <> 'N:1';
        if not is_join then
          deps := array[x.stage_key];
        end if;
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
