-- supaqueue 0013: the operator API (retry, cancel, purge, pause/resume, figures, job list and
-- detail). The CLI (`supaqueue status|jobs|job|retry|cancel|purge|pause|resume`) and the dashboard
-- call only these functions; each keeps the engine's invariants (worker locks, leases,
-- dependents, attempt history) under concurrency.

-- A job the operator cancelled is not brought back when a job it depends on is retried.
alter table supaqueue.job add column cancelled_by_operator boolean not null default false;

-- The operator's run-time pause, kept apart from the stack's declared `paused` (which the Pulumi
-- program writes): `pulumi up` never undoes it, and a queue dispatches only when neither is set.
alter table supaqueue.queue add column operator_paused_at timestamptz;

-- An in-progress attempt that the operator cancelled is recorded in the history as such.
-- NOT VALID: existing rows met the stricter check already, and validating would scan the whole
-- history under this migration's exclusive lock.
alter table supaqueue.job_attempt drop constraint job_attempt_outcome_known;
alter table supaqueue.job_attempt add constraint job_attempt_outcome_known
  check (outcome in ('success', 'failure', 'lease_expired', 'cancelled')) not valid;

-- The job list pages by keyset, newest first, one bounded range per queue and state of this
-- index; queue_figures counts unfinished jobs from it with index-only scans. It replaces
-- job_unfinished_idx (queue, created_at) of unfinished jobs, which it serves as well, so the
-- engine keeps as many indexes to write as before.
create index job_queue_status_created_idx
  on supaqueue.job (queue, status, created_at desc, id desc);
drop index supaqueue.job_unfinished_idx;

-- 0010's dispatch (references only, claimed by the function), changed in one place: a queue
-- paused by the operator does not dispatch.
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
  if not found or _q.paused or _q.operator_paused_at is not null then
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

