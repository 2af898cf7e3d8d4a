-- supaqueue 0017: at most `workers` calls run at a queue's target, always (issue #21 item 1;
-- docs/architecture.md, "Concurrency at the target"). A call abandoned at its deadline, or one
-- whose dispatcher was lost, may still run at the target until the platform stops it (the
-- function's wall clock). Its attempt ends at once as before, but its worker stays locked until
-- then (`worker.held_until`), so the retry never runs beside the call it replaces:
-- - queue.target_wall_clock_ms: how long the target's function may run (default 400 s, the paid
--   plan's limit; constraint queue_target_wall_clock_range is the authority for its bounds);
-- - worker.held_until: a locked worker with no lease, freed by the tick at that time;
-- - _hold_worker / _release_held_workers (new); report_and_claim (a report with `_is_complete`
--   not true holds the worker and never chains), _finish_attempt (a claimed lease that expired),
--   _cancel_attempt (a claimed job cancelled), tick (releases held workers before dispatching);
-- - _claimed_job: the claim document carries the call's deadline (`claimed_at + timeout_ms`, the
--   database's clock) and the time left to it, so the dispatcher never starts a call past it.
-- Each redefinition is its latest definition (sql/schema.snapshot.sql) with only that change.

alter table supaqueue.queue
  add column target_wall_clock_ms integer not null default 400000;
alter table supaqueue.queue
  add constraint queue_target_wall_clock_range
    check (target_wall_clock_ms between 1000 and 3600000);

alter table supaqueue.worker add column held_until timestamptz;
-- the tick looks for held workers every second; there are none but after a timeout
create index worker_held_until_idx on supaqueue.worker (held_until) where held_until is not null;

-- The worker of a call that may still be running stays locked until the call cannot be: the
-- request reached the target before the dispatcher abandoned it (at `claimed_at + timeout_ms`
-- at the latest: a proxy drops a request whose client has gone), and the platform stops the
-- target `target_wall_clock_ms` after it arrived.
create function supaqueue._hold_worker(_cj supaqueue.current_job) returns void
language plpgsql security definer set search_path = '' as $$
begin
  update supaqueue.worker w
     set locked = true,
         held_until = greatest(clock_timestamp(),
                               coalesce(_cj.claimed_at, _cj.started_at)
                                 + make_interval(secs => q.timeout_ms / 1000.0))
                      + make_interval(secs => q.target_wall_clock_ms / 1000.0)
    from supaqueue.queue q
   where w.id = _cj.worker and q.id = w.queue;
end
$$;

-- Frees (or, retiring, removes) every held worker whose call can no longer be running.
create function supaqueue._release_held_workers() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  _worker uuid;
  _n integer := 0;
begin
  for _worker in
    select w.id from supaqueue.worker w
     where w.held_until is not null and w.held_until <= clock_timestamp()
     for update skip locked
  loop
    update supaqueue.worker set locked = false, held_until = null
     where id = _worker and not retiring;
    if not found then
      delete from supaqueue.worker where id = _worker;
    end if;
    _n := _n + 1;
  end loop;
  return _n;
end
$$;

create or replace function supaqueue._finish_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) returns uuid[]
language plpgsql security definer set search_path = '' as $$
declare
  -- a claimed lease that expired: the dispatcher was lost, its call may still be running
  _running boolean := _outcome = 'lease_expired' and _cj.claimed_at is not null;
  _queues uuid[];
begin
  _queues := supaqueue._end_attempt(_cj, _outcome, _status_code, _response_excerpt, _error,
                                    _retry_after_seconds, _result, _duration_ms, _running);
  if _running then
    perform supaqueue._hold_worker(_cj);
  end if;
  return _queues;
end
$$;

create or replace function supaqueue._cancel_attempt(_cj supaqueue.current_job) returns uuid
language plpgsql security definer set search_path = '' as $$
declare
  _j supaqueue.job;
