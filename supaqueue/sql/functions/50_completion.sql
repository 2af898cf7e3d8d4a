-- supaqueue functions/50_completion.sql: Completion: an attempt's end, retries, dependencies.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

CREATE OR REPLACE FUNCTION supaqueue._cancel_attempt(_cj supaqueue.current_job) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
    update supaqueue.worker set locked = false, key = null where id = _cj.worker and not retiring;
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

-- Cancels, transitively, every pending job that depends on _job. Returns how many.
CREATE OR REPLACE FUNCTION supaqueue._cancel_dependents(_job uuid, _reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _n integer;
  _total integer := 0;
begin
  -- Repeated until a pass cancels nothing: a pass may wait for an enqueue that holds a dependent
  -- FOR SHARE, and that enqueue's new edge is only visible to the next statement's snapshot.
  loop
    with recursive dependents (job) as (
      select d.job from supaqueue.job_dependency d where d.depends_on = _job
      union
      select d.job from supaqueue.job_dependency d join dependents x on d.depends_on = x.job
    )
    update supaqueue.job j
      set status = 'cancelled', finished_at = now(), updated_at = now(), last_error = _reason
      from dependents x
      where j.id = x.job and j.status = 'pending';
    get diagnostics _n = row_count;
    exit when _n = 0;
    _total := _total + _n;
  end loop;
  return _total;
end
$$;

-- Ends an attempt (history row, retry or final state, dependents). _keep_worker: true leaves the
-- worker locked (its chain goes on, or the caller frees it). Returns the queues that may now
-- dispatch. report_batch (40_dispatch.sql) ends a batch's successes set-based the same way:
-- keep the two in step.
CREATE OR REPLACE FUNCTION supaqueue._end_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _keep_worker boolean) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

  -- 0033: retry_after_seconds as the retry uses it (lift_hold tells its delay by it)
  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     status_code, error, duration_ms, response_excerpt,
                                     retry_after_seconds)
    values (_job.id, _job.queue, _job.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            case when _refused then 'failure' else _outcome end, _status_code, left(_error, 2000),
            coalesce(_duration_ms,
                     (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer),
            left(_response_excerpt, 2000),
            case when _outcome <> 'success' and _retry_after_seconds > 0
                 then _retry_after_seconds end);

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
  -- 0027: the target asked to be left alone (429/503 with Retry-After): hold the job's key or
  -- queue, whatever becomes of this job (its attempts may be used up; the answer stands)
  if _status_code in (429, 503) and _retry_after_seconds > 0
     and _q.hold_on_retry_after <> 'job' then
    perform supaqueue._hold_on_retry_after(_q.id, _q.hold_on_retry_after, _job.id, _job.key,
                                           _status_code, _retry_after_seconds);
  end if;
  return _queues;
end
$$;

-- Holds the job's key (hold_on_retry_after = 'key': supaqueue.queue_key, whose selection skips a
-- key held) or its queue ('queue', and 'key' for a job without a key: nothing narrower to hold)
-- for the target's Retry-After, at most max_hold_seconds(): no job of it is dispatched, chained
-- claims included, until then. A hold already longer is kept: a later, shorter answer never
-- shortens it.
CREATE OR REPLACE FUNCTION supaqueue._hold_on_retry_after(_queue uuid, _mode text, _job uuid, _key text, _status_code integer, _retry_after_seconds numeric) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _now timestamptz := clock_timestamp();
  _seconds numeric := least(_retry_after_seconds, supaqueue.max_hold_seconds());
  _until timestamptz := _now + make_interval(secs => _seconds::double precision);
  _reason text := format('HTTP %s with Retry-After: %s s (job %s)%s', _status_code,
                         trim_scale(_retry_after_seconds), _job,
                         case when _seconds < _retry_after_seconds
                           then format('; held %s s, the longest hold', _seconds) else '' end);
begin
  -- Many calls in flight meet the same wall at once: only an answer that lengthens the hold
  -- writes (and locks) the row.
  if _mode = 'key' and _key is not null then
    if exists (select 1 from supaqueue.queue_key k
                where k.queue = _queue and k.key = _key and k.held_until >= _until) then
      return;
    end if;
    -- The key's turn (due_at) comes no sooner than the hold's end; an idle key (null: no ready
    -- job) stays idle. A key without a row yet is due at the hold's end.
    insert into supaqueue.queue_key as k (queue, key, due_at, held_until, hold_reason)
      values (_queue, _key, _until, _until, _reason)
      on conflict (queue, key) do update
        set held_until = excluded.held_until, hold_reason = excluded.hold_reason,
            due_at = case when k.due_at is not null then greatest(k.due_at, excluded.held_until) end
        where k.held_until is null or k.held_until < excluded.held_until;
    return;
  end if;
  if exists (select 1 from supaqueue.queue_hold h
              where h.queue = _queue and h.held_until >= _until) then
    return;
  end if;
  insert into supaqueue.queue_hold as h (queue, since, held_until, reason)
    values (_queue, _now, _until, _reason)
    on conflict (queue) do update
      set held_until = excluded.held_until, reason = excluded.reason,
          -- a hold that had ended begins again; one going on keeps its start
          since = case when h.held_until > _now then h.since else excluded.since end
      where h.held_until < excluded.held_until;
end
$$;

CREATE OR REPLACE FUNCTION supaqueue._finish_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Brings back, transitively, the dependents of _job that were cancelled because a job they
-- depend on did not succeed (never those the operator cancelled), once none of their other
-- dependencies has failed or been cancelled. Each counts its unfinished dependencies again.
CREATE OR REPLACE FUNCTION supaqueue._revive_dependents(_job uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Kept for callers that report without chaining (older functions during an upgrade, operators).
CREATE OR REPLACE FUNCTION supaqueue.end_current_job(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer DEFAULT NULL::integer, _response_excerpt text DEFAULT NULL::text, _error text DEFAULT NULL::text, _retry_after_seconds numeric DEFAULT NULL::numeric, _result jsonb DEFAULT NULL::jsonb, _duration_ms integer DEFAULT NULL::integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return (supaqueue.report_and_claim(cur_job_id, _is_complete, _is_successful, _status_code,
                                     _response_excerpt, _error, _retry_after_seconds, _result,
                                     _duration_ms) ->> 'current')::boolean;
end
$$;
