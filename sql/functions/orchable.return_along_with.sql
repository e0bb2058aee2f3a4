-- Copies return_along_with fields (or the legacy return-along-with) from the
-- parent's input into a child's input.
create or replace function orchable.return_along_with(parent_input jsonb, cfg jsonb, child_input jsonb) returns jsonb
  language plpgsql immutable
  set search_path = ''
as $$
declare
  keys jsonb := coalesce(cfg -> 'return_along_with', cfg -> 'return-along-with');
  k text;
  out jsonb := child_input;
begin
  if keys is null or jsonb_typeof(keys) <> 'array' or jsonb_typeof(parent_input) <> 'object' then
    return out;
  end if;
  if jsonb_typeof(out) <> 'object' then
    out := jsonb_build_object('result', out);
  end if;
  for k in select jsonb_array_elements_text(keys) loop
    if parent_input ? k then
      out := out || jsonb_build_object(k, parent_input -> k);
    end if;
  end loop;
  return out;
end
$$;
