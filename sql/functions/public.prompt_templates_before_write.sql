create or replace function public.prompt_templates_before_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.user_id := coalesce(new.user_id, new.created_by, auth.uid());
  else
    -- Ownership does not move with an update.
    new.user_id := old.user_id;
  end if;
  new.created_by := new.user_id;
  new.next_stage_template_ids := coalesce(new.next_stage_template_ids, '[]'::jsonb);
  new.stage_config := coalesce(new.stage_config, '{}'::jsonb);
  new.updated_at := now();
  return new;
end
$$;
