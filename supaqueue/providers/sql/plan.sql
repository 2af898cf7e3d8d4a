-- Statements of supaqueue/providers/plan.py: what an `up` or a `destroy` would do to live work,
-- read before anything changes. Read-only. Columns newer than 0007 are read through to_jsonb(q),
-- so a preview of an upgrade (the migrations not applied yet) still reads an older schema.

-- name: queue_table_exists
select pg_catalog.to_regclass('supaqueue.queue') is not null;

-- name: queues_by_name
select q.name, q.id::text, to_jsonb(q) ->> 'owner_stack', to_jsonb(q) ->> 'owner_stack_id',
       (select count(*) from supaqueue.job j where j.queue = q.id and j.status = 'pending'),
       (select count(*) from supaqueue.job j where j.queue = q.id and j.status = 'in_progress'),
       (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring),
       q.max_attempts, q.paused, to_jsonb(q) ->> 'operator_paused_at',
       (to_jsonb(q) ->> 'discard_unfinished_on_delete')::boolean
from supaqueue.queue q
where q.name = any(%(names)s::text[])
order by q.name;

-- name: queues_of_stack
select q.name, q.id::text, to_jsonb(q) ->> 'owner_stack', to_jsonb(q) ->> 'owner_stack_id',
       (select count(*) from supaqueue.job j where j.queue = q.id and j.status = 'pending'),
       (select count(*) from supaqueue.job j where j.queue = q.id and j.status = 'in_progress'),
       (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring),
       q.max_attempts, q.paused, to_jsonb(q) ->> 'operator_paused_at',
       (to_jsonb(q) ->> 'discard_unfinished_on_delete')::boolean
from supaqueue.queue q
where to_jsonb(q) ->> 'owner_stack_id' = %(stack_id)s
   or q.name = any(%(names)s::text[])
order by q.name;

-- name: present
select q.name from supaqueue.queue q
where q.name = any(%(names)s::text[]) and to_jsonb(q) ->> 'owner_stack_id' = %(stack_id)s;

-- name: unowned_unfinished
-- Queues no stack owns (made in SQL) that hold unfinished jobs and do not say they may be
-- discarded: removing supaqueue would drop them.
select q.name, q.id::text, supaqueue.unfinished_job_count(q.id)
from supaqueue.queue q
where to_jsonb(q) ->> 'owner_stack_id' is null
  and not coalesce((to_jsonb(q) ->> 'discard_unfinished_on_delete')::boolean, false)
  and supaqueue.unfinished_job_count(q.id) > 0
order by q.name;

-- name: hooks_exist
select pg_catalog.to_regclass('supaqueue.table_trigger') is not null
   and pg_catalog.to_regclass('supaqueue.schedule') is not null;

-- name: feeders
-- The triggers and schedules that enqueue into the given queues (their foreign keys refuse the
-- queue's removal while they exist).
select 'trigger', t.name, q.name from supaqueue.table_trigger t join supaqueue.queue q on q.id = t.queue
where q.name = any(%(names)s::text[])
union all
select 'schedule', s.name, q.name from supaqueue.schedule s join supaqueue.queue q on q.id = s.queue
where q.name = any(%(names)s::text[])
order by 1, 2;

-- name: exposed_to_lower_max_attempts
-- Unfinished jobs of a queue whose next failure ends them for good under the new max_attempts
-- but would not have under the old one (a pending job's next attempt adds one; a running job's
-- attempt is already counted: supaqueue.end_current_job fails a job when attempts >= max).
select count(*) from supaqueue.job j
where j.queue = %(id)s::uuid
  and j.status in ('pending', 'in_progress')
  and j.attempts + (j.status = 'pending')::int >= %(new)s
  and j.attempts + (j.status = 'pending')::int < %(old)s;

-- name: triggers_off_their_table
-- Table triggers being removed (named, or feeding the stack's queues) whose recorded table is
-- gone: dropped (their delete then skips it) or renamed (their delete refuses; plan.py asks
-- trigger.sql's renamed_to which).
select t.name, t.table_schema, t.table_name
from supaqueue.table_trigger t
where (t.name = any(%(names)s::text[])
       or t.queue in (select q.id from supaqueue.queue q
                      where to_jsonb(q) ->> 'owner_stack_id' = %(stack_id)s))
  and pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', t.table_schema, t.table_name)) is null
order by t.name;

-- name: dead_letter_users
-- Queues that name one of the given queues as their dead-letter queue (sql/0020: its foreign
-- key refuses dropping that queue first).
select q.name, d.name
from supaqueue.queue q
join supaqueue.queue d on d.id = (to_jsonb(q) ->> 'dead_letter_queue')::uuid
where d.name = any(%(names)s::text[])
order by 2, 1;
