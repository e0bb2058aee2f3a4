------------------------------------------------------------------------------
-- Batch control.
------------------------------------------------------------------------------
create or replace function orchable.own_batch(p_batch_id uuid) returns public.task_batches
  language plpgsql volatile
  set search_path = ''
as $$
declare
  b public.task_batches;
begin
  select * into b from public.task_batches where id = p_batch_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = format('batch %s not found or not visible', p_batch_id);
  end if;
  return b;
end
$$;
