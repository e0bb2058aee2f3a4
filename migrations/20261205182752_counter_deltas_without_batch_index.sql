-- task_batch_counter_deltas_batch_idx is read by no statement: the fold
-- (fold_batch_counters) deletes every delta row and groups them in memory,
-- and nothing else reads the table by batch. Every counted claim and
-- completion wrote an entry to it for nothing (docs/performance.md,
-- thirteenth round).
drop index if exists public.task_batch_counter_deltas_batch_idx;
