-- supaqueue 0010: the dispatch protocol by reference, and the claim.
-- pg_net carries only references to a lease (current_job id, job id, attempt). The function's first
-- database call claims the lease: one statement verifies, with the database's clock, that it is
-- still current (not ended, not expired, not claimed before, the job still in that attempt),
-- restarts its deadline at claim time, and returns the job, payload, queue settings and dependency
-- results. A dispatch delivered late therefore never calls the target, and no body that goes
-- through pg_net grows with payloads or results. Limits are defined here, once (docs/architecture.md).

alter table supaqueue.current_job add column claimed_at timestamptz;

-- Largest job payload (its JSON text, in bytes), refused at enqueue.
create function supaqueue.max_payload_bytes() returns integer
language sql immutable parallel safe
set search_path = ''
as $$ select 1048576 $$;

-- Largest target answer kept as a job's result; the function reads it from the claim.
create function supaqueue.max_result_bytes() returns integer
language sql immutable parallel safe
set search_path = ''
as $$ select 1048576 $$;

-- Largest sum of dependency results one pipeline step receives (the function holds them in
-- memory, 256 MB on Supabase, while other jobs run beside it). A step over it is refused, final.
create function supaqueue.max_dependency_results_bytes() returns integer
language sql immutable parallel safe
set search_path = ''
as $$ select 16777216 $$;

create or replace function supaqueue.dispatch(_queue uuid) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _q supaqueue.queue;
  _url text;
  _secret text;
  _now timestamptz := clock_timestamp();
  _capacity double precision;
  _tokens double precision;
  _budget integer;
  _job supaqueue.job;
  _worker uuid;
  _cj_id uuid;
  _lease timestamptz;
  _request bigint;
  _body jsonb;
  _n integer := 0;
  _prio integer;