-- = 0012's tick (schedules first) with two changes: an operator-paused queue is skipped, and the
-- retention prune re-checks `finished_at` on the row it deletes. A job retried while the prune
-- waited for its lock is pending again and must be kept (the `id in (…)` subquery alone would
-- still match the row's old, finished version).
create or replace function supaqueue.tick() returns jsonb
language plpgsql security definer
set search_path = ''
as $$
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

-- Brings back, transitively, the dependents of _job that were cancelled because a job they
-- depend on did not succeed (never those the operator cancelled), once none of their other
-- dependencies has failed or been cancelled. Each counts its unfinished dependencies again.
create function supaqueue._revive_dependents(_job uuid) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _frontier uuid[] := array[_job];
  _total integer := 0;
begin
  loop
    with revived as (
      update supaqueue.job j
        set status = 'pending', finished_at = null, updated_at = now(), run_at = now(),
            attempts = 0, result = null, last_error = null, last_status_code = null,
            pending_dependencies = (
              select count(*) from supaqueue.job_dependency d
                join supaqueue.job dj on dj.id = d.depends_on
               where d.job = j.id and dj.status <> 'success')
        where j.status = 'cancelled' and not j.cancelled_by_operator
          and exists (select 1 from supaqueue.job_dependency d
                       where d.job = j.id and d.depends_on = any (_frontier))
          and not exists (select 1 from supaqueue.job_dependency d
                            join supaqueue.job dj on dj.id = d.depends_on
                           where d.job = j.id and dj.status in ('failed', 'cancelled'))
        returning j.id
    )
    select coalesce(array_agg(id), '{}') into _frontier from revived;
    exit when cardinality(_frontier) = 0;
    _total := _total + cardinality(_frontier);
  end loop;
  return _total;
end
$$;

-- Retries one failed or cancelled job with fresh attempts (its attempt history is kept), and
-- brings back the dependents its failure cancelled; the caller dispatches. Returns false,
-- changing nothing, when the job is not failed or cancelled (say, another operator retried it
-- first), or when it cannot be retried and not _strict; with _strict, says why in an error.
create function supaqueue._retry_job(_job uuid, _strict boolean) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  _j supaqueue.job;
  _blocker uuid;
  _holder uuid;
begin
  select * into _j from supaqueue.job where id = _job for update;
  if not found then
    raise exception 'supaqueue.retry_job: there is no job with id %', _job using errcode = 'SQ005';
  end if;
  if _j.status not in ('failed', 'cancelled') then
    return false;
  end if;
  select d.depends_on into _blocker from supaqueue.job_dependency d
    join supaqueue.job dj on dj.id = d.depends_on
   where d.job = _job and dj.status in ('failed', 'cancelled') limit 1;
  if found then
    if not _strict then
      return false;
    end if;
    raise exception 'supaqueue.retry_job: job % depends on job %, which did not succeed', _job,
      _blocker using errcode = 'SQ006',
      hint = format('Retry job %s instead: its cancelled dependents come back with it.', _blocker);
  end if;
  if _j.dedup_key is not null then
    select id into _holder from supaqueue.job
     where queue = _j.queue and dedup_key = _j.dedup_key and status in ('pending', 'in_progress');
    if found then
      if not _strict then
        return false;
      end if;
      raise exception 'supaqueue.retry_job: job %''s dedup key is held by unfinished job %',
        _job, _holder using errcode = 'SQ007';
    end if;
  end if;
  update supaqueue.job
    set status = 'pending', finished_at = null, updated_at = now(), run_at = now(), attempts = 0,
        result = null, cancelled_by_operator = false,
        pending_dependencies = (
          select count(*) from supaqueue.job_dependency d
            join supaqueue.job dj on dj.id = d.depends_on
           where d.job = _job and dj.status <> 'success')
    where id = _job;
  perform supaqueue._revive_dependents(_job);
  return true;
end
$$;

-- Retries one failed or cancelled job (see _retry_job); refuses, saying why, one that cannot be.
create function supaqueue.retry_job(_job uuid) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  if not supaqueue._retry_job(_job, true) then
    return false;
  end if;
  perform supaqueue.dispatch(j.queue) from supaqueue.job j where j.id = _job;
  return true;
end
$$;

-- The failed jobs of a queue that retry_failed_jobs retries (one authority for its dry run too).
create function supaqueue._failed_jobs(
  _queue uuid, _since timestamptz, _error_contains text
) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = 'failed'
     and j.finished_at >= coalesce(_since, '-infinity')
     and (_error_contains is null
          or strpos(lower(coalesce(j.last_error, '')), lower(_error_contains)) > 0)
   order by j.finished_at
$$;

-- Retries every failed job of a queue (optionally only those that failed since _since, or whose
-- last error contains _error_contains, case-insensitively). Jobs whose dedup key is held by an
-- unfinished job are left failed. Returns how many were retried; with _dry_run, how many
-- failed jobs match, changing nothing.
create function supaqueue.retry_failed_jobs(
  _queue uuid,
  _since timestamptz default null,
  _error_contains text default null,
  _dry_run boolean default false
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _id uuid;
  _n integer := 0;
begin
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.retry_failed_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._failed_jobs(_queue, _since, _error_contains);
    return _n;
  end if;
  for _id in select f from supaqueue._failed_jobs(_queue, _since, _error_contains) f loop
    -- not strict: a job whose dedup key is taken (by one retried just before, say) stays failed
    if supaqueue._retry_job(_id, false) then
      _n := _n + 1;
    end if;
  end loop;
  if _n > 0 then
    perform supaqueue.dispatch(_queue);
  end if;
  return _n;
end
$$;

-- Ends the lease _cj (already deleted by the caller) as cancelled by the operator: history row,
-- worker freed (or removed if retiring), job cancelled with its dependents. Returns its queue.
create function supaqueue._cancel_attempt(_cj supaqueue.current_job) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  _j supaqueue.job;
begin
  select * into _j from supaqueue.job where id = _cj.job for update;
  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     error, duration_ms)
    values (_j.id, _j.queue, _j.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            'cancelled', 'cancelled by the operator while in progress',
            (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer);
  update supaqueue.worker set locked = false where id = _cj.worker and not retiring;
  if not found then
    delete from supaqueue.worker where id = _cj.worker;
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

-- Cancels a pending or in-progress job, and (as a failure does) its pending dependents. An
-- in-progress job's lease is taken away, so the dispatcher's late report changes nothing (the
-- call to the target may still complete: its outcome is dropped). Returns false when the job
-- had already finished.
create function supaqueue.cancel_job(_job uuid) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  _cj supaqueue.current_job;
  _j supaqueue.job;
begin
  -- Locks are taken in the order a report takes them (lease, then job), so a cancel and a report
  -- never deadlock. The rare case that needs the other order retries in a subtransaction, which
  -- lets go of the job's lock in between.
  for _try in 1..200 loop
    begin
      -- 1. Claim the lease as a report does; waits for a report in flight, which then wins.
      delete from supaqueue.current_job where job = _job returning * into _cj;
      if found then
        perform supaqueue.dispatch(supaqueue._cancel_attempt(_cj));  -- a worker is free
        return true;
      end if;
      select * into _j from supaqueue.job where id = _job for update;
      if not found then
        raise exception 'supaqueue.cancel_job: there is no job with id %', _job
          using errcode = 'SQ005';
      end if;
      if _j.status = 'pending' then
        update supaqueue.job
          set status = 'cancelled', finished_at = now(), updated_at = now(),
              cancelled_by_operator = true, last_error = 'cancelled by the operator'
          where id = _job;
        perform supaqueue._cancel_dependents(
          _job, format('cancelled: job %s it depends on was cancelled by the operator', _job));
        return true;
      end if;
      if _j.status <> 'in_progress' then
        return false;
      end if;
      -- 2. Dispatched after step 1 looked: its lease is there now, unless a report holds it.
      delete from supaqueue.current_job
        where id in (select c.id from supaqueue.current_job c where c.job = _job
                     for update skip locked)
        returning * into _cj;
      if found then
        perform supaqueue.dispatch(supaqueue._cancel_attempt(_cj));
        return true;
      end if;
      -- A report holds the lease and waits for the job row we hold: give it way and look again.
      raise exception 'retry' using errcode = 'SQ099';
    exception when sqlstate 'SQ099' then
      perform pg_catalog.pg_sleep(0.01);
    end;
  end loop;
  raise exception 'supaqueue.cancel_job: job % kept changing state; try again', _job
    using errcode = '40001';
end
$$;

-- The jobs purge_jobs deletes: finished, in one of _statuses, finished before _older_than, and
-- not waited for by an unfinished dependent (its result goes into that dispatch).
create function supaqueue._purgeable_jobs(
  _queue uuid, _statuses supaqueue.job_status[], _older_than timestamptz
) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = any (_statuses) and j.finished_at is not null
     and j.finished_at < coalesce(_older_than, 'infinity')
     and not exists (
       select 1 from supaqueue.job_dependency d
         join supaqueue.job dj on dj.id = d.job
        where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
$$;

-- Deletes finished jobs of a queue (with their attempt history) in the given states that
-- finished before _older_than, except those another job still waits for. Returns how many were
-- deleted; with _dry_run, how many would be, changing nothing.
create function supaqueue.purge_jobs(
  _queue uuid,
  _statuses supaqueue.job_status[] default array['success', 'failed', 'cancelled']::supaqueue.job_status[],
  _older_than timestamptz default null,
  _dry_run boolean default false
) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  _n bigint;
begin
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.purge_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _statuses is null or cardinality(_statuses) = 0
     or _statuses && array['pending', 'in_progress']::supaqueue.job_status[] then
    raise exception 'supaqueue.purge_jobs: only finished jobs (success, failed, cancelled) can be purged, got %',
      coalesce(_statuses::text, 'null') using errcode = '22023';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._purgeable_jobs(_queue, _statuses, _older_than);
    return _n;
  end if;
  -- finished_at and status are checked again on the deleted row itself: a job retried while
  -- this waited for its lock is pending again and is kept
  delete from supaqueue.job j
    using supaqueue._purgeable_jobs(_queue, _statuses, _older_than) p (id)
    where j.id = p.id and j.finished_at is not null and j.status = any (_statuses);
  get diagnostics _n = row_count;
  return _n;
end
$$;

-- Run-time pause: the queue stops dispatching (jobs in flight finish; new jobs wait). Separate
-- from the stack's declared `paused`, which `pulumi up` sets; see docs/architecture.md.
create function supaqueue.pause_queue(_queue uuid) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _q supaqueue.queue;
begin
  update supaqueue.queue set operator_paused_at = coalesce(operator_paused_at, now())
    where id = _queue returning * into _q;
  if not found then
    raise exception 'supaqueue.pause_queue: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  return jsonb_build_object('queue', _q.id, 'name', _q.name, 'paused_by_stack', _q.paused,
                            'paused_by_operator_since', _q.operator_paused_at);
end
$$;

-- Lifts the operator's pause. A queue the stack declares paused stays paused (the stack is the
-- source of truth for that): the result says so.
create function supaqueue.resume_queue(_queue uuid) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _q supaqueue.queue;
begin
  update supaqueue.queue set operator_paused_at = null where id = _queue returning * into _q;
  if not found then
    raise exception 'supaqueue.resume_queue: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  -- the queue's update trigger has dispatched it already, unless the stack declares it paused
  return jsonb_build_object('queue', _q.id, 'name', _q.name, 'paused_by_stack', _q.paused,
                            'paused_by_operator_since', null);
end
$$;

-- The read functions below set jit = off: their cost estimates (small tables, unknown windows)
-- pass the JIT threshold, and compiling would take ~100x longer than running them.

-- Per-queue figures over the last _window: jobs that succeeded / failed (finally) and attempts,
-- per minute and in total, attempt duration p50/p95, depth, oldest pending age, busy and total
-- workers, rate limit and pause state. Reads only index ranges bounded by the window or by
-- unfinished jobs (index-only scans), so it stays cheap on a large table of finished jobs.
create function supaqueue.queue_figures(_window interval default '1 hour')
returns table (
  queue uuid,
  name text,
  paused_by_stack boolean,
  paused_by_operator_since timestamptz,
  workers integer,
  busy_workers integer,
  rate_limit_per_second double precision,
  pending bigint,
  ready bigint,
  in_progress bigint,
  oldest_pending_age_seconds double precision,
  succeeded bigint,
  failed bigint,
  attempts bigint,
  failed_attempts bigint,
  succeeded_per_minute double precision,
  failed_per_minute double precision,
  attempt_p50_ms double precision,
  attempt_p95_ms double precision
)
language sql stable security definer
set search_path = ''
set jit = off
as $$
  select q.id, q.name, q.paused, q.operator_paused_at,
         w.workers, w.busy, q.rate_limit_per_second,
         u.pending, u.ready, u.in_progress,
         extract(epoch from now() - u.oldest_pending)::double precision,
         f.succeeded, f.failed, a.attempts, a.failures,
         f.succeeded / greatest(extract(epoch from _window) / 60, 1e-9),
         f.failed / greatest(extract(epoch from _window) / 60, 1e-9),
         a.p50, a.p95
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where not wk.retiring)::integer as workers,
             count(*) filter (where wk.locked)::integer as busy
        from supaqueue.worker wk where wk.queue = q.id) w
    cross join lateral (
      select count(*) filter (where j.status = 'pending') as pending,
             count(*) filter (where j.status = 'in_progress') as in_progress,
             min(j.created_at) filter (where j.status = 'pending') as oldest_pending,
             -- job_ready_idx holds exactly the pending jobs without unfinished dependencies
             (select count(*) from supaqueue.job r
               where r.queue = q.id and r.status = 'pending' and r.pending_dependencies = 0
                 and r.run_at <= now()) as ready
        from supaqueue.job j
       where j.queue = q.id and j.status in ('pending', 'in_progress')) u
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null and j.finished_at > now() - _window) f
    cross join lateral (
      select count(*) as attempts,
             count(*) filter (where h.outcome <> 'success') as failures,
             percentile_cont(0.5) within group (order by h.duration_ms) as p50,
             percentile_cont(0.95) within group (order by h.duration_ms) as p95
        from supaqueue.job_attempt h
       where h.queue = q.id and h.ended_at > now() - _window) a
   order by q.name
