-- supaqueue 0033: an attempt records the Retry-After its answer gave
-- (`job_attempt.retry_after_seconds`, as the retry used it: > 0, at most one year; null: none).
-- `lift_hold` (functions/75_operator.sql; docs/architecture/dispatch.md, "Backpressure") reads it
-- to make due now the jobs whose retry waits for the target's Retry-After, and only those: a
-- 429/503 without one, a longer backoff, a user's run_at keep their time. Attempts ended before
-- this migration have none (null): their jobs keep their delay. Nullable without a default: a
-- change of the catalogue only, no rewrite of a large history.
alter table supaqueue.job_attempt add column retry_after_seconds numeric;
