-- Statements of the schedule provider (sql/*_cron.sql: the evaluator; sql/*_hooks.sql:
-- supaqueue.schedule, evaluated by supaqueue.tick()).

-- name: evaluator_installed
select pg_catalog.to_regprocedure(
  'supaqueue.cron_next_runs(text, text, integer, timestamp with time zone)') is not null;

-- name: schema_exists
select pg_catalog.to_regnamespace('supaqueue') is not null;

-- name: create_schema
create schema supaqueue;

-- name: next_runs
select supaqueue.cron_next_runs(%(cron)s, %(timezone)s, %(count)s);

-- name: insert_schedule
insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)
values (%(name)s, %(queue_id)s::uuid, %(cron)s, %(timezone)s, %(payload)s,
        (supaqueue.cron_next_runs(%(cron)s, %(timezone)s, 1))[1])
returning id::text;

-- name: update_schedule
-- A new cron or time zone starts over from now; a payload or queue change keeps the next slot.
update supaqueue.schedule set
  name = %(name)s,
  queue = %(queue_id)s::uuid,
  payload = %(payload)s,
  next_run_at = case when cron = %(cron)s and timezone = %(timezone)s then next_run_at
                     else (supaqueue.cron_next_runs(%(cron)s, %(timezone)s, 1))[1] end,
  cron = %(cron)s,
  timezone = %(timezone)s,
  updated_at = now()
where id = %(id)s::uuid
returning id::text;

-- name: read_schedule
select s.name, s.queue::text as queue_id, s.cron, s.timezone, s.payload, s.next_run_at,
       s.last_slot,
       supaqueue.cron_next_runs(s.cron, s.timezone, %(count)s,
                                s.next_run_at - interval '1 microsecond') as next_runs
from supaqueue.schedule s
where s.id = %(id)s::uuid;

-- name: find_schedule_by_name
select id::text from supaqueue.schedule where name = %(name)s;

-- name: schedule_exists
select 1 from supaqueue.schedule where id = %(id)s::uuid;

-- name: registry_exists
select pg_catalog.to_regclass('supaqueue.schedule') is not null;

-- name: delete_schedule
delete from supaqueue.schedule where id = %(id)s::uuid;
