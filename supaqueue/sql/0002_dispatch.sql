-- supaqueue 0002: dispatch (free workers take the next due jobs) and enqueue.

-- Hands free workers of one queue the next ready jobs (priority, then run_at), one pg_net POST each.
-- Cost is independent of the backlog: one probe of job_ready_idx and worker_free_idx per job,
-- SKIP LOCKED so that concurrent dispatchers never wait for each other.
create function supaqueue.dispatch(_queue uuid) returns integer
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
    _body := jsonb_build_object(
      'current_job', jsonb_build_object(
        'id', _cj_id, 'worker', _worker, 'job', _job.id, 'lease_expires_at', _lease),
      'job', jsonb_build_object(
        'id', _job.id, 'queue', _job.queue, 'payload', _job.payload, 'attempts', _job.attempts,
        'dependency_results', coalesce(
          (select jsonb_object_agg(d.depends_on::text, coalesce(dj.result, 'null'::jsonb))
             from supaqueue.job_dependency d
             join supaqueue.job dj on dj.id = d.depends_on
            where d.job = _job.id),
          '{}'::jsonb)),
      'queue', jsonb_build_object(
        'id', _q.id, 'name', _q.name, 'edge_function_name', _q.edge_function_name,
        'method', _q.method, 'default_headers', _q.default_headers, 'timeout_ms', _q.timeout_ms));

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

-- Statement-level: a 100k-row INSERT dispatches once per queue, not once per row.
create function supaqueue.tg__job_inserted() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  _queue uuid;
begin
  for _queue in
    select distinct n.queue from new_jobs n where n.status = 'pending' and n.pending_dependencies = 0
  loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return null;
end
$$;

create trigger _500_dispatch_after_insert
  after insert on supaqueue.job
  referencing new table as new_jobs
  for each statement execute function supaqueue.tg__job_inserted();

create function supaqueue.tg__worker_inserted() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  _queue uuid;
begin
  for _queue in select distinct n.queue from new_workers n loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return null;
end
$$;

create trigger _500_dispatch_after_insert
  after insert on supaqueue.worker
  referencing new table as new_workers
  for each statement execute function supaqueue.tg__worker_inserted();

-- A queue that was resumed, or whose rate limit was raised, may now dispatch.
create function supaqueue.tg__queue_updated() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  _queue uuid;
begin
  for _queue in select n.id from new_queues n where not n.paused loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return null;
end
$$;

create trigger _500_dispatch_after_update
  after update on supaqueue.queue
  referencing new table as new_queues
  for each statement execute function supaqueue.tg__queue_updated();

-- Enqueue one job. Returns its id; with a dedup key, the id of the unfinished job that already
-- holds that key, if any. Jobs in _depends_on must exist; the job waits until all of them succeed.
create function supaqueue.enqueue(
  _queue uuid,
  _payload jsonb default '{}',
  _run_at timestamptz default null,
  _priority integer default 0,
  _dedup_key text default null,
  _depends_on uuid[] default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  _deps uuid[];
  _found integer := 0;
  _waiting integer := 0;
  _doomed boolean := false;
  _id uuid;
  _left integer;
begin
  if _queue is null then
    raise exception 'supaqueue.enqueue: _queue must not be null' using errcode = '22004';
  end if;
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.enqueue: there is no queue with id %', _queue using errcode = '23503';
  end if;

  _deps := array(select distinct d from unnest(coalesce(_depends_on, '{}'::uuid[])) d
                 where d is not null);
  if cardinality(_deps) > 0 then
    -- FOR SHARE: a dependency cannot finish between this count and the edges below.
    select count(*), count(*) filter (where s.status <> 'success'),
           coalesce(bool_or(s.status in ('failed', 'cancelled')), false)
      into _found, _waiting, _doomed
      from (select j.status from supaqueue.job j where j.id = any (_deps) for share) s;
    if _found < cardinality(_deps) then
      raise exception 'supaqueue.enqueue: % of the jobs in _depends_on do not exist',
        cardinality(_deps) - _found using errcode = '23503';
    end if;
  end if;

  loop
    -- One extra pending dependency holds the job back until its edges exist (see below).
    insert into supaqueue.job (queue, payload, run_at, priority, dedup_key, pending_dependencies,
                               status, finished_at, last_error)
      values (_queue, coalesce(_payload, '{}'::jsonb), coalesce(_run_at, now()),
              coalesce(_priority, 0), _dedup_key,
              case when cardinality(_deps) > 0 and not _doomed then _waiting + 1 else 0 end,
              case when _doomed then 'cancelled'::supaqueue.job_status else 'pending' end,
              case when _doomed then now() end,
              case when _doomed then 'a job it depends on failed or was cancelled' end)
      on conflict (queue, dedup_key)
        where dedup_key is not null and status in ('pending', 'in_progress')
        do nothing
      returning id into _id;
    exit when _id is not null;
    select id into _id from supaqueue.job
      where queue = _queue and dedup_key = _dedup_key and status in ('pending', 'in_progress');
    if found then
      return _id;
    end if;
    -- the holder of the key finished in between: try again
  end loop;

  if cardinality(_deps) > 0 then
    insert into supaqueue.job_dependency (job, depends_on) select _id, d from unnest(_deps) d;
    if not _doomed then
      update supaqueue.job set pending_dependencies = pending_dependencies - 1
        where id = _id returning pending_dependencies into _left;
      if _left = 0 then
        perform supaqueue.dispatch(_queue);
      end if;
    end if;
  end if;
  return _id;
end
$$;
