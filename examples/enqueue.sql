-- One job into the queue named 'emails'. A misspelled or removed name raises SQLSTATE SQ020.
SELECT supaqueue.enqueue('emails', '{"to": "ada@example.com"}') AS job_id \gset

-- Delayed, prioritised, de-duplicated (a second call with the key returns the same job's id).
SELECT supaqueue.enqueue('emails', '{"to": "bob@example.com"}', _run_at => now() + interval '5 minutes',
                         _priority => 10, _dedup_key => 'welcome-bob');

-- With a key (a tenant, a customer): keys share the queue round-robin, and the queue's
-- workers_per_key / rate_limit_per_key limit each one (a queue's key_from sets it from the payload).
SELECT supaqueue.enqueue('emails', '{"to": "kim@example.com"}', _key => 'tenant-42');

-- Many jobs in one statement; the ids come back in the payloads' order.
SELECT supaqueue.enqueue_batch('emails', '[{"to": "eve@example.com"}, {"to": "joe@example.com"}]');

-- A two-step pipeline: step 2 waits for step 1 and receives its result under "dependency_results"
-- (a final failure of step 1 cancels step 2).
WITH step1 AS (SELECT supaqueue.enqueue('emails', '{"to": "ada@example.com", "step": 1}') AS id)
SELECT supaqueue.enqueue('emails', '{"step": 2}', _depends_on => ARRAY[id]) FROM step1;

-- Where a job is: status, attempts, the result (your function's JSON answer), the last error.
SELECT status, attempts, result, last_error FROM supaqueue.get_job(:'job_id');
