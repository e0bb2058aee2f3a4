------------------------------------------------------------------------------
-- Service-only: find due work across tenants (ids and owners, never
-- content), fairly across users (expired leases are re-queued by
-- requeue_expired_leases).
--
-- The sweeper calls this every few seconds, so it reads about what it
-- returns, however long the queue or the history
-- (TestDueTasksReadsOnlyWhatItReturns):
--   * the owners are found by a skip scan of the runnable index
--     (user_id, run_after, id) where status = 'plan', ordered as that index
--     is, which no other index is: ordered by user_id alone, the planner
--     may walk the owners' created_at index instead and read an owner's
--     newer history to reach their first due task (seen: 40,000 rows read
--     for an owner with 20,000 due tasks and 40,000 completed after them);
--   * a paused or cancelled batch is a scalar filter, not NOT EXISTS: as an
--     anti-join the planner hashed every due task of the owner and sorted
--     them all to keep p_per_user (claim_tasks had the same defect).
--
-- Fair across owners: every owner's first due task comes before any
-- owner's second (then by run_after), so p_limit names as many owners as it
-- can. Ordered by run_after alone, ten owners with 100 older due tasks each
-- filled p_limit 1,000, and an owner with one newer task was never named
-- until their backlogs drained: the sweeper never woke that owner
-- (TestDueTasksNamesEveryOwner).
--
-- Never JIT-compiled (set jit = off, as every function of the SQL API):
-- this statement's estimate (p_per_user unknown when it is planned) is far
-- above jit_above_cost, and PostgreSQL's default JIT then compiled it with
-- inlining and optimization on every sweep: 536 ms of LLVM for a read of
-- 165 buffers (auto_explain, throughput-pipeline). JIT code is not cached
-- between executions, so any engine statement whose estimate crossed the
-- threshold would pay that on every call (TestSQLAPINeverJITCompiled).
------------------------------------------------------------------------------
create or replace function public.due_tasks(p_limit integer default 500, p_per_user integer default 50) returns jsonb
  language sql stable
  set search_path = ''
  set jit = off
as $$
  with recursive users as (
    (select t.user_id from public.ai_tasks t where t.status = 'plan' and t.run_after <= now()
     order by t.user_id, t.run_after, t.id limit 1)
    union all
    select (select t.user_id from public.ai_tasks t
            where t.status = 'plan' and t.run_after <= now() and t.user_id > u.user_id
            order by t.user_id, t.run_after, t.id limit 1)
    from users u where u.user_id is not null
  ), picked as (
    select x.id, x.user_id, x.run_after
    from users u
    cross join lateral (
      select t.id, t.user_id, t.run_after from public.ai_tasks t
      where t.user_id = u.user_id and t.status = 'plan' and t.run_after <= now()
        and (t.batch_id is null or not coalesce((
          select b.status in ('paused', 'cancelled') from public.task_batches b where b.id = t.batch_id), false))
      order by t.run_after, t.id
      limit greatest(p_per_user, 1)
    ) x
    where u.user_id is not null
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', id, 'user_id', user_id) order by run_after), '[]'::jsonb)
  from (
    select n.id, n.user_id, n.run_after from (
      select p.*, row_number() over (partition by p.user_id order by p.run_after, p.id) as nth from picked p
    ) n
    order by n.nth, n.run_after
    limit greatest(p_limit, 1)
  ) p
$$;