$$;

-- Per-queue time series for charts, one row per queue and _bucket_seconds bucket of the last
-- _window (empty buckets included): jobs that succeeded, failed and were cancelled in the bucket,
-- attempts that failed, and the depth (unfinished jobs) at the bucket's end. The depth is
-- rebuilt from the jobs unfinished now and those finished within the window (+1 when created,
-- -1 when finished), so it needs no history table and reads the same index ranges as the rest.
create function supaqueue.queue_series(
  _window interval default '1 hour',
  _bucket_seconds integer default 60
) returns table (
  queue uuid,
  bucket timestamptz,
  succeeded bigint,
  failed bigint,
  cancelled bigint,
  failed_attempts bigint,
  depth bigint
)
language plpgsql stable security definer
set search_path = ''
set jit = off
as $$
declare
  _step interval := make_interval(secs => greatest(coalesce(_bucket_seconds, 60), 1));
  _start timestamptz := now() - _window;
  _q uuid;
begin
  -- per queue, so that each part is one range of its indexes
  for _q in select q.id from supaqueue.queue q order by q.id loop
    return query
      with finished as (
        select j.created_at, j.finished_at, j.status from supaqueue.job j
         where j.queue = _q and j.finished_at is not null and j.finished_at > _start
      ), changes as (
        select pg_catalog.date_bin(_step, e.at, 'epoch'::timestamptz) as bucket,
               sum(e.delta) as delta
          from (
            select greatest(j.created_at, _start) as at, 1 as delta from supaqueue.job j
             where j.queue = _q and j.status in ('pending', 'in_progress')
            union all
            select v.at, v.delta from finished f
              cross join lateral (values (greatest(f.created_at, _start), 1),
                                         (f.finished_at, -1)) v (at, delta)
          ) e
         group by 1
      ), ended as (
        select pg_catalog.date_bin(_step, f.finished_at, 'epoch'::timestamptz) as bucket,
               count(*) filter (where f.status = 'success') as succeeded,
               count(*) filter (where f.status = 'failed') as failed,
               count(*) filter (where f.status = 'cancelled') as cancelled
          from finished f group by 1
      ), tries as (
        select pg_catalog.date_bin(_step, h.ended_at, 'epoch'::timestamptz) as bucket,
               count(*) as failed_attempts
          from supaqueue.job_attempt h
         where h.queue = _q and h.ended_at > _start and h.outcome <> 'success'
         group by 1
      )
      select _q, b.bucket, coalesce(e.succeeded, 0), coalesce(e.failed, 0),
             coalesce(e.cancelled, 0), coalesce(t.failed_attempts, 0),
             (sum(coalesce(c.delta, 0)) over (order by b.bucket))::bigint
        from generate_series(pg_catalog.date_bin(_step, _start, 'epoch'::timestamptz),
                             pg_catalog.date_bin(_step, now(), 'epoch'::timestamptz),
                             _step) b (bucket)
        left join changes c on c.bucket = b.bucket
        left join ended e on e.bucket = b.bucket
        left join tries t on t.bucket = b.bucket
       order by b.bucket;
  end loop;
