------------------------------------------------------------------------------
-- Approval.
------------------------------------------------------------------------------
create or replace function public.approve_task(
  p_task_id uuid,
  p_edited_output jsonb default null,
  p_edit_notes text default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
  set jit = off
as $$
declare
  tid_ tid;
  t public.ai_tasks;
  res jsonb;
  uid uuid := orchable.require_user('approve_task');
begin
  perform orchable.engine_on();
  -- Locked by primary key, then read by row version (orchable.lock_task).
  tid_ := orchable.lock_task(p_task_id, uid);
  if tid_ is null then
    raise exception using errcode = 'PT404', message = format('task %s not found or not visible', p_task_id);
  end if;
  select * into t from public.ai_tasks where ctid = tid_;
  if t.status = 'completed' and t.approved_at is not null then
    return jsonb_build_object('status', 'completed', 'duplicate', true, 'created', 0);
  end if;
  if t.status <> 'generated' then
    raise exception using errcode = 'PT409', message = format('task %s is %s, not awaiting approval', p_task_id, t.status);
  end if;
  update public.ai_tasks set status = 'completed', approved_at = now(), approved_by = (select auth.uid()),
    edited_output_data = p_edited_output, edit_notes = p_edit_notes
  where ctid = tid_ and id = p_task_id
  returning * into t;
  res := orchable.spawn_successors(t, false);
  if res ? 'error' then
    raise exception using errcode = 'PT422', message = res ->> 'error';
  end if;
  return jsonb_build_object('status', 'completed', 'created', (res ->> 'created')::int, 'waiting', (res ->> 'waiting')::int);
end
$$;
