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
