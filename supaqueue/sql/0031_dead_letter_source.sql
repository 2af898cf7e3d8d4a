-- supaqueue 0031: a dead letter says where it came from: `job.source` 'dead_letter' and
-- `source_name` the queue of the job that failed (they showed `sql`, the trigger's connection).
-- NOT VALID: every existing row satisfies the narrower check it replaces, and a validating scan of
-- a large job table would hold the migration's lock for nothing.
alter table supaqueue.job drop constraint job_source_known;
alter table supaqueue.job add constraint job_source_known
  check (source in ('sql', 'api', 'trigger', 'schedule', 'dead_letter')) not valid;
