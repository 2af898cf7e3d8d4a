-- Statements of the cron upkeep run by the migrations resource on every `pulumi up`
-- (the functions are in sql/0009_faults.sql).

-- name: drift_known
select to_regprocedure('supaqueue.cron_drift(text)') is not null;

-- name: drift
select supaqueue.cron_drift();

-- name: reconcile
select supaqueue.reconcile_cron();
