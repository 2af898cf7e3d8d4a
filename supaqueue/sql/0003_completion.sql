-- supaqueue 0003: the end of an attempt (completion, failure, retry policy, dependencies).

-- Cancels, transitively, every pending job that depends on _job. Returns how many.
create function supaqueue._cancel_dependents(_job uuid, _reason text) returns integer
language plpgsql security definer
set search_path = ''
as $$
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

-- Delay before retry number _attempts + 1: exponential from the base, jittered, capped.
create function supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) returns double precision
language sql volatile
set search_path = ''
as $$
  select least(
    _q.backoff_max_ms::double precision,
    least(_q.backoff_base_ms * power(2::double precision, least(greatest(_attempts - 1, 0), 60)),
          _q.backoff_max_ms::double precision)
      * (1 + _q.backoff_jitter * (2 * random() - 1)))
$$;

-- Records the ended attempt of a lease that the caller has already deleted, frees (or removes)
-- the worker and moves the job on. Returns the queues that may now dispatch.
create function supaqueue._finish_attempt(
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
begin
  select * into _job from supaqueue.job where id = _cj.job for update;
  select * into _q from supaqueue.queue where id = _job.queue;
  _queues := array[_q.id];

  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     status_code, error, duration_ms, response_excerpt)
    values (_job.id, _job.queue, _job.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            _outcome, _status_code, left(_error, 2000),
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

  _final := _job.attempts >= _q.max_attempts
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

-- Called by the supaqueue Edge Function when an attempt ended. Success means complete and
-- successful; anything else is a failed attempt, retried per the queue's policy. Returns false,
-- changing nothing, when the lease is no longer current (late or duplicate report).
create function supaqueue.end_current_job(
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
declare
  _cj supaqueue.current_job;
  _queue uuid;
begin
  -- Deleting the lease claims it: a concurrent duplicate waits here, then finds nothing.
  delete from supaqueue.current_job where id = cur_job_id returning * into _cj;
  if not found then
    return false;
  end if;
  foreach _queue in array supaqueue._finish_attempt(
    _cj,
    case when coalesce(_is_complete and _is_successful, false) then 'success' else 'failure' end,
    _status_code, _response_excerpt, _error,
    -- capped at one year: a larger Retry-After (or NaN/Infinity) would overflow run_at and make
    -- the report itself fail
    case when _retry_after_seconds > 0 then least(_retry_after_seconds, 31536000) end,
    _result, _duration_ms)
  loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return true;
end
$$;
