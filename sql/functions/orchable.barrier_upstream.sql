-- The stages a barrier's closing probes after its own feeders' (deps): the
-- stages upstream of the barrier's template (orchable.upstream_stages, for
-- the owner and the template's author), without the barrier's own stage and
-- without deps, which the check has just found finished (probing them again
-- found nothing new: six probes of a closing's 24 in throughput-pipeline).
-- In upstream_stages' order.
create or replace function orchable.barrier_upstream(succ public.prompt_templates, owner uuid, deps text[])
  returns text[]
  language sql stable
  set search_path = ''
as $$
  select coalesce(array_agg(s.stage order by s.o), '{}')
  from unnest(orchable.upstream_stages(succ.id, owner, succ.user_id)) with ordinality s(stage, o)
  where s.stage is distinct from succ.stage_key::text and not (s.stage = any(coalesce(deps, '{}')))
$$;
