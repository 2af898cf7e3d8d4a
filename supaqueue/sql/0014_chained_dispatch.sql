-- supaqueue 0014: chained dispatch (issue #11). A worker is a slot that runs jobs one after
-- another: when the function reports a job, the same database call claims that worker's next
-- ready job (supaqueue.report_and_claim), for as long as the chain budget allows. Only an idle
-- worker, or one whose chain ended, is dispatched again through pg_net. A chained job is chosen,
-- rate-limited and leased exactly like a dispatched one: both go through supaqueue._dispatch.

-- The chain budget (docs/architecture.md, "Chained dispatch"): rows of supaqueue.settings, as
-- integers, checked here so that a bad value is refused when written, naming the key.
alter table supaqueue.settings add constraint settings_chain_max_jobs_valid
  check (key <> 'chain_max_jobs' or (value ~ '^[0-9]{1,4}$' and value::integer <= 1000));
alter table supaqueue.settings add constraint settings_chain_max_seconds_valid
  check (key <> 'chain_max_seconds'
         or (value ~ '^[0-9]{1,3}$' and value::integer between 1 and 120));

-- How long one dispatcher invocation may keep claiming jobs: at most max_jobs jobs (0 turns
-- chaining off), and a next job only while the invocation's age plus that job's timeout stays
-- within max_seconds. Defaults 50 jobs / 60 s; the reasons are in docs/architecture.md.
-- PL/pgSQL, not SQL: it runs once per report, and PL/pgSQL keeps its plans between calls.
create function supaqueue.chain_budget(out max_jobs integer, out max_seconds integer)
language plpgsql stable security definer
set search_path = ''
as $$
begin
  max_jobs := coalesce((select s.value::integer from supaqueue.settings s
                         where s.key = 'chain_max_jobs'), 50);
  max_seconds := coalesce((select s.value::integer from supaqueue.settings s
                            where s.key = 'chain_max_seconds'), 60);
end
$$;

-- 0010's dispatch with 0013's operator pause, and a chain mode. Hands free workers of one queue
-- the next ready jobs (priority, then run_at), one pg_net POST each. With _chain_worker: that worker only (the caller just freed it, in this transaction),
-- at most one job, leased without pg_net: the caller claims it at once.
-- Cost is independent of the backlog: one probe of job_ready_idx and worker_free_idx per job,
-- SKIP LOCKED so that concurrent dispatchers never wait for each other.
create function supaqueue._dispatch(_queue uuid, _chain_worker uuid) returns integer
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
  -- paused in the stack, or by the operator (0013): nothing is dispatched, no chain goes on
  select * into _q from supaqueue.queue where id = _queue;
  if not found or _q.paused or _q.operator_paused_at is not null then
    return 0;
  end if;

  -- Every worker busy (the usual case at saturation, after each report): nothing to do, and no
  -- job row gets probed or locked for nothing.
  if _chain_worker is null and not exists (
       select 1 from supaqueue.worker w where w.queue = _queue and not w.locked and not w.retiring)
  then
    return 0;
  end if;

  if _chain_worker is null then
    -- Not configured yet (the Pulumi program writes it): jobs wait; the tick retries every second.
    select rtrim(u.value, '/') || '/' || coalesce(s.value, 'supaqueue') into _url
      from supaqueue.settings u
      left join supaqueue.settings s on s.key = 'dispatcher_slug'
      where u.key = 'functions_url';
    if _url is null then
      return 0;
    end if;
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
  if _chain_worker is not null then
    _budget := least(coalesce(_budget, 1), 1);
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

    if _chain_worker is null then
      select w.id into _worker from supaqueue.worker w
        where w.queue = _queue and not w.locked and not w.retiring
        limit 1 for update skip locked;
    else
      -- gone (a lowered worker count removed it) or retiring: the chain ends here
      select w.id into _worker from supaqueue.worker w
        where w.id = _chain_worker and w.queue = _queue and not w.locked and not w.retiring
        for update skip locked;
    end if;
    exit when _worker is null;

    -- Decrypted only when there is something to send: idle ticks stay cheap.
    if _chain_worker is null and _secret is null then
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
    _request := null;
    if _chain_worker is null then
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
    end if;

    insert into supaqueue.current_job (id, worker, job, started_at, lease_expires_at, request_id)
      values (_cj_id, _worker, _job.id, _now, _lease, _request);

    _worker := null;
    _n := _n + 1;
  end loop;

  if _q.rate_limit_per_second is not null then
    update supaqueue.queue_bucket
      set tokens = _tokens - _n, refilled_at = _now
      where queue = _queue;
  end if;
  return _n;
end
$$;

-- As in 0010 (the document every claim returns), in PL/pgSQL instead of SQL: it runs once per
-- job, and a SQL function with SET options is planned again on every call (a third of a
-- chained job's database time); PL/pgSQL keeps the plan.
create or replace function supaqueue._claimed_job(_cj supaqueue.current_job) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return (
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
  );
end
$$;

create or replace function supaqueue.dispatch(_queue uuid) returns integer
language plpgsql security definer
set search_path = ''
as $$
begin
  return supaqueue._dispatch(_queue, null);
end
$$;

-- Reports an ended attempt (as end_current_job) and, when _chain_jobs and _chain_elapsed_ms are
-- given (the jobs this invocation has run, its age by its own clock) and the chain budget allows,
-- claims the same worker's next ready job in the same transaction. Returns
-- {"current": false, "next": null} when the lease was no longer current (nothing changed, nothing
-- claimed), else {"current": true, "next": <what claim_current_job returns, or null>}.
create function supaqueue.report_and_claim(
  cur_job_id uuid,
  _is_complete boolean,
  _is_successful boolean,
  _status_code integer default null,
  _response_excerpt text default null,
  _error text default null,
  _retry_after_seconds numeric default null,
  _result jsonb default null,
  _duration_ms integer default null,
  _chain_jobs integer default null,
  _chain_elapsed_ms bigint default null
) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _cj supaqueue.current_job;
  _queues uuid[];
  _queue uuid;
  _timeout_ms integer;
  _budget record;
  _next jsonb;
  _next_id uuid;
  _sync text;
begin
  -- Deleting the lease claims it: a concurrent duplicate waits here, then finds nothing.
  delete from supaqueue.current_job where id = cur_job_id returning * into _cj;
  if not found then
    return jsonb_build_object('current', false, 'next', null);
  end if;
  _queues := supaqueue._finish_attempt(
    _cj,
    case when coalesce(_is_complete and _is_successful, false) then 'success' else 'failure' end,
    _status_code, _response_excerpt, _error,
    -- capped at one year: a larger Retry-After (or NaN/Infinity) would overflow run_at and make
    -- the report itself fail
    case when _retry_after_seconds > 0 then least(_retry_after_seconds, 31536000) end,
    _result, _duration_ms);

  if _chain_jobs is not null and _chain_elapsed_ms is not null then
    _budget := supaqueue.chain_budget();
    -- the worker's queue; none when the worker went with a lowered worker count
    select q.id, q.timeout_ms into _queue, _timeout_ms
      from supaqueue.worker w join supaqueue.queue q on q.id = w.queue
     where w.id = _cj.worker;
    if _queue is not null and _chain_jobs < _budget.max_jobs
       and _chain_elapsed_ms + _timeout_ms <= _budget.max_seconds * 1000
       and supaqueue._dispatch(_queue, _cj.worker) = 1 then
      select c.id into _next_id from supaqueue.current_job c where c.worker = _cj.worker;
      -- The claim turns off the wait for the WAL flush for its transaction (0010); this one also
      -- holds the report, which stays as durable as end_current_job's.
      _sync := current_setting('synchronous_commit');
      _next := supaqueue.claim_current_job(_next_id);
      perform set_config('synchronous_commit', _sync, true);
    end if;
  end if;

  foreach _queue in array _queues loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return jsonb_build_object('current', true, 'next', _next);
end
$$;

-- Kept for callers that report without chaining (older functions during an upgrade, operators).
create or replace function supaqueue.end_current_job(
  cur_job_id uuid,
  _is_complete boolean,
  _is_successful boolean,
  _status_code integer default null,
  _response_excerpt text default null,
  _error text default null,
  _retry_after_seconds numeric default null,
  _result jsonb default null,
  _duration_ms integer default null
) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  return (supaqueue.report_and_claim(cur_job_id, _is_complete, _is_successful, _status_code,
                                     _response_excerpt, _error, _retry_after_seconds, _result,
                                     _duration_ms) ->> 'current')::boolean;
end
$$;

select supaqueue.apply_privileges();
