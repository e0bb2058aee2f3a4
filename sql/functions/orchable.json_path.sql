-- Resolves a dot path inside a stage result. A leading `result.` is ignored;
-- `result`, `.` and '' mean the whole value.
create or replace function orchable.json_path(doc jsonb, path text) returns jsonb
  language plpgsql immutable
  set search_path = ''
as $$
declare
  p text := btrim(coalesce(path, ''));
  part text;
  cur jsonb := doc;
begin
  if p in ('', '.', 'result') then
    return doc;
  end if;
  if p like 'result.%' and not (doc ? 'result') then
    p := substr(p, 8);
  end if;
  foreach part in array string_to_array(p, '.') loop
    if part = '' then
      continue;
    end if;
    if jsonb_typeof(cur) = 'object' then
      cur := cur -> part;
    elsif jsonb_typeof(cur) = 'array' and part ~ '^[0-9]+$' then
      cur := cur -> part::int;
    else
      return null;
    end if;
    if cur is null then
      return null;
    end if;
  end loop;
  return cur;
end
$$;