end
$$;

-- One page of the job list, newest first (created_at, then id), with optional filters. Keyset
-- paging: pass the last row's created_at and id as _before_created / _before_id for the next
-- page. Each queue and state is read as one bounded range of job_queue_status_created_idx, so a
-- page costs about _limit rows per queue and state, at any table size;
-- only _error_contains filters rows after reading them (those of unsuccessful jobs only).
create function supaqueue.list_jobs(
  _queue uuid default null,
  _statuses supaqueue.job_status[] default null,
  _created_after timestamptz default null,
  _created_before timestamptz default null,
  _error_contains text default null,
  _before_created timestamptz default null,
  _before_id uuid default null,
  _limit integer default 50
) returns table (
  id uuid,
  queue uuid,
  queue_name text,
  status supaqueue.job_status,
  attempts integer,
  priority integer,
  run_at timestamptz,
  created_at timestamptz,
  finished_at timestamptz,
  pending_dependencies integer,
  last_status_code integer,
  last_error text
)
language plpgsql stable security definer
set search_path = ''
set jit = off
as $$
declare
  _states supaqueue.job_status[] := coalesce(
    _statuses, enum_range(null::supaqueue.job_status));
  _c timestamptz := least(coalesce(_before_created, 'infinity'),
                          coalesce(_created_before, 'infinity'));
  -- with _c from _created_before, the smallest uuid makes the bound strict (created before it)
  _i uuid := case when _before_created < coalesce(_created_before, 'infinity')
                  then coalesce(_before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
                  when _created_before is not null
                  then '00000000-0000-0000-0000-000000000000'
                  else 'ffffffff-ffff-ffff-ffff-ffffffffffff' end;
  _from timestamptz := coalesce(_created_after, '-infinity');
  _n integer := least(greatest(coalesce(_limit, 50), 1), 1000);
  _needle text := lower(_error_contains);
begin
  if _needle is not null then
    -- a successful job has no last_error (its success clears it), so a search by error text
    -- never reads the (usually largest) range of successful jobs
    _states := array_remove(_states, 'success');
  end if;
  if _queue is null then
    return query
      select j.id, j.queue, q.name, j.status, j.attempts, j.priority, j.run_at, j.created_at,
             j.finished_at, j.pending_dependencies, j.last_status_code, left(j.last_error, 300)
        from supaqueue.queue qq
        cross join unnest(_states) s(state)
        cross join lateral (
          select * from supaqueue.job x
           where x.queue = qq.id and x.status = s.state and (x.created_at, x.id) < (_c, _i)
             and x.created_at >= _from
             and (_needle is null or strpos(lower(coalesce(x.last_error, '')), _needle) > 0)
           order by x.created_at desc, x.id desc
           limit _n) j
        join supaqueue.queue q on q.id = j.queue
       order by j.created_at desc, j.id desc
       limit _n;
  else
    return query
      select j.id, j.queue, q.name, j.status, j.attempts, j.priority, j.run_at, j.created_at,
             j.finished_at, j.pending_dependencies, j.last_status_code, left(j.last_error, 300)
        from unnest(_states) s(state)
        cross join lateral (
          select * from supaqueue.job x
           where x.queue = _queue and x.status = s.state and (x.created_at, x.id) < (_c, _i)
             and x.created_at >= _from
             and (_needle is null or strpos(lower(coalesce(x.last_error, '')), _needle) > 0)
           order by x.created_at desc, x.id desc
           limit _n) j
        join supaqueue.queue q on q.id = j.queue
       order by j.created_at desc, j.id desc
       limit _n;
  end if;
end
$$;

-- Everything about one job, as JSON: the row (payload, result), its queue, its lease if in
-- progress, every attempt, and its pipeline (the jobs it depends on, the jobs that depend on it).
-- Null when there is no such job.
create function supaqueue.job_detail(_job uuid) returns jsonb
language sql stable security definer
set search_path = ''
set jit = off
as $$
  select jsonb_build_object(
    'id', j.id, 'queue', j.queue, 'queue_name', q.name, 'status', j.status,
    'payload', j.payload, 'result', j.result, 'attempts', j.attempts,
    'max_attempts', q.max_attempts, 'priority', j.priority, 'run_at', j.run_at,
    'dedup_key', j.dedup_key, 'pending_dependencies', j.pending_dependencies,
    'last_status_code', j.last_status_code, 'last_error', j.last_error,
    'cancelled_by_operator', j.cancelled_by_operator,
    'created_at', j.created_at, 'updated_at', j.updated_at, 'finished_at', j.finished_at,
    'lease', (select jsonb_build_object('id', c.id, 'worker', c.worker, 'started_at', c.started_at,
                                        'claimed_at', c.claimed_at,
                                        'lease_expires_at', c.lease_expires_at)
                from supaqueue.current_job c where c.job = j.id),
    'attempt_history', coalesce((
      select jsonb_agg(jsonb_build_object(
               'attempt', h.attempt, 'outcome', h.outcome, 'status_code', h.status_code,
               'started_at', h.started_at, 'ended_at', h.ended_at, 'duration_ms', h.duration_ms,
               'error', h.error, 'response_excerpt', h.response_excerpt) order by h.id)
        from supaqueue.job_attempt h where h.job = j.id), '[]'::jsonb),
    'depends_on', coalesce((
      select jsonb_agg(jsonb_build_object('id', dj.id, 'status', dj.status, 'queue_name', dq.name)
                       order by dj.created_at)
        from supaqueue.job_dependency d
        join supaqueue.job dj on dj.id = d.depends_on
        join supaqueue.queue dq on dq.id = dj.queue
       where d.job = j.id), '[]'::jsonb),
    'dependents', coalesce((
      select jsonb_agg(jsonb_build_object('id', dj.id, 'status', dj.status, 'queue_name', dq.name)
                       order by dj.created_at)
        from supaqueue.job_dependency d
        join supaqueue.job dj on dj.id = d.job
        join supaqueue.queue dq on dq.id = dj.queue
       where d.depends_on = j.id), '[]'::jsonb))
  from supaqueue.job j join supaqueue.queue q on q.id = j.queue
  where j.id = _job
$$;

select supaqueue.apply_privileges();