begin
  select * into _q from supaqueue.queue where id = _queue;
  if not found or _q.paused then
    return 0;
  end if;

  -- Not configured yet (the Pulumi program writes it): jobs wait; the tick retries every second.
  select rtrim(u.value, '/') || '/' || coalesce(s.value, 'supaqueue') into _url
    from supaqueue.settings u
    left join supaqueue.settings s on s.key = 'dispatcher_slug'
    where u.key = 'functions_url';
  if _url is null then
    return 0;
  end if;

  if _q.rate_limit_per_second is not null then
    _capacity := greatest(1, coalesce(_q.rate_limit_burst, ceil(_q.rate_limit_per_second)));
    -- Lock the bucket, never the queue row: enqueuers' foreign-key checks on queue stay unblocked.
    -- SKIP LOCKED: while another transaction holds the bucket (it may be a user's transaction
    -- that enqueued and is still open) that one dispatches this queue; the tick retries within a
    -- second. Waiting instead would stall completions and the tick of every queue behind it.
    select least(_capacity,
                 b.tokens + extract(epoch from _now - b.refilled_at) * _q.rate_limit_per_second)
      into _tokens
      from supaqueue.queue_bucket b where b.queue = _queue for update skip locked;
    if not found then
      if exists (select 1 from supaqueue.queue_bucket b where b.queue = _queue) then
        return 0;
      end if;
      insert into supaqueue.queue_bucket (queue, tokens, refilled_at)
        values (_queue, _capacity, _now) on conflict (queue) do nothing;
      select least(_capacity,
                   b.tokens + extract(epoch from _now - b.refilled_at) * _q.rate_limit_per_second)
        into _tokens
        from supaqueue.queue_bucket b where b.queue = _queue for update skip locked;
      if not found then
        return 0;
      end if;
    end if;
    -- a rate far beyond reach (1e10/s) must not overflow the integer budget
    _budget := least(floor(_tokens), 2147483647);
  end if;

  -- The highest priority that has ready jobs. Jobs are probed one priority at a time, so that
  -- `run_at <= now()` bounds each index range: jobs delayed to later (run_at, backoff) are never
  -- read, however many there are. The cost grows with the number of distinct priorities only.
  select j.priority into _prio from supaqueue.job j
    where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
    order by j.priority desc
    limit 1;

  loop
    exit when _budget is not null and _n >= _budget;

    -- Job first, then worker: a worker is only ever locked by a dispatcher that has a job for it.
    loop
      exit when _prio is null;
      select * into _job from supaqueue.job
        where queue = _queue and status = 'pending' and pending_dependencies = 0
          and priority = _prio and run_at <= now()
        order by run_at, id
        limit 1
        for update skip locked;
      exit when found;
      -- nothing due (or everything taken) at this priority: the next lower one
      select j.priority into _prio from supaqueue.job j
        where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
          and j.priority < _prio
        order by j.priority desc
        limit 1;
    end loop;
    exit when _prio is null;

    select w.id into _worker from supaqueue.worker w
      where w.queue = _queue and not w.locked and not w.retiring
      limit 1 for update skip locked;
    exit when _worker is null;

    -- Decrypted only when there is something to send: idle ticks stay cheap.
    if _secret is null then
      select ds.decrypted_secret into _secret
        from vault.decrypted_secrets ds where ds.name = 'supaqueue_secret'
        order by ds.created_at desc limit 1;
      exit when _secret is null;  -- not configured yet, as above
    end if;

    update supaqueue.worker set locked = true where id = _worker;
    update supaqueue.job
      set status = 'in_progress', attempts = attempts + 1, updated_at = now()
      where id = _job.id
      returning * into _job;

    _cj_id := gen_random_uuid();
    _lease := _now + make_interval(secs => (_q.timeout_ms::bigint + _q.lease_grace_ms) / 1000.0);
    -- References only: the function claims the lease and reads the rest from the database, so
    -- what goes through pg_net stays this small whatever the payload and dependency results.
    _body := jsonb_build_object(
      'current_job', jsonb_build_object('id', _cj_id, 'job', _job.id, 'attempt', _job.attempts));

    -- pg_net sends it only if this transaction commits.
    _request := net.http_post(
      url := _url,
      body := _body,
      headers := jsonb_build_object('Content-Type', 'application/json', 'supaqueue-secret', _secret),
      timeout_milliseconds := 5000);

    insert into supaqueue.current_job (id, worker, job, started_at, lease_expires_at, request_id)
      values (_cj_id, _worker, _job.id, _now, _lease, _request);

    _worker := null;
    _n := _n + 1;
  end loop;

  if _budget is not null then
    update supaqueue.queue_bucket
      set tokens = _tokens - _n, refilled_at = _now
      where queue = _queue;
  end if;
  return _n;
end
$$;

-- A payload over the limit fails the whole INSERT statement (enqueue included), naming the limit,
-- never echoing the payload. Statement-level, before the dispatch trigger (_500_…) by name, so a
-- 100k-row INSERT is checked in one pass.
create function supaqueue.tg__job_payload_limit() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  _largest bigint;
begin
  select max(octet_length(n.payload::text)) into _largest from new_rows n;
  if _largest > supaqueue.max_payload_bytes() then
    raise exception 'supaqueue: a job payload is % bytes, over the limit of % bytes',
      _largest, supaqueue.max_payload_bytes()
      using errcode = '54000',
            hint = 'Keep large data in a table or in Storage and put its key in the payload.';
  end if;
  return null;
end
$$;

create trigger _400_job_payload_limit
  after insert on supaqueue.job
  referencing new table as new_rows
  for each statement execute function supaqueue.tg__job_payload_limit();

