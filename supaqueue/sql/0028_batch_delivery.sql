-- supaqueue 0028: batch delivery (issue 26 item 5). A queue may hand its target up to
-- `batch_size` ready jobs in one call (docs/architecture.md, "Batch delivery"): each job keeps
-- its own lease, worker, attempt and outcome; the leases of one call share `current_job.batch`
-- (the id of its first lease), which the dispatcher claims and reports in one statement each.
-- Defaults keep every existing queue at one job per call, as before.

alter table supaqueue.queue add column batch_size integer not null default 1;
alter table supaqueue.queue add column batch_max_wait_ms integer not null default 0;
-- 100: a batch's request carries every payload (1 MiB each at most) and its answer every result,
-- within one Edge Function's memory (256 MB).
alter table supaqueue.queue add constraint queue_batch_size_range
  check (batch_size between 1 and 100);
-- How long ready jobs may wait for a fuller batch: up to 5 minutes.
alter table supaqueue.queue add constraint queue_batch_max_wait_range
  check (batch_max_wait_ms between 0 and 300000);
-- A batch is a JSON array in the request body: GET and DELETE have none.
alter table supaqueue.queue add constraint queue_batch_method
  check (batch_size = 1 or method in ('POST', 'PUT', 'PATCH'));

alter table supaqueue.current_job add column batch uuid;
create index current_job_batch_idx on supaqueue.current_job (batch) where batch is not null;
