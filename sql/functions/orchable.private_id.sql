-- A private id for an id taken by someone else (see above). SECURITY
-- DEFINER to read the secret; it returns a hash and nothing else.
create or replace function orchable.private_id(p_owner uuid, p_id text) returns uuid
  language sql stable
  security definer
  set search_path = ''
as $$
  select md5((select value from orchable.secrets where name = 'import_ids') || ':' || p_owner::text || ':' || p_id)::uuid
$$;