-- What the function needs to run a claimed attempt: the same document for every way a lease gets
-- claimed (by a pg_net dispatch today; by a worker's report claiming its next job later).
create function supaqueue._claimed_job(_cj supaqueue.current_job) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'current_job', jsonb_build_object(
      'id', _cj.id, 'worker', _cj.worker, 'job', _cj.job,
      'lease_expires_at', _cj.lease_expires_at, 'claimed_at', _cj.claimed_at),
    'job', jsonb_build_object(
      'id', j.id, 'queue', j.queue, 'payload', j.payload, 'attempts', j.attempts,
      'dependency_results', coalesce(
        (select jsonb_object_agg(d.depends_on::text, coalesce(dj.result, 'null'::jsonb))
           from supaqueue.job_dependency d
           join supaqueue.job dj on dj.id = d.depends_on
          where d.job = j.id),
        '{}'::jsonb)),
    'queue', jsonb_build_object(
      'id', q.id, 'name', q.name, 'edge_function_name', q.edge_function_name,
      'method', q.method, 'default_headers', q.default_headers, 'timeout_ms', q.timeout_ms),
    'limits', jsonb_build_object('max_result_bytes', supaqueue.max_result_bytes()))
  from supaqueue.job j
  join supaqueue.queue q on q.id = j.queue
  where j.id = _cj.job
$$;

-- Ends a claimed attempt that the dispatcher cannot run (invalid headers, a payload or dependency
-- results over the limits): a final failure with the reason, never retried, dependents cancelled.
-- Returns false, changing nothing, when the lease is not current or was never claimed.
create function supaqueue.refuse_current_job(cur_job_id uuid, _reason text) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  _cj supaqueue.current_job;
  _queue uuid;
begin
  delete from supaqueue.current_job where id = cur_job_id and claimed_at is not null
    returning * into _cj;
  if not found then
    return false;
  end if;
  foreach _queue in array supaqueue._finish_attempt(
    _cj, 'refused', null, null,
    'refused by the dispatcher: ' || coalesce(_reason, 'no reason given'), null, null, null)
  loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return true;
end
$$;

-- The function's first call for a dispatch. Claims the lease if it is still current: it exists
-- (not ended or reclaimed), has not expired and was not claimed before (by the database's clock,
-- so clock skew in the runtime does not matter), and its job is in_progress in _attempt (when
-- given). The deadline restarts now: timeout + grace from the claim, not from the dispatch.
-- Returns the claimed job (supaqueue._claimed_job), null when the lease is not current (the caller
-- must not call the target), or {"refused": reason} when the job cannot run (ended as refused).
create function supaqueue.claim_current_job(cur_job_id uuid, _attempt integer default null)
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _cj supaqueue.current_job;
  _bytes bigint;
  _reason text;
  _now timestamptz := clock_timestamp();
begin
  update supaqueue.current_job c
     set claimed_at = _now,
         lease_expires_at = _now
           + make_interval(secs => (q.timeout_ms::bigint + q.lease_grace_ms) / 1000.0)
    from supaqueue.job j, supaqueue.queue q
   where c.id = cur_job_id
     and c.claimed_at is null
     and c.lease_expires_at > _now
     and j.id = c.job and j.status = 'in_progress'
     and (_attempt is null or j.attempts = _attempt)
     and q.id = j.queue
  returning c.* into _cj;
  if not found then
    return null;
  end if;
  -- The claim's commit need not wait for the WAL flush: the function's next step is an HTTP
  -- call, not a write. A crash that loses the claim leaves the lease as dispatched (unclaimed,
  -- deadline from the dispatch), and pg_net's queue is lost with it, so nothing claims it again:
  -- at worst the job is retried once more (at-least-once), as after any crash.
  perform set_config('synchronous_commit', 'off', true);

  -- Enqueue refuses large payloads; this also covers a payload updated in place since.
  select octet_length(j.payload::text) into _bytes from supaqueue.job j where j.id = _cj.job;
  if _bytes > supaqueue.max_payload_bytes() then
    _reason := format('the payload is %s bytes, over the limit of %s bytes',
                      _bytes, supaqueue.max_payload_bytes());
  else
    select coalesce(sum(octet_length(dj.result::text)), 0) into _bytes
      from supaqueue.job_dependency d
      join supaqueue.job dj on dj.id = d.depends_on
     where d.job = _cj.job;
    if _bytes > supaqueue.max_dependency_results_bytes() then
      _reason := format('the results of the jobs it depends on total %s bytes, over the limit'
                        ' of %s bytes', _bytes, supaqueue.max_dependency_results_bytes());
    end if;
  end if;
  if _reason is not null then
    perform supaqueue.refuse_current_job(_cj.id, _reason);
    return jsonb_build_object('refused', _reason);
  end if;
  return supaqueue._claimed_job(_cj);