begin
  select * into _j from supaqueue.job where id = _cj.job for update;
  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     error, duration_ms)
    values (_j.id, _j.queue, _j.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            'cancelled', 'cancelled by the operator while in progress',
            (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer);
  if _cj.claimed_at is not null then
    -- claimed: the dispatcher may be calling the target; the worker waits until it cannot be
    perform supaqueue._hold_worker(_cj);
  else
    update supaqueue.worker set locked = false where id = _cj.worker and not retiring;
    if not found then
      delete from supaqueue.worker where id = _cj.worker;
    end if;
  end if;
  update supaqueue.job
    set status = 'cancelled', finished_at = now(), updated_at = now(),
        cancelled_by_operator = true, last_error = 'cancelled by the operator'
    where id = _j.id;
  perform supaqueue._cancel_dependents(
    _j.id, format('cancelled: job %s it depends on was cancelled by the operator', _j.id));
  return _j.queue;
end
$$;

create or replace function supaqueue._claimed_job(_cj supaqueue.current_job) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  _deadline timestamptz;
begin
  return (
    select jsonb_build_object(
      'current_job', jsonb_build_object(
        'id', _cj.id, 'worker', _cj.worker, 'job', _cj.job,
        'lease_expires_at', _cj.lease_expires_at, 'claimed_at', _cj.claimed_at,
        -- the call's deadline on the database's clock, and the time left to it now: the
        -- dispatcher counts that from when it sent the claim, so skew cannot make it later
        'deadline', d.deadline,
        'deadline_in_ms', greatest(0, floor(
          extract(epoch from d.deadline - clock_timestamp()) * 1000))::bigint),
      'job', jsonb_build_object(
        'id', j.id, 'queue', j.queue, 'payload', j.payload, 'attempts', j.attempts,
        'dependency_results', coalesce(
          (select jsonb_object_agg(dep.depends_on::text, coalesce(dj.result, 'null'::jsonb))
             from supaqueue.job_dependency dep
             join supaqueue.job dj on dj.id = dep.depends_on
            where dep.job = j.id),
          '{}'::jsonb)),
      'queue', jsonb_build_object(
        'id', q.id, 'name', q.name, 'edge_function_name', q.edge_function_name,
        'method', q.method, 'default_headers', q.default_headers, 'timeout_ms', q.timeout_ms),
      'limits', jsonb_build_object('max_result_bytes', supaqueue.max_result_bytes()))
    from supaqueue.job j
    join supaqueue.queue q on q.id = j.queue
    cross join lateral (
      select coalesce(_cj.claimed_at, _cj.started_at)
               + make_interval(secs => q.timeout_ms / 1000.0) as deadline) d
    where j.id = _cj.job
  );
end
$$;

create or replace function supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer DEFAULT NULL::integer, _response_excerpt text DEFAULT NULL::text, _error text DEFAULT NULL::text, _retry_after_seconds numeric DEFAULT NULL::numeric, _result jsonb DEFAULT NULL::jsonb, _duration_ms integer DEFAULT NULL::integer, _chain_jobs integer DEFAULT NULL::integer, _chain_elapsed_ms bigint DEFAULT NULL::bigint) returns jsonb
language plpgsql security definer set search_path = '' set enable_seqscan = off as $$
declare
  _cj supaqueue.current_job;
  _next_cj supaqueue.current_job;
  _chain boolean := _chain_jobs is not null and _chain_elapsed_ms is not null;
  -- not complete: the dispatcher abandoned the call (deadline, lost connection, cut answer), so
  -- it may still be running at the target; its worker is held, and no next call is chained on it
  _running boolean := _is_complete is not true;
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
    _result, _duration_ms, _chain or _running);

  if _running then
    perform supaqueue._hold_worker(_cj);
  elsif _chain then
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

create or replace function supaqueue.tick() returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  _cj supaqueue.current_job;
  _queues uuid[] := '{}';
  _queue uuid;
  _q record;
  _expired integer := 0;
  _dispatched integer := 0;
  _pruned integer := 0;
  _n integer;
begin
  perform supaqueue.enqueue_due_schedules();

  for _cj in
    delete from supaqueue.current_job
      where id in (select c.id from supaqueue.current_job c
                    where c.lease_expires_at < clock_timestamp()
                    order by c.lease_expires_at limit 1000
                    for update skip locked)
      returning *
  loop
    _queues := _queues || supaqueue._finish_attempt(
      _cj, 'lease_expired', null, null,
      format('lease expired at %s without a report from the dispatcher', _cj.lease_expires_at),
      null, null, null);
    _expired := _expired + 1;
  end loop;

  -- workers whose abandoned call can no longer be running become free for the loop below
  perform supaqueue._release_held_workers();

  for _queue in
    select q.id from supaqueue.queue q
      where not q.paused and q.operator_paused_at is null
        and exists (select 1 from supaqueue.worker w
                     where w.queue = q.id and not w.locked and not w.retiring)
  loop
    -- one queue's failure (say, a broken Vault entry) must not stop the others or the sweep
    begin
      _dispatched := _dispatched + supaqueue.dispatch(_queue);
    exception when others then
      raise warning 'supaqueue.tick: dispatch of queue % failed: %', _queue, sqlerrm;
    end;
  end loop;

  for _q in select id, retention_seconds from supaqueue.queue where retention_seconds is not null
  loop
    -- A finished job is kept while a dependent still waits: its result goes into that dispatch.
    delete from supaqueue.job dead
      where dead.finished_at is not null
        and dead.id in (
        select j.id from supaqueue.job j
          where j.queue = _q.id and j.finished_at is not null
            and j.finished_at < now() - make_interval(secs => _q.retention_seconds)
            and not exists (
              select 1 from supaqueue.job_dependency d
                join supaqueue.job dj on dj.id = d.job
               where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
          order by j.finished_at
          limit 5000);
    get diagnostics _n = row_count;
    _pruned := _pruned + _n;
  end loop;

  return jsonb_build_object('expired', _expired, 'dispatched', _dispatched, 'pruned', _pruned);
end
$$;

select supaqueue.apply_privileges();
