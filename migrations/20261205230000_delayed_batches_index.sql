-- claim_tasks asks, whenever a claim finds fewer due tasks than it may
-- take, whether the caller has a batch with execution_delay_seconds > 0
-- (step 2: one start per delay interval), and walks those batches if so.
-- Through task_batches_created_by_idx that question read every batch the
-- caller had ever launched: 5,000 rows for an owner with 5,000 batches, on
-- every claim that was not full, which is most claims of a queue the engine
-- keeps up with. Few batches have a delay; this index holds only those, so
-- the question reads the caller's delayed batches and nothing else
-- (TestClaimDoesNotReadTheOwnersBatches; docs/performance.md, fifteenth
-- round). The column it filters on is not one a counter fold changes, so
-- the folds' updates of task_batches stay HOT as before.
create index if not exists task_batches_delayed_idx on public.task_batches (created_by)
  where execution_delay_seconds > 0;
