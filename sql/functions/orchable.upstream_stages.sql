------------------------------------------------------------------------------
-- Pipeline graph helpers, scoped to what the owner may use.
------------------------------------------------------------------------------

-- The stage keys of every template from which the given template can be
-- reached through next_stage_template_ids, among the templates of the task's
-- owner and of the successor's author (a pipeline is one author's templates;
-- another tenant's template that names ours as its successor is ignored).
--
-- PL/pgSQL, so its plan is kept for the session. As a SQL function (a
-- recursive query is never inlined) it was parsed and planned again in
-- every transaction that closed a barrier: 0.41-0.49 ms of a closing
-- against 0.06-0.09 now (pgbench, one call per transaction from PL/pgSQL,
-- over an empty transaction's latency). A generic plan,
-- as the SQL function's was: left to the plan cache, it chose a custom
-- plan, made again on every call (107 µs a call in a loop, 30 µs with the
-- generic plan).
create or replace function orchable.upstream_stages(p_template_id text, p_owner uuid, p_author uuid) returns text[]
  language plpgsql stable
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
declare
  stages text[];
begin
  with recursive up(id) as (
    select p.id from public.prompt_templates p
    where jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? p_template_id
      and (p.user_id = p_owner or p.user_id = p_author)
    union
    select p.id from up
    join public.prompt_templates p
      on jsonb_typeof(p.next_stage_template_ids) = 'array' and p.next_stage_template_ids ? up.id
    where p.user_id = p_owner or p.user_id = p_author
  )
  select coalesce(array_agg(distinct t.stage_key) filter (where t.stage_key is not null), '{}')
  into stages
  from public.prompt_templates t where t.id in (select id from up);
  return stages;
end
$$;
