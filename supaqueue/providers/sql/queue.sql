-- Statements of the queue provider. Columns are those of sql/0001_schema.sql; workers are rows
-- of supaqueue.worker managed by supaqueue.set_worker_count (it retires busy workers safely).

-- name: insert_queue
insert into supaqueue.queue (
  name, edge_function_name, method, default_headers, max_attempts, backoff_base_ms,
  backoff_max_ms, backoff_jitter, non_retryable_statuses, timeout_ms, lease_grace_ms,
  rate_limit_per_second, rate_limit_burst, paused, retention_seconds, owner_stack, owner_stack_id,
  dead_letter_queue, target_wall_clock_ms, payload_schema, enqueue_roles, batch_size,
  batch_max_wait_ms, key_from, workers_per_key, rate_limit_per_key, rate_limit_burst_per_key,
  hold_on_retry_after
) values (
  %(name)s, %(edge_function_name)s, %(method)s, %(default_headers)s, %(max_attempts)s,
  %(backoff_base_ms)s, %(backoff_max_ms)s, %(backoff_jitter)s,
  %(non_retryable_statuses)s::integer[],
  %(timeout_ms)s, %(lease_grace_ms)s, %(rate_limit_per_second)s, %(rate_limit_burst)s,
  %(paused)s, %(retention_seconds)s, %(owner_stack)s, %(owner_stack_id)s,
  -- by name (null when there is no such queue: the provider refuses that)
  (select d.id from supaqueue.queue d where d.name = %(dead_letter_queue)s),
  %(target_wall_clock_ms)s,
  %(payload_schema)s,
  %(enqueue_roles)s::text[],
  %(batch_size)s,
  %(batch_max_wait_ms)s,
  %(key_from)s, %(workers_per_key)s, %(rate_limit_per_key)s, %(rate_limit_burst_per_key)s,
  %(hold_on_retry_after)s
)
returning id::text;

-- name: update_queue
update supaqueue.queue set
  name = %(name)s,
  edge_function_name = %(edge_function_name)s,
  method = %(method)s,
  default_headers = %(default_headers)s,
  max_attempts = %(max_attempts)s,
  backoff_base_ms = %(backoff_base_ms)s,
  backoff_max_ms = %(backoff_max_ms)s,
  backoff_jitter = %(backoff_jitter)s,
  non_retryable_statuses =
    %(non_retryable_statuses)s::integer[],
  timeout_ms = %(timeout_ms)s,
  lease_grace_ms = %(lease_grace_ms)s,
  target_wall_clock_ms = %(target_wall_clock_ms)s,
  rate_limit_per_second = %(rate_limit_per_second)s,
  rate_limit_burst = %(rate_limit_burst)s,
  paused = %(paused)s,
  retention_seconds = %(retention_seconds)s,
  dead_letter_queue = (select d.id from supaqueue.queue d where d.name = %(dead_letter_queue)s),
  payload_schema = %(payload_schema)s,
  enqueue_roles = %(enqueue_roles)s::text[],
  batch_size = %(batch_size)s,
  batch_max_wait_ms = %(batch_max_wait_ms)s,
  key_from = %(key_from)s,
  workers_per_key = %(workers_per_key)s,
  rate_limit_per_key = %(rate_limit_per_key)s,
  rate_limit_burst_per_key = %(rate_limit_burst_per_key)s,
  hold_on_retry_after = %(hold_on_retry_after)s,
  -- claims a queue made before ownership records (providers/ownership.py checked the owner)
  owner_stack = %(owner_stack)s,
  owner_stack_id = %(owner_stack_id)s,
  updated_at = now()
where id = %(id)s::uuid
returning id::text;

-- name: set_worker_count
select supaqueue.set_worker_count(%(id)s::uuid, %(workers)s);

-- name: read_queue
select q.id::text, q.name, q.edge_function_name, q.method, q.default_headers, q.max_attempts,
       q.backoff_base_ms, q.backoff_max_ms, q.backoff_jitter, q.non_retryable_statuses,
       q.timeout_ms, q.lease_grace_ms, q.rate_limit_per_second, q.rate_limit_burst, q.paused,
       q.retention_seconds, q.target_wall_clock_ms, q.payload_schema,
       (select d.name from supaqueue.queue d where d.id = q.dead_letter_queue) as dead_letter_queue,
       q.enqueue_roles, q.batch_size, q.batch_max_wait_ms,
       q.key_from, q.workers_per_key, q.rate_limit_per_key, q.rate_limit_burst_per_key,
       q.hold_on_retry_after,
       (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring)::int
         as workers
from supaqueue.queue q
where q.id = %(id)s::uuid;

-- name: find_queue_by_name
select q.id::text, supaqueue.unfinished_job_count(q.id) as unfinished
from supaqueue.queue q
where q.name = %(name)s;

-- name: queue_table_exists
select to_regclass('supaqueue.queue') is not null;

-- name: drop_queue
select supaqueue.drop_queue(%(id)s::uuid, %(discard)s);

-- name: discard_column_exists
-- (sql/0022; an installation owned by a stack of an older version may not have it yet)
select exists (select 1 from pg_catalog.pg_attribute
               where attrelid = pg_catalog.to_regclass('supaqueue.queue')
                 and attname = 'discard_unfinished_on_delete' and not attisdropped);

-- name: record_discard
update supaqueue.queue set discard_unfinished_on_delete = %(discard)s where id = %(id)s::uuid;

-- name: recorded_discard
select (to_jsonb(q) ->> 'discard_unfinished_on_delete')::boolean
from supaqueue.queue q where q.id = %(id)s::uuid;
