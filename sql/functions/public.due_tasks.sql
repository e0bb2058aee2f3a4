------------------------------------------------------------------------------
-- Service-only: find due work across tenants (ids and owners, never
-- content), fairly across users, and re-queue expired leases.
------------------------------------------------------------------------------
create or replace function public.due_tasks(p_limit integer default 500, p_per_user integer default 50) returns jsonb
  language sql stable
  set search_path = ''
as $$
  with recursive users as (
    (select t.user_id from public.ai_tasks t where t.status = 'plan' and t.run_after <= now() order by t.user_id limit 1)
    union all
    select (select t.user_id from public.ai_tasks t
            where t.status = 'plan' and t.run_after <= now() and t.user_id > u.user_id
            order by t.user_id limit 1)
    from users u where u.user_id is not null
  ), picked as (
    select x.id, x.user_id, x.run_after
    from users u
    cross join lateral (
      select t.id, t.user_id, t.run_after from public.ai_tasks t
      where t.user_id = u.user_id and t.status = 'plan' and t.run_after <= now()
        and not exists (select 1 from public.task_batches b where b.id = t.batch_id and b.status in ('paused', 'cancelled'))
      order by t.run_after, t.id
      limit greatest(p_per_user, 1)
    ) x
    where u.user_id is not null
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'user_id', user_id) order by run_after), '[]'::jsonb)
  from (select * from picked order by run_after limit greatest(p_limit, 1)) p
$$;
