create or replace function public.set_engine_limits(
  p_max_split_items integer default null,
  p_max_child_input_bytes bigint default null,
  p_max_depth integer default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  l orchable.engine_limits;
begin
  if coalesce(p_max_split_items, 1) < 1 or coalesce(p_max_child_input_bytes, 1) < 1 or coalesce(p_max_depth, 2) < 2 then
    raise exception using errcode = '22023', message = 'engine limits must be positive (max_depth at least 2)';
  end if;
  update orchable.engine_limits set
    max_split_items = coalesce(p_max_split_items, max_split_items),
    max_child_input_bytes = coalesce(p_max_child_input_bytes, max_child_input_bytes),
    max_depth = coalesce(p_max_depth, max_depth),
    updated_at = now()
  where id
  returning * into l;
  return jsonb_build_object('max_split_items', l.max_split_items, 'max_child_input_bytes', l.max_child_input_bytes,
                            'max_depth', l.max_depth);
end
$$;
