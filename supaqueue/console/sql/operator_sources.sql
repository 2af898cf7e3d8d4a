-- Queries of the operator console for schedules, triggers, job sources, rates and metrics
-- (`supaqueue schedules|triggers|run-schedule|metrics`, the dashboard's Schedules page and its
-- "ok/min"). Each calls the functions of sql/0021_sources_and_metrics.sql.

-- name: schedules
select * from supaqueue.schedule_overview()

-- name: triggers
select * from supaqueue.trigger_overview()

-- name: schedule_by_name
select id from supaqueue.schedule where name = %(name)s

-- name: schedule_names
select name from supaqueue.schedule order by name

-- name: trigger_names
select name from supaqueue.table_trigger order by name

-- name: run_schedule_now
select supaqueue.run_schedule_now(%(id)s::uuid)

-- name: source_jobs
select * from supaqueue.source_jobs(%(source)s, %(name)s, %(limit)s)

-- name: job_source
select source, source_name from supaqueue.job where id = %(id)s::uuid

-- name: rates
select queue, succeeded, failed, succeeded_per_minute, failed_per_minute
  from supaqueue.queue_rates(%(window)s::interval)

-- name: queue_figures
select * from supaqueue.queue_figures(%(window)s::interval)

-- name: database_now
select now() - make_interval(secs => %(settle)s) as now

-- name: metrics_between
select * from supaqueue.metrics_between(%(after)s::timestamptz, %(until)s::timestamptz,
                                        %(bounds)s::double precision[])

-- name: queue_pause_state
select name, paused as paused_by_stack, operator_paused_at as paused_by_operator_since
  from supaqueue.queue where id = %(queue)s::uuid
