-- The id of a task the engine makes from a parent: the parent's first 48
-- bits, then a random version 4 UUID's other 80 (its version and variant
-- bits and 74 random ones). A lineage's tasks (a root's, since each child
-- keeps its parent's prefix) lie together in the claim's (run_after, id)
-- order, so a split's siblings, made in one transaction, are claimed
-- together and their barrier is checked by one completion instead of
-- several (docs/performance.md, twenty-third round).
--
-- The prefix tells nothing new: only the owner reads the rows, and the
-- parent's id is theirs. The 74 random bits keep another tenant from
-- taking a child's id first (ids are unique across tenants); see
-- docs/threat-model.md.
create or replace function orchable.child_id(parent uuid) returns uuid
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql volatile
as $$
  select (left(parent::text, 14) || substr(extensions.gen_random_uuid()::text, 15))::uuid
$$;
