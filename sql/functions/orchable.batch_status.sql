------------------------------------------------------------------------------
-- A batch's status from exact task counts (the fold's rule, applied to a
-- recount instead of the folded counters): paused and cancelled stay; a
-- batch whose tasks are all finished is failed when any failed (or was
-- cancelled), else completed; a batch with work started or finished is
-- processing; otherwise it keeps what launch wrote (pending or processing).
------------------------------------------------------------------------------
create or replace function orchable.batch_status(p_stored text, p_total bigint, p_pending bigint,
                                                 p_processing bigint, p_completed bigint, p_failed bigint) returns text
  -- No SET clause, so the planner can inline it (it reads no tables).
  language sql immutable
as $$
  select case
    when p_stored in ('paused', 'cancelled') then p_stored
    when p_total > 0 and p_pending = 0 and p_processing = 0 then
      case when p_failed > 0 then 'failed' else 'completed' end
    when p_processing > 0 or p_completed > 0 or p_failed > 0 then 'processing'
    when p_stored = 'pending' then 'pending'
    else 'processing' end
$$;
