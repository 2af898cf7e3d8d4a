-- Queries of the operator console (`supaqueue status|jobs|job|retry|cancel|purge|pause|resume|lift-hold|ui`).
-- Each calls the operator API of sql/0013_operator.sql, the one authority for what they do.

-- name: queue_by_name
select id from supaqueue.queue where name = %(name)s

-- name: queue_names
select name from supaqueue.queue order by name

-- name: figures
-- With each queue's next scheduled run (sql/*_hooks.sql), so `status` shows when a schedule fires.
select f.*, s.name as next_schedule, s.next_run_at as next_schedule_at
  from supaqueue.queue_figures(%(window)s::interval) f
  left join lateral (
    select name, next_run_at from supaqueue.schedule
     where queue = f.queue order by next_run_at, name limit 1
  ) s on true

-- name: dispatch_hold
-- Dispatch held because the dispatcher answered HTTP 404 (sql/0018): one row, or none.
select since, reason, returned from supaqueue.dispatch_hold

-- name: queue_holds
-- Queues and keys their target holds (429/503 with Retry-After, sql/0027): per queue with a hold,
-- the queue's hold, and how many keys are held with the reason of the one held longest.
select q.id as queue, h.held_until, h.reason as hold_reason,
       coalesce(k.held_keys, 0) as held_keys, k.key_held_until, k.key_hold_reason
  from supaqueue.queue q
  left join supaqueue.queue_hold h on h.queue = q.id and h.held_until > now()
  left join lateral (
    select count(*) as held_keys, max(qk.held_until) as key_held_until,
           (array_agg(qk.hold_reason order by qk.held_until desc))[1] as key_hold_reason
      from supaqueue.queue_key qk where qk.queue = q.id and qk.held_until > now()
  ) k on true
 where h.queue is not null or k.held_keys > 0

-- name: active_keys
-- Keys with work per queue (functions/75_operator.sql): `status` shows them for a queue with keys.
select q.id as queue, supaqueue.active_key_count(q.id) as active_keys from supaqueue.queue q

-- name: queue_keys
-- The busiest keys of one queue, bounded (functions/75_operator.sql): `supaqueue keys`, the dashboard.
select * from supaqueue.queue_keys(%(queue)s::uuid, %(limit)s)

-- name: series
select queue, bucket, succeeded, failed, cancelled, failed_attempts, depth
  from supaqueue.queue_series(%(window)s::interval, %(bucket_seconds)s)

-- name: list_jobs
select * from supaqueue.list_jobs(
  _queue => %(queue)s::uuid,
  _statuses => %(statuses)s::supaqueue.job_status[],
  _created_after => %(created_after)s::timestamptz,
  _created_before => %(created_before)s::timestamptz,
  _error_contains => %(error)s::text,
  _before_created => %(before_created)s::timestamptz,
  _before_id => %(before_id)s::uuid,
  _limit => %(limit)s)

-- name: job_created_at
select created_at from supaqueue.job where id = %(id)s::uuid

-- name: job_detail
select supaqueue.job_detail(%(id)s::uuid)

-- name: retry_job
select supaqueue.retry_job(%(id)s::uuid)

-- name: retry_failed_jobs
select supaqueue.retry_failed_jobs(%(queue)s::uuid, %(since)s::timestamptz, %(error)s::text,
                                   %(dry_run)s)

-- name: cancel_job
select supaqueue.cancel_job(%(id)s::uuid)

-- name: purge_jobs
select supaqueue.purge_jobs(%(queue)s::uuid, %(statuses)s::supaqueue.job_status[],
                            %(older_than)s::timestamptz, %(dry_run)s)

-- name: pause_queue
select supaqueue.pause_queue(%(queue)s::uuid)

-- name: resume_queue
select supaqueue.resume_queue(%(queue)s::uuid)

-- name: lift_hold
-- End a hold by a Retry-After now (functions/75_operator.sql): the queue's, one key's or every key's.
select supaqueue.lift_hold(%(queue)s::uuid, %(key)s::text, %(all_keys)s)

-- name: retry_after_delayed
-- How many jobs lift_hold would make due now (0033): `supaqueue lift-hold` says it when it asks.
select supaqueue.retry_after_delayed(%(queue)s::uuid, %(key)s::text, %(all_keys)s)

-- name: key_hold
-- One key's hold while it lasts (`supaqueue lift-hold --key` says what it will lift): a row, or none.
select k.held_until, k.hold_reason from supaqueue.queue_key k
 where k.queue = %(queue)s::uuid and k.key = %(key)s and k.held_until > now()

-- name: job_ids_with_prefix
select id::text from supaqueue.job_ids_with_prefix(%(prefix)s, %(limit)s) id

-- name: job_detail_with_runs
-- one statement, one snapshot: the runs line up with the detail's attempt_history
-- payload and result also as Postgres writes them: psycopg's JSON loads them as Python floats,
-- which would show 1e-400 as 0.0 and cut a long decimal
select detail, (detail -> 'payload')::text as payload_text, (detail -> 'result')::text as result_text,
       supaqueue.job_runs(%(id)s::uuid) as runs
from supaqueue.job_detail(%(id)s::uuid) as detail

-- name: cancel_jobs
select supaqueue.cancel_jobs(%(queue)s::uuid, %(statuses)s::supaqueue.job_status[],
                             %(error)s::text, %(created_after)s::timestamptz,
                             %(created_before)s::timestamptz, %(dry_run)s)

-- name: retry_jobs
select supaqueue.retry_jobs(%(queue)s::uuid, %(error)s::text, %(created_after)s::timestamptz,
                            %(created_before)s::timestamptz, %(dry_run)s)

-- name: run_job_now
select supaqueue.run_job_now(%(id)s::uuid)
