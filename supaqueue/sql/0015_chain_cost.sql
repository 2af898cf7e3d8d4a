-- supaqueue 0015: cheaper chained dispatch (issue #11, Postgres CPU per job).
-- Postgres CPU per chained job (benchmarks/chain_bench.py: report_and_claim only, fsync on, 0014
-- and 0015 interleaved in one run, medians of 5 rounds of 3,000 jobs, on a loaded 2-core machine):
-- workers 10: 1.13 -> 0.78 ms; workers 50: 1.43 -> 1.03 ms; WAL records 35.4 -> 23.3 per job.
-- End to end (e2e_bench --jobs 3000 --chain on, A/B alternated, 2 runs each): 1.29/1.20 ->
-- 0.98/0.95 ms at workers 10, 1.12/1.11 -> 0.92/0.96 ms at workers 50.
--
-- A chained report no longer frees its worker only to lock it again (two non-HOT updates of a
-- tiny, hot table whose dead versions every free-worker probe then walks through): the worker
-- stays locked while its chain goes on, and is freed once, when the chain ends. The chained lease
-- is inserted already claimed (the claim's UPDATE of a row inserted in the same transaction also
-- re-ran both foreign-key checks); the claim's checks and document are shared with
-- claim_current_job (supaqueue._claim_document). A successful attempt ends its job with one
-- UPDATE … RETURNING instead of SELECT … FOR UPDATE then UPDATE. Fewer statements per call (each
-- costs an executor start): the claim's two size checks, dispatch's queue and free-worker checks,
-- chain_budget's two reads, one statement each; the report's dispatch called as an expression.
-- The selection starts where the priority probe found the first ready entry, so dead entries of
-- taken jobs are walked once per job, not twice. report_and_claim and claim_current_job plan with
-- enable_seqscan off (why: at report_and_claim). The report still commits durably: turning off
-- the wait for the WAL flush saved ~0.1 ms of CPU per job here and nothing measurable end to end
-- (docs/architecture.md, "Chained dispatch").

-- As in 0014 (defaults 50 jobs / 60 s, docs/architecture.md), both rows read in one statement.
create or replace function supaqueue.chain_budget(out max_jobs integer, out max_seconds integer)
language plpgsql stable security definer
set search_path = ''
as $$
begin
  select coalesce(max(s.value::integer) filter (where s.key = 'chain_max_jobs'), 50),
         coalesce(max(s.value::integer) filter (where s.key = 'chain_max_seconds'), 60)
    into max_jobs, max_seconds
    from supaqueue.settings s
   where s.key in ('chain_max_jobs', 'chain_max_seconds');
end
$$;

-- Frees a worker after its (last) job; a retiring one goes: its job was its last.
create function supaqueue._free_worker(_worker uuid) returns void
language plpgsql security definer
set search_path = ''
as $$
begin
  update supaqueue.worker set locked = false where id = _worker and not retiring;
  if not found then
    delete from supaqueue.worker where id = _worker;
  end if;
end
$$;

-- 0010's _finish_attempt with _keep_worker: true leaves the worker locked (its chain goes on, or
-- the caller frees it). Returns the queues that may now dispatch.
create function supaqueue._end_attempt(
  _cj supaqueue.current_job,
  _outcome text,
  _status_code integer,
  _response_excerpt text,
  _error text,
  _retry_after_seconds numeric,
  _result jsonb,
  _duration_ms integer,
  _keep_worker boolean
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
  if _outcome = 'success' then
    -- locks, ends and reads the job in one statement: success needs nothing of it beforehand
    update supaqueue.job
      set status = 'success', result = _result, finished_at = now(), updated_at = now(),
          last_status_code = _status_code, last_error = null
      where id = _cj.job
      returning * into _job;
  else
    select * into _job from supaqueue.job where id = _cj.job for update;
    select * into _q from supaqueue.queue where id = _job.queue;
  end if;
  _queues := array[_job.queue];

  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     status_code, error, duration_ms, response_excerpt)
    values (_job.id, _job.queue, _job.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            case when _refused then 'failure' else _outcome end, _status_code, left(_error, 2000),
            coalesce(_duration_ms,
                     (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer),
            left(_response_excerpt, 2000));

  if not _keep_worker then
    perform supaqueue._free_worker(_cj.worker);
  end if;

  if _outcome = 'success' then
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
      from released r where r.pending_dependencies = 0 and r.queue <> _job.queue;
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

-- As in 0010: records the ended attempt of a lease the caller has already deleted, frees (or
-- removes) the worker and moves the job on.
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
begin
  return supaqueue._end_attempt(_cj, _outcome, _status_code, _response_excerpt, _error,
                                _retry_after_seconds, _result, _duration_ms, false);
end
$$;

-- What claiming a lease returns once it is claimed (0010's checks, in one statement, then
-- _claimed_job): the job, or {"refused": reason} (the attempt then ended as refused) when it
-- cannot run.
create function supaqueue._claim_document(_cj supaqueue.current_job) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _bytes bigint;
  _dependency_bytes bigint;
  _reason text;
begin
  -- Enqueue refuses large payloads; this also covers a payload updated in place since.
  select octet_length(j.payload::text),
         (select coalesce(sum(octet_length(dj.result::text)), 0)
            from supaqueue.job_dependency d
            join supaqueue.job dj on dj.id = d.depends_on
           where d.job = j.id)
    into _bytes, _dependency_bytes
    from supaqueue.job j where j.id = _cj.job;
  if _bytes > supaqueue.max_payload_bytes() then
    _reason := format('the payload is %s bytes, over the limit of %s bytes',
                      _bytes, supaqueue.max_payload_bytes());
  elsif _dependency_bytes > supaqueue.max_dependency_results_bytes() then
    _reason := format('the results of the jobs it depends on total %s bytes, over the limit'
                      ' of %s bytes', _dependency_bytes, supaqueue.max_dependency_results_bytes());
  end if;
  if _reason is not null then
    perform supaqueue.refuse_current_job(_cj.id, _reason);
    return jsonb_build_object('refused', _reason);
  end if;
  return supaqueue._claimed_job(_cj);
end
$$;

-- As in 0010 (the checks and the document now in _claim_document).
create or replace function supaqueue.claim_current_job(cur_job_id uuid, _attempt integer default null)
returns jsonb
language plpgsql security definer
set search_path = ''
set enable_seqscan = off  -- see report_and_claim
as $$
declare
  _cj supaqueue.current_job;
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
  return supaqueue._claim_document(_cj);
end
$$;

-- 0014's dispatch (0010's, 0013's operator pause, the chain mode), with a chain that keeps its
-- worker. Hands free workers of one queue the next ready jobs (priority, then run_at), one pg_net
-- POST each. With _chain_worker: that worker only (locked, its previous job just reported in
-- this transaction, row-locked by the caller), at most one job, leased without pg_net and
-- already claimed.
create or replace function supaqueue._dispatch(_queue uuid, _chain_worker uuid) returns integer
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
  _from_run_at timestamptz;
  _from_id uuid;
begin
  -- Nothing to do when the queue is paused in the stack or by the operator (0013), or, but for
  -- a chain, when every worker is busy (the usual case at saturation, after each report): no job
  -- row gets probed or locked for nothing. One statement: each one a call runs costs more
  -- (executor start) than the lookups it makes here.
  select q.* into _q from supaqueue.queue q
   where q.id = _queue and not q.paused and q.operator_paused_at is null
     and (_chain_worker is not null
          or exists (select 1 from supaqueue.worker w
                      where w.queue = _queue and not w.locked and not w.retiring));
  if not found then
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
  -- The probe also returns where that priority's first ready entry is (_from): the selection
  -- starts there instead of walking again over the entries of jobs taken since the last vacuum
  -- (dead, but kept in job_ready_idx until then: thousands at a busy queue, read twice per job
  -- before 0015). A job that became ready before _from since the probe is taken next time, as
  -- one that became ready just after the selection would be.
  select j.priority, j.run_at, j.id into _prio, _from_run_at, _from_id from supaqueue.job j
    where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
    order by j.priority desc, j.run_at, j.id
    limit 1;

  loop
    exit when _budget is not null and _n >= _budget;

    -- Job first, then worker: a worker is only ever locked by a dispatcher that has a job for it.
    loop
      exit when _prio is null;
      select * into _job from supaqueue.job
        where queue = _queue and status = 'pending' and pending_dependencies = 0
          and priority = _prio and run_at <= now()
          and (run_at, id) >= (_from_run_at, _from_id)
        order by run_at, id
        limit 1
        for update skip locked;
      if found then
        -- the next job of this call is after this one
        _from_run_at := _job.run_at;
        _from_id := _job.id;
        exit;
      end if;
      -- nothing due (or everything taken) at this priority: the next lower one
      select j.priority, j.run_at, j.id into _prio, _from_run_at, _from_id from supaqueue.job j
        where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
          and j.priority < _prio
        order by j.priority desc, j.run_at, j.id
        limit 1;
    end loop;
    exit when _prio is null;

    if _chain_worker is null then
      select w.id into _worker from supaqueue.worker w
        where w.queue = _queue and not w.locked and not w.retiring
        limit 1 for update skip locked;
    else
      -- still locked from the job it just reported, and row-locked by the caller (which checked
      -- that it is not retiring): no write to the worker at all
      _worker := _chain_worker;
    end if;
    exit when _worker is null;

    -- Decrypted only when there is something to send: idle ticks stay cheap.
    if _chain_worker is null and _secret is null then
      select ds.decrypted_secret into _secret
        from vault.decrypted_secrets ds where ds.name = 'supaqueue_secret'
        order by ds.created_at desc limit 1;
      exit when _secret is null;  -- not configured yet, as above
    end if;

    if _chain_worker is null then
      update supaqueue.worker set locked = true where id = _worker;
    end if;
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

    -- A chained lease is claimed as it is taken (claim_current_job's deadline: timeout + grace
    -- from the claim), so no UPDATE of the row just inserted has to follow.
    insert into supaqueue.current_job (id, worker, job, started_at, lease_expires_at, request_id,
                                       claimed_at)
      values (_cj_id, _worker, _job.id, _now, _lease, _request,
              case when _chain_worker is not null then _now end);

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

-- As in 0014 (arguments, result, budget), with a chain that keeps its worker: the attempt ends
-- with the worker still locked; the chain's next job is taken for it (already claimed), or, when
-- the chain ends, the worker is freed (or goes, when retiring) before the queues dispatch.
create or replace function supaqueue.report_and_claim(
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
-- For the plans cached in this session, here and in what it calls: current_job holds a row per
-- busy worker but takes an insert and a delete per job, so right after a vacuum the planner
-- sees it tiny and caches sequential scans for it, whose cost then grows with the dead rows
-- until the next vacuum (measured: +0.13 ms per job after 24k jobs). Every lookup here is by
-- key; tiny tables (queue, worker, settings) read one index page more.
set enable_seqscan = off
as $$
declare
  _cj supaqueue.current_job;
  _next_cj supaqueue.current_job;
  _chain boolean := _chain_jobs is not null and _chain_elapsed_ms is not null;
  _queues uuid[];
  _queue uuid;
  _timeout_ms integer;
  _budget record;
  _next jsonb;
  _dispatched integer;
begin
  -- Deleting the lease claims it: a concurrent duplicate waits here, then finds nothing.
  delete from supaqueue.current_job where id = cur_job_id returning * into _cj;
  if not found then
    return jsonb_build_object('current', false, 'next', null);
  end if;
  _queues := supaqueue._end_attempt(
    _cj,
    case when coalesce(_is_complete and _is_successful, false) then 'success' else 'failure' end,
    _status_code, _response_excerpt, _error,
    -- capped at one year: a larger Retry-After (or NaN/Infinity) would overflow run_at and make
    -- the report itself fail
    case when _retry_after_seconds > 0 then least(_retry_after_seconds, 31536000) end,
    _result, _duration_ms, _chain);

  if _chain then
    _budget := supaqueue.chain_budget();
    -- The worker's queue, the worker row-locked as freeing it would (a concurrent resize waits
    -- for this report, or this report for it and then sees its change). None when the worker
    -- went with a lowered worker count, or is retiring: the chain ends.
    select q.id, q.timeout_ms into _queue, _timeout_ms
      from supaqueue.worker w join supaqueue.queue q on q.id = w.queue
     where w.id = _cj.worker and not w.retiring
       for no key update of w;
    if _queue is not null and _chain_jobs < _budget.max_jobs
       and _chain_elapsed_ms + _timeout_ms <= _budget.max_seconds * 1000
       and supaqueue._dispatch(_queue, _cj.worker) = 1 then
      select c.* into _next_cj from supaqueue.current_job c where c.worker = _cj.worker;
      -- Unlike claim_current_job, the commit waits for the WAL flush: it holds the report.
      _next := supaqueue._claim_document(_next_cj);
    else
      perform supaqueue._free_worker(_cj.worker);
    end if;
  end if;

  foreach _queue in array _queues loop
    -- dispatch(_queue), called as an expression: PERFORM would run it as a query
    _dispatched := supaqueue._dispatch(_queue, null);
  end loop;
  return jsonb_build_object('current', true, 'next', _next);
end
$$;

select supaqueue.apply_privileges();
