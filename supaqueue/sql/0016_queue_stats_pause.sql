-- supaqueue 0016: the view queue_stats shows the operator's run-time pause (0013's
-- operator_paused_at, as queue_figures names it) beside the stack's `paused`. The view's columns
-- of 0004 keep their names and order (readers of `select *` keep working); the new one follows.

create or replace view supaqueue.queue_stats as
select
  q.id as queue,
  q.name,
  q.paused,
  coalesce(c.pending, 0) as pending,
  coalesce(c.in_progress, 0) as in_progress,
  coalesce(c.success, 0) as success,
  coalesce(c.failed, 0) as failed,
  coalesce(c.cancelled, 0) as cancelled,
  now() - (select min(j.created_at) from supaqueue.job j
            where j.queue = q.id and j.status = 'pending') as oldest_pending_age,
  (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring) as workers,
  (select count(*) from supaqueue.worker w where w.queue = q.id and w.locked) as busy_workers,
  coalesce(a.attempts, 0) as attempts_last_minute,
  coalesce(a.failures, 0) as failures_last_minute,
  q.operator_paused_at as paused_by_operator_since
from supaqueue.queue q
left join lateral (
  select
    count(*) filter (where j.status = 'pending') as pending,
    count(*) filter (where j.status = 'in_progress') as in_progress,
    count(*) filter (where j.status = 'success') as success,
    count(*) filter (where j.status = 'failed') as failed,
    count(*) filter (where j.status = 'cancelled') as cancelled
  from supaqueue.job j where j.queue = q.id
) c on true
left join lateral (
  select count(*) as attempts, count(*) filter (where h.outcome <> 'success') as failures
  from supaqueue.job_attempt h
  where h.queue = q.id and h.ended_at > now() - interval '1 minute'
) a on true;

select supaqueue.apply_privileges();
