-- supaqueue 0004: the periodic tick, queue management for the Pulumi provider, the stats view.

-- One pass of periodic work, run every second: fail expired leases (an attempt that never
-- reported), dispatch what became due (run_at, backoff, refilled rate-limit tokens), and prune
-- finished jobs past their queue's retention. Each part is bounded so one tick stays short.
create function supaqueue.tick() returns jsonb
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
      where not q.paused
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
    delete from supaqueue.job
      where id in (
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

-- What pg_cron < 1.5 (no seconds schedules) runs every minute: tick about once a second until the
-- minute is nearly over. Each tick commits on its own so pg_net sends its requests at once.
-- Neither SECURITY DEFINER nor SET: a procedure with either may not COMMIT.
create procedure supaqueue.tick_loop(_seconds integer default 59)
language plpgsql
as $$
declare
  _started timestamptz := pg_catalog.clock_timestamp();
  _until timestamptz;
begin
  _until := least(_started + pg_catalog.make_interval(secs => _seconds),
                  pg_catalog.date_trunc('minute', _started) + interval '58.5 seconds');
  loop
    -- uninstalled while running
    exit when pg_catalog.to_regproc('supaqueue.tick') is null;
    begin
      perform supaqueue.tick();
    exception when others then
      raise warning 'supaqueue.tick failed: %', sqlerrm;
    end;
    commit;
    exit when pg_catalog.clock_timestamp() >= _until;
    perform pg_catalog.pg_sleep(1);
    -- a fresh transaction after the sleep, so that the next tick's now() is not a second old
    commit;
  end loop;
end
$$;

-- Sets the number of workers of a queue. Free workers go at once; busy ones finish their job
-- first (marked retiring), so no call in flight is cut off. Returns the new count.
create function supaqueue.set_worker_count(_queue uuid, _count integer) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _active integer;
  _n integer;
begin
  if _count is null or _count < 0 then
    raise exception 'supaqueue.set_worker_count: worker count must be 0 or more, got %', _count
      using errcode = '22023';
  end if;
  -- serialises concurrent resizes of one queue
  perform 1 from supaqueue.queue where id = _queue for no key update;
  if not found then
    raise exception 'supaqueue.set_worker_count: there is no queue with id %', _queue
      using errcode = '23503';
  end if;
  select count(*) into _active from supaqueue.worker where queue = _queue and not retiring;

  if _count > _active then
    update supaqueue.worker set retiring = false
      where id in (select id from supaqueue.worker where queue = _queue and retiring
                   limit _count - _active);
    get diagnostics _n = row_count;
    insert into supaqueue.worker (queue)
      select _queue from generate_series(1, _count - _active - _n);
  elsif _count < _active then
    delete from supaqueue.worker
      where id in (select id from supaqueue.worker
                    where queue = _queue and not locked and not retiring
                    limit _active - _count for update skip locked);
    get diagnostics _n = row_count;
    if _active - _count - _n > 0 then
      update supaqueue.worker set retiring = true
        where id in (select id from supaqueue.worker where queue = _queue and not retiring
                     order by locked desc limit _active - _count - _n for update);
      -- a worker that was free after all (its dispatcher rolled back) can go now
      delete from supaqueue.worker where queue = _queue and retiring and not locked;
    end if;
  end if;
  return _count;
end
$$;

create function supaqueue.unfinished_job_count(_queue uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select count(*) from supaqueue.job
   where queue = _queue and status in ('pending', 'in_progress')
$$;

-- Removes a queue with its workers, jobs and history. Refuses (SQLSTATE SQ001) while it holds
-- unfinished jobs, unless _discard_unfinished; discarded jobs' dependents elsewhere are cancelled.
-- Returns false when there is no such queue.
create function supaqueue.drop_queue(_queue uuid, _discard_unfinished boolean default false)
returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  _name text;
  _unfinished bigint;
begin
  -- FOR UPDATE also blocks new jobs (their foreign-key check) until this transaction ends.
  select name into _name from supaqueue.queue where id = _queue for update;
  if not found then
    return false;
  end if;
  _unfinished := supaqueue.unfinished_job_count(_queue);
  if _unfinished > 0 and not coalesce(_discard_unfinished, false) then
    raise exception 'queue "%" (%) still has % unfinished job(s)', _name, _queue, _unfinished
      using errcode = 'SQ001',
            hint = 'Let them finish, or drop the queue with _discard_unfinished => true '
                   '(in Pulumi: discard_unfinished_on_delete: true) to discard them.';
  end if;
  -- Wait for enqueues that hold one of these jobs FOR SHARE (a new dependent elsewhere), so that
  -- the pass below sees their edges; later ones find the jobs gone and fail.
  perform 1 from supaqueue.job where queue = _queue and status in ('pending', 'in_progress')
    for update;
  -- One pass over the dependency graph for all discarded jobs at once.
  with recursive dependents (job) as (
    select d.job from supaqueue.job_dependency d
      join supaqueue.job j on j.id = d.depends_on
     where j.queue = _queue and j.status in ('pending', 'in_progress')
    union
    select d.job from supaqueue.job_dependency d join dependents x on d.depends_on = x.job
  )
  update supaqueue.job j
    set status = 'cancelled', finished_at = now(), updated_at = now(),
        last_error = format('cancelled: a job it depends on was discarded with queue %s', _name)
    from dependents x
    where j.id = x.job and j.status = 'pending' and j.queue <> _queue;
  delete from supaqueue.current_job where job in (select id from supaqueue.job where queue = _queue);
  delete from supaqueue.job where queue = _queue;
  delete from supaqueue.queue where id = _queue;
  return true;
end
$$;

create view supaqueue.queue_stats as
select
  q.id as queue,
  q.name,
  q.paused,
  coalesce(c.pending, 0) as pending,
  coalesce(c.in_progress, 0) as in_progress,
  coalesce(c.success, 0) as success,
  coalesce(c.failed, 0) as failed,
  coalesce(c.cancelled, 0) as cancelled,
  now() - (select min(j.created_at) from supaqueue.job j
            where j.queue = q.id and j.status = 'pending') as oldest_pending_age,
  (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring) as workers,
  (select count(*) from supaqueue.worker w where w.queue = q.id and w.locked) as busy_workers,
  coalesce(a.attempts, 0) as attempts_last_minute,
  coalesce(a.failures, 0) as failures_last_minute
from supaqueue.queue q
left join lateral (
  select
    count(*) filter (where j.status = 'pending') as pending,
    count(*) filter (where j.status = 'in_progress') as in_progress,
    count(*) filter (where j.status = 'success') as success,
    count(*) filter (where j.status = 'failed') as failed,
    count(*) filter (where j.status = 'cancelled') as cancelled
  from supaqueue.job j where j.queue = q.id
) c on true
left join lateral (
  select count(*) as attempts, count(*) filter (where h.outcome <> 'success') as failures
  from supaqueue.job_attempt h
  where h.queue = q.id and h.ended_at > now() - interval '1 minute'
) a on true;

-- Removes supaqueue: its pg_cron jobs, then the schema with everything in it (this function too;
-- a running PL/pgSQL function survives its own DROP). The Vault secret belongs to the provider.
-- sql/uninstall.sql does the same where this function is missing. Owner only (see 0005).
create function supaqueue.uninstall() returns void
language plpgsql security definer
set search_path = ''
as $$
begin
  if to_regclass('cron.job') is not null then
    perform cron.unschedule(j.jobid) from cron.job j where j.jobname like 'supaqueue%';
  end if;
  drop schema supaqueue cascade;
end
$$;
