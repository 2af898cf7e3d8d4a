-- supaqueue functions/97_views.sql: Views.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

CREATE OR REPLACE VIEW supaqueue.queue_stats AS
 SELECT q.id AS queue,
    q.name,
    q.paused,
    COALESCE(c.pending, (0)::bigint) AS pending,
    COALESCE(c.in_progress, (0)::bigint) AS in_progress,
    COALESCE(c.success, (0)::bigint) AS success,
    COALESCE(c.failed, (0)::bigint) AS failed,
    COALESCE(c.cancelled, (0)::bigint) AS cancelled,
    (now() - ( SELECT min(j.created_at) AS min
           FROM supaqueue.job j
          WHERE ((j.queue = q.id) AND (j.status = 'pending'::supaqueue.job_status)))) AS oldest_pending_age,
    ( SELECT count(*) AS count
           FROM supaqueue.worker w
          WHERE ((w.queue = q.id) AND (NOT w.retiring))) AS workers,
    ( SELECT count(*) AS count
           FROM supaqueue.worker w
          WHERE ((w.queue = q.id) AND w.locked)) AS busy_workers,
    COALESCE(a.attempts, (0)::bigint) AS attempts_last_minute,
    COALESCE(a.failures, (0)::bigint) AS failures_last_minute,
    q.operator_paused_at AS paused_by_operator_since,
    qh.held_until,
    qh.hold_reason,
    ( SELECT count(*) AS count
           FROM supaqueue.queue_key k
          WHERE ((k.queue = q.id) AND (k.held_until > now()))) AS held_keys
   FROM (((supaqueue.queue q
     LEFT JOIN LATERAL ( SELECT count(*) FILTER (WHERE (j.status = 'pending'::supaqueue.job_status)) AS pending,
            count(*) FILTER (WHERE (j.status = 'in_progress'::supaqueue.job_status)) AS in_progress,
            count(*) FILTER (WHERE (j.status = 'success'::supaqueue.job_status)) AS success,
            count(*) FILTER (WHERE (j.status = 'failed'::supaqueue.job_status)) AS failed,
            count(*) FILTER (WHERE (j.status = 'cancelled'::supaqueue.job_status)) AS cancelled
           FROM supaqueue.job j
          WHERE (j.queue = q.id)) c ON (true))
     LEFT JOIN LATERAL ( SELECT count(*) AS attempts,
            count(*) FILTER (WHERE (h.outcome <> 'success'::text)) AS failures
           FROM supaqueue.job_attempt h
          WHERE ((h.queue = q.id) AND (h.ended_at > (now() - '00:01:00'::interval)))) a ON (true))
     LEFT JOIN LATERAL ( SELECT qhr.held_until,
            qhr.reason AS hold_reason
           FROM supaqueue.queue_hold qhr
          WHERE ((qhr.queue = q.id) AND (qhr.held_until > now()))) qh ON (true));
