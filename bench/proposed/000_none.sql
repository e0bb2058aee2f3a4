-- SQL changes proposed for the migrations go here, to be measured with
-- `go run . -proposed …` before they are applied. None is pending: the
-- claim_tasks fix measured here is now in migrations/20261126000300_sql_api.sql.
select 1;
