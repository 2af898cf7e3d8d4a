-- supaqueue functions/10_values.sql: Limits, defaults and small pure helpers the other files use.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- The end of an attempt's lease: the target's timeout, then the grace for the function's report
-- (queue.timeout_ms + queue.lease_grace_ms), from when the lease is taken or claimed. The one
-- place this rule is written. Plain SQL, STABLE (as timestamptz + interval is) and without a SET
-- clause, so the planner inlines it into its callers (whose search_path is ''); pure and with the
-- caller's rights, so a caller's own search_path can only affect that caller.
CREATE OR REPLACE FUNCTION supaqueue._lease_deadline(_from timestamp with time zone, _timeout_ms integer, _grace_ms integer) RETURNS timestamp with time zone
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select _from + make_interval(secs => (_timeout_ms::bigint + _grace_ms) / 1000.0)
$$;

-- Every 4xx except 408 (timeout) and 429 (rate limited): retrying cannot change the answer.
CREATE OR REPLACE FUNCTION supaqueue.default_non_retryable_statuses() RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select array(select s from pg_catalog.generate_series(400, 499) s where s not in (408, 429))
$$;

-- Delay before retry number _attempts + 1: exponential from the base, jittered, capped.
CREATE OR REPLACE FUNCTION supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) RETURNS double precision
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select least(
    _q.backoff_max_ms::double precision,
    least(_q.backoff_base_ms * power(2::double precision, least(greatest(_attempts - 1, 0), 60)),
          _q.backoff_max_ms::double precision)
      * (1 + _q.backoff_jitter * (2 * random() - 1)))
$$;

-- The chain budget: settings chain_max_jobs / chain_max_seconds, else 50 jobs / 60 s
-- (docs/architecture.md, "Chained dispatch"), both rows read in one statement.
CREATE OR REPLACE FUNCTION supaqueue.chain_budget(OUT max_jobs integer, OUT max_seconds integer) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select coalesce(max(s.value::integer) filter (where s.key = 'chain_max_jobs'), 50),
         coalesce(max(s.value::integer) filter (where s.key = 'chain_max_seconds'), 60)
    into max_jobs, max_seconds
    from supaqueue.settings s
   where s.key in ('chain_max_jobs', 'chain_max_seconds');
end
$$;

-- 1 ---------------------------------------------------------------------------------------------
-- The largest dedup key, in bytes of its text (the one authority; constraint job_dedup_key_size).
-- A btree entry holds at most ~2,700 bytes (a third of a page) with the queue id; 1 KiB leaves
-- room and is far above any natural key (schedules use 'schedule:<name ≤ 40>:<slot>').
CREATE OR REPLACE FUNCTION supaqueue.max_dedup_key_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1024 $$;

-- Largest sum of dependency results one pipeline step receives (the function holds them in
-- memory, 256 MB on Supabase, while other jobs run beside it). A step over it is refused, final.
CREATE OR REPLACE FUNCTION supaqueue.max_dependency_results_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 16777216 $$;

-- Largest job payload (its JSON text, in bytes), refused at enqueue.
CREATE OR REPLACE FUNCTION supaqueue.max_payload_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1048576 $$;

-- Largest target answer kept as a job's result; the function reads it from the claim.
CREATE OR REPLACE FUNCTION supaqueue.max_result_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1048576 $$;

-- Longest hold a Retry-After may put on a queue or key (0027, docs/architecture.md,
-- "Backpressure"): one hour. A hold stops every job of the queue (or key), not only the one
-- answered, so a Retry-After far off (a date a year away, a wrong value) must not stop it for
-- longer; after an hour the jobs ready then ask the target again, and a target still busy holds
-- it again.
-- The answered job's own retry keeps the whole Retry-After (capped at one year) as before.
CREATE OR REPLACE FUNCTION supaqueue.max_hold_seconds() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 3600 $$;

-- Raised by a job constraint instead of its bare "violates check constraint": the message names
-- the field and what to do, never echoes the row (a payload or a key of a megabyte). Called only
-- when the constraint's own test failed (the OR before it is evaluated first), so it costs
-- nothing on a good row. Not internal (no `_`): service_role's INSERT needs EXECUTE on it.
CREATE OR REPLACE FUNCTION supaqueue.refuse_job_value(_constraint text, _message text, _hint text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  raise exception '%', _message
    using errcode = 'check_violation', constraint = _constraint, table = 'job',
          schema = 'supaqueue', hint = _hint;
end
$$;
