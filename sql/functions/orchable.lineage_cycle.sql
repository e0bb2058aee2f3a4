------------------------------------------------------------------------------
-- Successor creation, as the parent's owner, with bounds.
------------------------------------------------------------------------------

-- The stages along a task's lineage from the last task that ran p_template
-- (the cycle that brings the lineage back to it), or the last ten when it
-- never ran: for the depth cap's message.
create or replace function orchable.lineage_cycle(t public.ai_tasks, p_template text) returns text
  language sql stable
  set search_path = ''
as $$
  with path as (
    select x.o, coalesce(p.stage_key, p.prompt_template_id, '?') as k, p.prompt_template_id as tid
    from jsonb_array_elements_text(coalesce(t.hierarchy_path, '[]'::jsonb) || to_jsonb(t.id::text)) with ordinality x(id, o)
    join public.ai_tasks p on p.id::text = x.id and p.user_id = t.user_id
  ), start as (
    select coalesce(max(o) filter (where tid = p_template), greatest(max(o) - 9, 1)) as o from path
  )
  select coalesce(string_agg(k, ' → ' order by o), '') from path where o >= (select o from start)
$$;
