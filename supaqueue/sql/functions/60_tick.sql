-- supaqueue functions/60_tick.sql: The tick: expired leases, due jobs, pruning, every second.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

CREATE OR REPLACE FUNCTION supaqueue.tick() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
  -- 0018: leases whose dispatch met no dispatcher (HTTP 404) go back without an attempt
  perform supaqueue._hold_missing_dispatcher();

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

  -- 0017: workers whose abandoned call can no longer be running become free for the loop below
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

  -- 0026: the state of keys idle for 10 minutes goes, once their bucket is full again (a key
  -- that comes back starts afresh, with a full bucket: never a call too many). FOR UPDATE SKIP
  -- LOCKED: not a key an enqueue holds (KEY SHARE) or a dispatch serves; a worker still counting
  -- against the key keeps it; so does a hold.
  delete from supaqueue.queue_key k
   using supaqueue.queue q
   where (k.queue, k.key) in (
     select i.queue, i.key from supaqueue.queue_key i
      where i.due_at is null and i.served_at < now() - interval '10 minutes'
      order by i.served_at limit 1000
        for update skip locked)
     and q.id = k.queue
     and (k.held_until is null or k.held_until < now())
     and (k.refilled_at is null or q.rate_limit_per_key is null
          or k.refilled_at + make_interval(secs => greatest(1, coalesce(
               q.rate_limit_burst_per_key, ceil(q.rate_limit_per_key))) / q.rate_limit_per_key)
             < now())
     and not exists (select 1 from supaqueue.worker w where w.queue = k.queue and w.key = k.key);

  return jsonb_build_object('expired', _expired, 'dispatched', _dispatched, 'pruned', _pruned);
end
$$;

CREATE OR REPLACE PROCEDURE supaqueue.tick_loop(IN _seconds integer DEFAULT 59)
    LANGUAGE plpgsql
    AS $$
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
