-- The last step of the partial idempotency index (see
-- 20261204183600_partial_key_indexes.sql): every ON CONFLICT now names
-- "where idempotency_key is not null", which the partial index satisfies,
-- so the full constraint can go, and the index takes its name (errors on a
-- duplicate key name it as before).
alter table public.ai_tasks drop constraint ai_tasks_owner_idempotency_key;
alter index public.ai_tasks_owner_idempotency_key_partial rename to ai_tasks_owner_idempotency_key;
