-- supaqueue functions/75_operator.sql: The operator API (the CLI and the dashboard call these).
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- The LIKE pattern that finds _text anywhere, any case (its %, _ and \ match themselves).
CREATE OR REPLACE FUNCTION supaqueue._contains_pattern(_text text) RETURNS text
    LANGUAGE sql IMMUTABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select '%' || replace(replace(replace(_text, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

-- The failed jobs of a queue (since, error text); "error contains" also searches the response
-- excerpt.
CREATE OR REPLACE FUNCTION supaqueue._failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = 'failed'
     and j.finished_at >= coalesce(_since, '-infinity')
     and (_error_contains is null
          or ((j.last_error is not null or j.last_response_excerpt is not null)
              and (coalesce(j.last_error, '') || ' ' || coalesce(j.last_response_excerpt, ''))
                  ilike supaqueue._contains_pattern(_error_contains)))
   order by j.finished_at
$$;

-- The jobs of a filter (that of list_jobs: queue, states, created window, error text) for the
-- bulk actions below; one authority for their dry runs (the count the operator confirms).
CREATE OR REPLACE FUNCTION supaqueue._jobs_matching(_queue uuid, _states supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _from timestamptz := coalesce(_created_after, '-infinity');
  _to timestamptz := coalesce(_created_before, 'infinity');
  _pattern text := supaqueue._contains_pattern(_error_contains);
begin
  -- one statement per case, so that each is one index range (no `_x is null or` in a plan)
  if _pattern is not null then
    return query
      select j.id from supaqueue.job j
       where (j.last_error is not null or j.last_response_excerpt is not null)
         and (coalesce(j.last_error, '') || ' ' || coalesce(j.last_response_excerpt, ''))
             ilike _pattern
         and (_queue is null or j.queue = _queue) and j.status = any (_states)
         and j.created_at >= _from and j.created_at < _to;
  elsif _queue is not null then
    return query
      select j.id from supaqueue.job j
       where j.queue = _queue and j.status = any (_states)
         and j.created_at >= _from and j.created_at < _to;
  else
    return query
      select j.id from supaqueue.job j
       where j.status = any (_states) and j.created_at >= _from and j.created_at < _to;
  end if;
end
$$;

-- The jobs purge_jobs deletes: finished, in one of _statuses, finished before _older_than, and
-- not waited for by an unfinished dependent (its result goes into that dispatch).
CREATE OR REPLACE FUNCTION supaqueue._purgeable_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = any (_statuses) and j.finished_at is not null
     and j.finished_at < coalesce(_older_than, 'infinity')
     and not exists (
       select 1 from supaqueue.job_dependency d
         join supaqueue.job dj on dj.id = d.job
        where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
$$;

CREATE OR REPLACE FUNCTION supaqueue._record_action(_job uuid, _action text) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  insert into supaqueue.job_operator_action (job, action, after_attempt)
    select _job, _action, (select max(h.id) from supaqueue.job_attempt h where h.job = _job)
$$;

-- Retries one failed or cancelled job with fresh attempts (its attempt history is kept), and
-- brings back the dependents its failure cancelled; the caller dispatches. Returns false,
-- changing nothing, when the job is not failed or cancelled (say, another operator retried it
-- first), or when it cannot be retried and not _strict; with _strict, says why in an error.
CREATE OR REPLACE FUNCTION supaqueue._retry_job(_job uuid, _strict boolean) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Cancels a pending or in-progress job, and (as a failure does) its pending dependents. An
-- in-progress job's lease is taken away, so the dispatcher's late report changes nothing (the
-- call to the target may still complete: its outcome is dropped). Returns false when the job
-- had already finished.
CREATE OR REPLACE FUNCTION supaqueue.cancel_job(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Cancels the pending and/or in-progress jobs of a filter (null _queue: every queue), and, as a
-- failure does, their pending dependents. Pending ones in one statement (a job a dispatch takes
-- meanwhile is in progress by then and left alone unless in-progress ones are asked for too);
-- then each in-progress one through cancel_job, so its lease is taken away and the dispatcher's
-- late answer changes nothing. Returns how many were cancelled; with _dry_run, how many match.
CREATE OR REPLACE FUNCTION supaqueue.cancel_jobs(_queue uuid, _statuses supaqueue.job_status[] DEFAULT ARRAY['pending'::supaqueue.job_status], _error_contains text DEFAULT NULL::text, _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _n integer := 0;
  _id uuid;
  _cancelled uuid[];
begin
  if _queue is not null and not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.cancel_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _statuses is null or cardinality(_statuses) = 0
     or not _statuses <@ array['pending', 'in_progress']::supaqueue.job_status[] then
    raise exception 'supaqueue.cancel_jobs: only pending and in_progress jobs can be cancelled, got %',
      coalesce(_statuses::text, 'null') using errcode = '22023';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._jobs_matching(
      _queue, _statuses, _created_after, _created_before, _error_contains);
    return _n;
  end if;
  if 'pending' = any (_statuses) then
    -- status is checked again on each row once locked: one dispatched meanwhile is skipped
    with done as (
      update supaqueue.job j
         set status = 'cancelled', finished_at = now(), updated_at = now(),
             cancelled_by_operator = true, last_error = 'cancelled by the operator'
        from supaqueue._jobs_matching(_queue, array['pending']::supaqueue.job_status[],
                                      _created_after, _created_before, _error_contains) m (id)
       where j.id = m.id and j.status = 'pending'
      returning j.id
    )
    select coalesce(array_agg(id), '{}') into _cancelled from done;
    _n := cardinality(_cancelled);
    for _id in
      select c from unnest(_cancelled) c
       where exists (select 1 from supaqueue.job_dependency d where d.depends_on = c)
    loop
      perform supaqueue._cancel_dependents(
        _id, format('cancelled: job %s it depends on was cancelled by the operator', _id));
    end loop;
  end if;
  if 'in_progress' = any (_statuses) then
    for _id in select m from supaqueue._jobs_matching(
                 _queue, array['in_progress']::supaqueue.job_status[], _created_after,
                 _created_before, _error_contains) m loop
      if supaqueue.cancel_job(_id) then
        _n := _n + 1;
      end if;
    end loop;
  end if;
  return _n;
end
$$;

-- Everything about one job, as JSON: the row (payload, result), its queue, its lease if in
-- progress, every attempt, and its pipeline (the jobs it depends on, the jobs that depend on it).
-- Null when there is no such job.
CREATE OR REPLACE FUNCTION supaqueue.job_detail(_job uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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

-- Job ids starting with _prefix (hex digits, hyphens ignored; what the dashboard shows is the
-- first 8), at most _limit, read as one range of the primary key.
CREATE OR REPLACE FUNCTION supaqueue.job_ids_with_prefix(_prefix text, _limit integer DEFAULT 10) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  _hex text := lower(replace(coalesce(_prefix, ''), '-', ''));
begin
  if _hex !~ '^[0-9a-f]{1,32}$' then
    raise exception 'supaqueue.job_ids_with_prefix: % is not the start of a job id (hex digits)',
      coalesce(quote_literal(_prefix), 'null') using errcode = '22023';
  end if;
  return query
    select j.id from supaqueue.job j
     where j.id between rpad(_hex, 32, '0')::uuid and rpad(_hex, 32, 'f')::uuid
     order by j.id
     limit greatest(coalesce(_limit, 10), 1);
end
$_$;

-- The runs of a job, for the detail views (job_detail's attempt_history lists attempts in the same
-- order, by job_attempt id): per attempt its run (1 + the operator actions before it) and the
-- actions, each with the run it started. Read in the same statement as job_detail.
CREATE OR REPLACE FUNCTION supaqueue.job_runs(_job uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select jsonb_build_object(
    'attempts', coalesce((
      select jsonb_agg(jsonb_build_object(
               'attempt', h.attempt,
               'run', 1 + (select count(*) from supaqueue.job_operator_action a
                            where a.job = _job and a.action <> 'run_job_now'
                              and coalesce(a.after_attempt, 0) < h.id)) order by h.id)
        from supaqueue.job_attempt h where h.job = _job), '[]'::jsonb),
    'actions', coalesce((
      select jsonb_agg(jsonb_build_object(
               'action', a.action, 'at', a.at, 'by', a.by,
               'run', 1 + (select count(*) from supaqueue.job_operator_action b
                            where b.job = _job and b.action <> 'run_job_now' and b.id <= a.id))
             order by a.id)
        from supaqueue.job_operator_action a where a.job = _job), '[]'::jsonb),
    'last_response_excerpt', (select j.last_response_excerpt from supaqueue.job j where j.id = _job))
$$;

-- One page of jobs, newest first (keyset: _before_created, _before_id). A search by error text
-- covers the response excerpt too. A rare text (fewer than 5,000 jobs match) is found through
-- job_error_search_idx and its matches sorted; a common one is dense in the newest rows, so the
-- list's ranges are read newest first as before, filtered, which finds a page sooner than sorting
-- thousands (benchmarks/operator_bench.py).
CREATE OR REPLACE FUNCTION supaqueue.list_jobs(_queue uuid DEFAULT NULL::uuid, _statuses supaqueue.job_status[] DEFAULT NULL::supaqueue.job_status[], _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _error_contains text DEFAULT NULL::text, _before_created timestamp with time zone DEFAULT NULL::timestamp with time zone, _before_id uuid DEFAULT NULL::uuid, _limit integer DEFAULT 50) RETURNS TABLE(id uuid, queue uuid, queue_name text, status supaqueue.job_status, attempts integer, priority integer, run_at timestamp with time zone, created_at timestamp with time zone, finished_at timestamp with time zone, pending_dependencies integer, last_status_code integer, last_error text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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
  _pattern text := supaqueue._contains_pattern(_error_contains);
  _common constant integer := 5000;
begin
  if _pattern is not null then
    -- a successful job has no last_error (its success clears it), so a search by error text
    -- never reads the (usually largest) range of successful jobs
    _states := array_remove(_states, 'success');
  end if;
  if _pattern is not null and (
       select count(*) from (
         select 1 from supaqueue.job x
          where (x.last_error is not null or x.last_response_excerpt is not null)
            and (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                ilike _pattern
          limit _common) hits) < _common then
    return query
      select x.id, x.queue, q.name, x.status, x.attempts, x.priority, x.run_at, x.created_at,
             x.finished_at, x.pending_dependencies, x.last_status_code, left(x.last_error, 300)
        from supaqueue.job x
        join supaqueue.queue q on q.id = x.queue
       where (x.last_error is not null or x.last_response_excerpt is not null)
         and (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
             ilike _pattern
         and (_queue is null or x.queue = _queue)
         and x.status = any (_states)
         and (x.created_at, x.id) < (_c, _i) and x.created_at >= _from
       order by x.created_at desc, x.id desc
       limit _n;
    return;
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
             and (_pattern is null
                  or (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                     ilike _pattern)
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
             and (_pattern is null
                  or (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                     ilike _pattern)
           order by x.created_at desc, x.id desc
           limit _n) j
        join supaqueue.queue q on q.id = j.queue
       order by j.created_at desc, j.id desc
       limit _n;
  end if;
end
$$;

-- For `supaqueue metrics` (a Prometheus exporter that keeps its own running totals): what
-- finished in (_after, _until] per queue, and the attempts that ended then, counted into the
-- histogram buckets `_bounds_ms` (upper bounds, ascending; cumulative as Prometheus wants);
-- attempts without a duration (none is recorded for a lease expiry) are not in the histogram.
CREATE OR REPLACE FUNCTION supaqueue.metrics_between(_after timestamp with time zone, _until timestamp with time zone, _bounds_ms double precision[]) RETURNS TABLE(queue uuid, name text, succeeded bigint, failed bigint, cancelled bigint, attempts bigint, attempt_ms_sum double precision, attempt_buckets bigint[])
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select q.id, q.name, f.succeeded, f.failed, f.cancelled, a.attempts, a.ms_sum,
         array(select (select count(*) from supaqueue.job_attempt h
                        where h.queue = q.id and h.ended_at > _after and h.ended_at <= _until
                          and h.duration_ms <= u.b)
                 from pg_catalog.unnest(_bounds_ms) with ordinality as u(b, n) order by u.n)
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed,
             count(*) filter (where j.status = 'cancelled') as cancelled
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null
         and j.finished_at > _after and j.finished_at <= _until) f
    cross join lateral (
      select count(*) as attempts, coalesce(sum(h.duration_ms), 0)::double precision as ms_sum
        from supaqueue.job_attempt h
       where h.queue = q.id and h.ended_at > _after and h.ended_at <= _until
         and h.duration_ms is not null) a
   order by q.name
$$;

-- Run-time pause: the queue stops dispatching (jobs in flight finish; new jobs wait). Separate
-- from the stack's declared `paused`, which `pulumi up` sets; see docs/architecture.md.
CREATE OR REPLACE FUNCTION supaqueue.pause_queue(_queue uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Deletes finished jobs of a queue (with their attempt history) in the given states that
-- finished before _older_than, except those another job still waits for. Returns how many were
-- deleted; with _dry_run, how many would be, changing nothing.
CREATE OR REPLACE FUNCTION supaqueue.purge_jobs(_queue uuid, _statuses supaqueue.job_status[] DEFAULT ARRAY['success'::supaqueue.job_status, 'failed'::supaqueue.job_status, 'cancelled'::supaqueue.job_status], _older_than timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Per-queue figures over the last _window: jobs that succeeded / failed (finally) and attempts,
-- per minute and in total, attempt duration p50/p95, depth, oldest pending age, busy and total
-- workers, rate limit and pause state. Reads only index ranges bounded by the window or by
-- unfinished jobs (index-only scans), so it stays cheap on a large table of finished jobs.
CREATE OR REPLACE FUNCTION supaqueue.queue_figures(_window interval DEFAULT '01:00:00'::interval) RETURNS TABLE(queue uuid, name text, paused_by_stack boolean, paused_by_operator_since timestamp with time zone, workers integer, busy_workers integer, rate_limit_per_second double precision, pending bigint, ready bigint, in_progress bigint, oldest_pending_age_seconds double precision, succeeded bigint, failed bigint, attempts bigint, failed_attempts bigint, succeeded_per_minute double precision, failed_per_minute double precision, attempt_p50_ms double precision, attempt_p95_ms double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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
             -- job_ready_idx and job_key_ready_idx (0026) hold exactly the pending jobs without
             -- unfinished dependencies, without and with a key
             (select count(*) from supaqueue.job r
               where r.queue = q.id and r.status = 'pending' and r.pending_dependencies = 0
                 and r.key is null and r.run_at <= now())
             + (select count(*) from supaqueue.job r
                 where r.queue = q.id and r.status = 'pending' and r.pending_dependencies = 0
                   and r.key is not null and r.run_at <= now()) as ready
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

-- Jobs finished per queue over a short window (default the last minute): the console's "ok/min"
-- and "failed/min" (queue_figures' per-minute figures are averages over its whole window).
-- job_finished_idx: one range per queue.
CREATE OR REPLACE FUNCTION supaqueue.queue_rates(_window interval DEFAULT '00:01:00'::interval) RETURNS TABLE(queue uuid, succeeded bigint, failed bigint, succeeded_per_minute double precision, failed_per_minute double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select q.id, f.succeeded, f.failed,
         f.succeeded / greatest(extract(epoch from _window) / 60, 1e-9),
         f.failed / greatest(extract(epoch from _window) / 60, 1e-9)
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null and j.finished_at > now() - _window) f
   order by q.name
$$;

-- Per-queue time series for charts, one row per queue and _bucket_seconds bucket of the last
-- _window (empty buckets included): jobs that succeeded, failed and were cancelled in the bucket,
-- attempts that failed, and the depth (unfinished jobs) at the bucket's end. The depth is
-- rebuilt from the jobs unfinished now and those finished within the window (+1 when created,
-- -1 when finished), so it needs no history table and reads the same index ranges as the rest.
CREATE OR REPLACE FUNCTION supaqueue.queue_series(_window interval DEFAULT '01:00:00'::interval, _bucket_seconds integer DEFAULT 60) RETURNS TABLE(queue uuid, bucket timestamp with time zone, succeeded bigint, failed bigint, cancelled bigint, failed_attempts bigint, depth bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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

-- Lifts the operator's pause. A queue the stack declares paused stays paused (the stack is the
-- source of truth for that): the result says so.
CREATE OR REPLACE FUNCTION supaqueue.resume_queue(_queue uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Retries the failed jobs _failed_jobs selects (or counts them: _dry_run), recording each retry.
CREATE OR REPLACE FUNCTION supaqueue.retry_failed_jobs(_queue uuid, _since timestamp with time zone DEFAULT NULL::timestamp with time zone, _error_contains text DEFAULT NULL::text, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
      perform supaqueue._record_action(_id, 'retry_failed_jobs');
      _n := _n + 1;
    end if;
  end loop;
  if _n > 0 then
    perform supaqueue.dispatch(_queue);
  end if;
  return _n;
end
$$;

-- A failed or cancelled job back to pending with fresh attempts (see _retry_job), recording the
-- retry.
CREATE OR REPLACE FUNCTION supaqueue.retry_job(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if not supaqueue._retry_job(_job, true) then
    return false;
  end if;
  perform supaqueue._record_action(_job, 'retry_job');
  perform supaqueue.dispatch(j.queue) from supaqueue.job j where j.id = _job;
  return true;
end
$$;

-- Retries the failed jobs of a filter (null _queue: every queue) as retry_job does, skipping those
-- that cannot be retried (a dependency failed, the dedup key is held), recording each retry.
-- Returns how many were retried; with _dry_run, how many failed jobs match.
CREATE OR REPLACE FUNCTION supaqueue.retry_jobs(_queue uuid, _error_contains text DEFAULT NULL::text, _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _n integer := 0;
  _id uuid;
  _queues uuid[] := '{}';
begin
  if _queue is not null and not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.retry_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._jobs_matching(
      _queue, array['failed']::supaqueue.job_status[], _created_after, _created_before,
      _error_contains);
    return _n;
  end if;
  for _id in select m from supaqueue._jobs_matching(
               _queue, array['failed']::supaqueue.job_status[], _created_after, _created_before,
               _error_contains) m loop
    if supaqueue._retry_job(_id, false) then
      perform supaqueue._record_action(_id, 'retry_jobs');
      _queues := _queues || (select j.queue from supaqueue.job j where j.id = _id);
      _n := _n + 1;
    end if;
  end loop;
  perform supaqueue.dispatch(q) from (select distinct unnest(_queues) q) d;
  return _n;
end
$$;

-- Runs a delayed pending job now (its run_at, whether set at enqueue or by a retry's backoff);
-- it still waits for its dependencies and a free worker. False, changing nothing, when the job is
-- not pending or already due.
CREATE OR REPLACE FUNCTION supaqueue.run_job_now(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _j supaqueue.job;
begin
  select * into _j from supaqueue.job where id = _job for update;
  if not found then
    raise exception 'supaqueue.run_job_now: there is no job with id %', _job
      using errcode = 'SQ005';
  end if;
  if _j.status <> 'pending' or _j.run_at <= now() then
    return false;
  end if;
  update supaqueue.job set run_at = now(), updated_at = now() where id = _job;
  perform supaqueue._record_action(_job, 'run_job_now');
  perform supaqueue.dispatch(_j.queue);
  return true;
end
$$;

-- The jobs one schedule or trigger made, newest first (at most 1000).
CREATE OR REPLACE FUNCTION supaqueue.source_jobs(_source text, _name text, _limit integer DEFAULT 50) RETURNS TABLE(id uuid, queue_name text, status supaqueue.job_status, attempts integer, run_at timestamp with time zone, created_at timestamp with time zone, finished_at timestamp with time zone, dedup_key text, last_error text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
begin
  if _source is null or _source not in ('trigger', 'schedule') then
    raise exception 'source must be trigger or schedule, not %', coalesce(_source, 'null')
      using errcode = '22023';
  end if;
  return query
    select j.id, q.name, j.status, j.attempts, j.run_at, j.created_at, j.finished_at,
           j.dedup_key, j.last_error
      from supaqueue.job j join supaqueue.queue q on q.id = j.queue
     where j.source = _source and j.source_name = _name
     order by j.created_at desc, j.id desc
     limit least(greatest(coalesce(_limit, 50), 1), 1000);
end
$$;

-- Every table trigger: its table and events, its newest job and its jobs of the last day.
CREATE OR REPLACE FUNCTION supaqueue.trigger_overview() RETURNS TABLE(id uuid, name text, queue uuid, queue_name text, table_schema text, table_name text, events text[], condition text, last_job uuid, last_job_status supaqueue.job_status, last_job_created_at timestamp with time zone, jobs_last_day bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select t.id, t.name, t.queue, q.name, t.table_schema, t.table_name, t.events, t.condition,
         l.id, l.status, l.created_at,
         (select count(*) from supaqueue.job c
           where c.source = 'trigger' and c.source_name = t.name
             and c.created_at > now() - interval '1 day')
    from supaqueue.table_trigger t
    join supaqueue.queue q on q.id = t.queue
    left join lateral (
      select j.id, j.status, j.created_at from supaqueue.job j
       where j.source = 'trigger' and j.source_name = t.name
       order by j.created_at desc, j.id desc limit 1) l on true
   order by t.name
$$;

-- Keys of a queue with work (issue #26, docs/architecture/console.md): due for a turn (a ready or
-- delayed job), held by a Retry-After, or with a call running. Reads the queue's rows of
-- queue_key (one per key, idle ones deleted by the tick) and its workers, never its jobs.
CREATE OR REPLACE FUNCTION supaqueue.active_key_count(_queue uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select count(*) from (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and (k.due_at is not null or k.held_until > now())
    union
    select w.key from supaqueue.worker w where w.queue = _queue and w.key is not null
  ) a
$$;

-- The busiest keys of a queue, at most _limit (1..100), most running calls first, then most
-- ready jobs: taken from a bounded set of candidates, the _limit keys with most running calls,
-- the _limit held longest and the _limit next in turn (queue_key_due_idx), so the cost never
-- follows the number of keys or jobs. `ready` (pending, due, no unfinished dependency) is counted
-- from job_key_ready_idx up to _ready_cap per key (1..100000): `ready_capped` says there are more.
CREATE OR REPLACE FUNCTION supaqueue.queue_keys(_queue uuid, _limit integer DEFAULT 20, _ready_cap integer DEFAULT 1000) RETURNS TABLE(key text, ready bigint, ready_capped boolean, running bigint, next_turn_at timestamp with time zone, held_until timestamp with time zone, hold_reason text, active_keys bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
#variable_conflict use_column
declare
  _active bigint;
begin
  if _limit is null or _limit < 1 or _limit > 100 then
    raise exception 'supaqueue.queue_keys: _limit % is out of range: give 1 to 100 keys', _limit
      using errcode = '22023';
  end if;
  if _ready_cap is null or _ready_cap < 1 or _ready_cap > 100000 then
    raise exception 'supaqueue.queue_keys: _ready_cap % is out of range: give 1 to 100000', _ready_cap
      using errcode = '22023';
  end if;
  if not exists (select 1 from supaqueue.queue q where q.id = _queue) then
    raise exception 'supaqueue.queue_keys: there is no queue with id %', _queue using errcode = 'SQ005';
  end if;
  _active := supaqueue.active_key_count(_queue);
  return query
  with busy as (
    select w.key from supaqueue.worker w
     where w.queue = _queue and w.key is not null
     group by w.key order by count(*) desc, w.key limit _limit
  ), held as (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and k.held_until > now()
     order by k.held_until desc limit _limit
  ), due as (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and k.due_at is not null
     order by k.due_at limit _limit
  ), candidate as (
    select b.key from busy b union select h.key from held h union select d.key from due d
  )
  select c.key, least(r.n, _ready_cap)::bigint, r.n > _ready_cap, b.n,
         qk.due_at, case when qk.held_until > now() then qk.held_until end,
         case when qk.held_until > now() then qk.hold_reason end, _active
    from candidate c
    left join supaqueue.queue_key qk on qk.queue = _queue and qk.key = c.key
    cross join lateral (
      select count(*) as n from (
        select 1 from supaqueue.job j
         where j.queue = _queue and j.key = c.key and j.key is not null
           and j.status = 'pending' and j.pending_dependencies = 0 and j.run_at <= now()
         limit _ready_cap + 1) x
    ) r
    cross join lateral (
      select count(*) as n from supaqueue.worker w where w.queue = _queue and w.key = c.key
    ) b
   order by b.n desc, r.n desc, c.key
   limit _limit;
end
$$;

-- The rule of the jobs a lifted hold makes due now (0033, docs/architecture/console.md, "Lifting
-- a hold early"), its one authority (lift_hold, retry_after_delayed): the pending jobs of what
-- is lifted (_keys: those keys' jobs; _queue_hold: the queue's jobs without a key, and its keyed
-- ones unless it holds by key, whose answers held their keys) whose last attempt answered 429 or
-- 503 with a Retry-After and whose run_at is that Retry-After's: later than now, and no later
-- than the attempt's end plus its Retry-After (a longer backoff is ours, not the target's word).
-- A delay for any other reason (a user's run_at, a backoff after a 500 or a 429 without
-- Retry-After) is not one of them. Reads, locks nothing.
CREATE OR REPLACE FUNCTION supaqueue._retry_after_delayed(_queue uuid, _keys text[], _queue_hold boolean) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _by_key boolean := (select q.hold_on_retry_after = 'key' from supaqueue.queue q
                       where q.id = _queue);
begin
  return query
    select j.id from supaqueue.job j
     where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
       and j.run_at > now() and j.last_status_code in (429, 503)
       and (j.key = any (_keys) or (_queue_hold and (j.key is null or not _by_key)))
       and exists (
         select 1
           from (select a.status_code, a.retry_after_seconds, a.ended_at
                   from supaqueue.job_attempt a where a.job = j.id
                  order by a.id desc limit 1) last
          where last.status_code in (429, 503) and last.retry_after_seconds > 0
            and j.run_at <= last.ended_at
                             + make_interval(secs => last.retry_after_seconds::double precision));
end
$$;

-- How many jobs lift_hold(_queue, _key, _all_keys) would make due now (`supaqueue lift-hold`
-- says it when it asks): those of _retry_after_delayed for what is held now; 0 when nothing is.
CREATE OR REPLACE FUNCTION supaqueue.retry_after_delayed(_queue uuid, _key text DEFAULT NULL::text, _all_keys boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _whole boolean := _key is null and not coalesce(_all_keys, false);
begin
  if _key is not null and _all_keys then
    raise exception 'supaqueue.retry_after_delayed: give one key or _all_keys, not both'
      using errcode = '22023';
  end if;
  if not exists (select 1 from supaqueue.queue q where q.id = _queue) then
    raise exception 'supaqueue.retry_after_delayed: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  return (select count(*) from supaqueue._retry_after_delayed(
    _queue,
    case when _whole then '{}'::text[]
         else array(select k.key from supaqueue.queue_key k
                     where k.queue = _queue and (_all_keys or k.key = _key)
                       and k.held_until > clock_timestamp()) end,
    _whole and exists (select 1 from supaqueue.queue_hold h
                        where h.queue = _queue and h.held_until > clock_timestamp())));
end
$$;

-- Ends holds by the target's Retry-After (0027, docs/architecture.md, "Backpressure") now, for
-- an operator who knows better (the target is fixed, or its Retry-After was a mistake): the
-- queue's own hold (no _key), one key's (_key) or every key's (_all_keys); then dispatches the
-- queue, so the jobs that waited run at once (a paused queue stays paused). A key's turn moved
-- to the hold's end comes now: the selection would otherwise wait for it (*Keys and fairness*).
-- Nothing held is no error: `lifted` 0 says so. Answers what it ended and what is still held.
-- 0033: the jobs whose own retry waits for the target's Retry-After (_retry_after_delayed) are
-- made due now too (`made_due`), else the very jobs whose answers set the hold would still wait
-- (up to the Retry-After); a delay for any other reason stays.
CREATE OR REPLACE FUNCTION supaqueue.lift_hold(_queue uuid, _key text DEFAULT NULL::text, _all_keys boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _name text;
  _lifted_queue boolean := false;
  _lifted_keys text[] := '{}';
  _made_due integer := 0;
  _dispatched integer;
begin
  if _key is not null and _all_keys then
    raise exception 'supaqueue.lift_hold: give one key or _all_keys, not both'
      using errcode = '22023';
  end if;
  select q.name into _name from supaqueue.queue q where q.id = _queue;
  if not found then
    raise exception 'supaqueue.lift_hold: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _key is null and not coalesce(_all_keys, false) then
    -- a row past its time holds nothing (the tick deletes it): it goes too, but is not counted
    with gone as (
      delete from supaqueue.queue_hold h where h.queue = _queue returning h.held_until
    )
    select coalesce(bool_or(g.held_until > clock_timestamp()), false) into _lifted_queue
      from gone g;
  else
    with lifted as (
      update supaqueue.queue_key k
         set held_until = null, hold_reason = null,
             due_at = case when k.due_at > clock_timestamp() then clock_timestamp() else k.due_at end
       where k.queue = _queue and (_all_keys or k.key = _key)
         and k.held_until > clock_timestamp()
      returning k.key
    )
    select coalesce(array_agg(l.key), '{}') into _lifted_keys from lifted l;
  end if;
  if _lifted_queue or cardinality(_lifted_keys) > 0 then
    -- run_at named: a keyed job's key becomes due with it (_450_job_key_ready); still pending
    -- and delayed, checked again as each row is locked (a dispatch or run-now may come first)
    with due as (
      update supaqueue.job j
         set run_at = now(), updated_at = now()
       where j.id in (select supaqueue._retry_after_delayed(_queue, _lifted_keys, _lifted_queue))
         and j.status = 'pending' and j.run_at > now()
      returning 1
    )
    select count(*) into _made_due from due;
  end if;
  _dispatched := case when _lifted_queue or cardinality(_lifted_keys) > 0
                      then supaqueue.dispatch(_queue) else 0 end;
  return jsonb_build_object(
    'queue', _queue, 'name', _name, 'key', _key, 'all_keys', coalesce(_all_keys, false),
    'lifted', cardinality(_lifted_keys) + _lifted_queue::integer,
    'lifted_queue', _lifted_queue, 'lifted_keys', cardinality(_lifted_keys),
    -- what still holds: the queue's hold (when keys were lifted), other keys
    'held_until', (select h.held_until from supaqueue.queue_hold h
                    where h.queue = _queue and h.held_until > clock_timestamp()),
    'held_keys', (select count(*) from supaqueue.queue_key k
                   where k.queue = _queue and k.held_until > clock_timestamp()),
    'made_due', _made_due,
    'dispatched', _dispatched);
end
$$;
