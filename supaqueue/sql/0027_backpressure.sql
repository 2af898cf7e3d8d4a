-- supaqueue 0027: backpressure (issue 26 item 3). A target that answers 429 or 503 with
-- Retry-After may hold the job's key (`hold_on_retry_after = 'key'`: supaqueue.queue_key of
-- 0026) or the whole queue ('queue') until then, instead of delaying only that job's retry while
-- its siblings hit the same wall. The default, 'job', is the behaviour before 0027: an upgrade
-- changes nothing. docs/architecture.md, "Backpressure".

alter table supaqueue.queue add column hold_on_retry_after text not null default 'job';
-- The one authority for the values (supaqueue/providers/queue/spec.py mirrors them so that
-- preview names the field; tests/engine/test_queue_limits.py compares).
alter table supaqueue.queue add constraint queue_hold_on_retry_after_known
  check (hold_on_retry_after in ('job', 'key', 'queue'));

-- A queue held by its target ('queue'; 'key' for a job without a key): no dispatch of its jobs
-- (chained claims included) while `held_until > now()`. A table of its own, never the queue
-- row: dispatch must not write the queue (enqueuers' foreign-key checks lock it FOR KEY SHARE).
-- A row past its time holds nothing; the tick deletes it.
create table supaqueue.queue_hold (
  queue uuid primary key references supaqueue.queue (id) on delete cascade,
  -- when the hold began (a later answer that extends it keeps this)
  since timestamptz not null default now(),
  held_until timestamptz not null,
  -- the answer that set held_until: status, Retry-After, job
  reason text not null
);