end
$$;

-- Records the ended attempt of a lease that the caller has already deleted, frees (or removes)
-- the worker and moves the job on. Returns the queues that may now dispatch.
-- _outcome 'refused' (the dispatcher could not run the attempt: retrying cannot help) is recorded
-- as a failure and is final; an expired lease that was never claimed says so in its error.
create or replace function supaqueue._finish_attempt(
  _cj supaqueue.current_job,
  _outcome text,
  _status_code integer,
  _response_excerpt text,
  _error text,
  _retry_after_seconds numeric,
  _result jsonb,
  _duration_ms integer
) returns uuid[]
language plpgsql security definer
set search_path = ''
as $$
declare
  _job supaqueue.job;
  _q supaqueue.queue;
  _final boolean;
  _delay_ms double precision;
  _queues uuid[];
  _refused boolean := _outcome = 'refused';
begin
  if _outcome = 'lease_expired' and _cj.claimed_at is null then
    _error := _error || ' (never claimed: the dispatch was not delivered to the function in time)';
  end if;
  select * into _job from supaqueue.job where id = _cj.job for update;
  select * into _q from supaqueue.queue where id = _job.queue;
  _queues := array[_q.id];

  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     status_code, error, duration_ms, response_excerpt)
    values (_job.id, _job.queue, _job.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            case when _refused then 'failure' else _outcome end, _status_code, left(_error, 2000),
            coalesce(_duration_ms,
                     (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer),
            left(_response_excerpt, 2000));

  update supaqueue.worker set locked = false where id = _cj.worker and not retiring;
  if not found then
    delete from supaqueue.worker where id = _cj.worker;  -- retiring: its job was its last
  end if;

  if _outcome = 'success' then
    update supaqueue.job
      set status = 'success', result = _result, finished_at = now(), updated_at = now(),
          last_status_code = _status_code, last_error = null
      where id = _job.id;
    -- Dependents whose last dependency this was become ready.
    if not exists (select 1 from supaqueue.job_dependency d where d.depends_on = _job.id) then
      return _queues;
    end if;
    with released as (
      update supaqueue.job j
        set pending_dependencies = j.pending_dependencies - 1, updated_at = now()
        from supaqueue.job_dependency d
        where d.depends_on = _job.id and j.id = d.job and j.status = 'pending'
        returning j.queue, j.pending_dependencies
    )
    select _queues || coalesce(array_agg(distinct r.queue), '{}')
      into _queues
      from released r where r.pending_dependencies = 0 and r.queue <> _q.id;
    return _queues;
  end if;

  _final := _refused or _job.attempts >= _q.max_attempts
    or (_status_code is not null and _status_code = any (_q.non_retryable_statuses));
  if _final then
    update supaqueue.job
      set status = 'failed', finished_at = now(), updated_at = now(),
          last_status_code = _status_code, last_error = left(_error, 2000)
      where id = _job.id;
    perform supaqueue._cancel_dependents(
      _job.id, format('cancelled: job %s it depends on failed', _job.id));
  else
    _delay_ms := supaqueue.backoff_ms(_q, _job.attempts);
    if _retry_after_seconds is not null then
      _delay_ms := greatest(_delay_ms, _retry_after_seconds * 1000);
    end if;
    update supaqueue.job
      set status = 'pending', run_at = now() + make_interval(secs => _delay_ms / 1000.0),
          updated_at = now(), last_status_code = _status_code, last_error = left(_error, 2000)
      where id = _job.id;
  end if;
  return _queues;
end
$$;

select supaqueue.apply_privileges();
