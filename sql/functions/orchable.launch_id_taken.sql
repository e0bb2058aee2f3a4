-- A launch id belongs to the user whose batch first used it. SECURITY
-- DEFINER: it must see other users' batches; it answers one boolean about
-- the given id and reads nothing else.
create or replace function orchable.launch_id_taken(p_launch_id uuid, p_owner uuid) returns boolean
  language sql stable
  security definer
  set search_path = ''
as $$
  select exists (select 1 from public.task_batches b
                 where b.launch_id = p_launch_id and b.created_by is distinct from p_owner)
$$;
