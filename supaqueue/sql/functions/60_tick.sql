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
  _expired integer := 0;
  _dispatched integer := 0;
  _pruned integer := 0;
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

  -- 0027: holds whose time has passed (they hold nothing any more; the table stays tiny)
  delete from supaqueue.queue_hold h
   where h.queue in (select o.queue from supaqueue.queue_hold o
                      where o.held_until <= clock_timestamp() for update skip locked);

  for _queue in
    select q.id from supaqueue.queue q
      where not q.paused and q.operator_paused_at is null
        and not exists (select 1 from supaqueue.queue_hold h
                         where h.queue = q.id and h.held_until > clock_timestamp())
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

  -- Retention is no longer done here (issue 26 item 4): `supaqueue.prune_history()`, its own cron job, deletes
  -- in small committed batches, so this transaction (whose dispatches pg_net sends only when it
  -- commits) never waits on a large delete. `pruned` stays in the answer for callers that read it.

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

-- Retention (issue 26 item 4; docs/architecture.md, "Retention"): one batch of one queue's finished jobs
-- older than its retention_seconds, oldest first, after (_after_at, _after_id) (null: from the
-- oldest). A finished job is kept while a dependent still waits (its result goes into that
-- dispatch). Rows another transaction holds (an operator's retry, an enqueue's foreign-key check)
-- are skipped, never waited for. `last_at` / `last_id`: where the next batch starts; null when
-- this batch was the queue's last.
CREATE OR REPLACE FUNCTION supaqueue._prune_batch(_queue uuid, _limit integer, _after_at timestamp with time zone, _after_id uuid, OUT deleted integer, OUT last_at timestamp with time zone, OUT last_id uuid) RETURNS record
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _cutoff timestamptz;
  _seen integer;
begin
  deleted := 0;
  select now() - make_interval(secs => q.retention_seconds) into _cutoff
    from supaqueue.queue q where q.id = _queue and q.retention_seconds is not null;
  if _cutoff is null then
    return;  -- the queue is gone or keeps its jobs for ever now
  end if;
  with candidate as materialized (
    select j.id, j.finished_at from supaqueue.job j
     where j.queue = _queue and j.finished_at is not null and j.finished_at < _cutoff
       and j.finished_at >= coalesce(_after_at, '-infinity')
       and (_after_at is null or (j.finished_at, j.id) > (_after_at, _after_id))
     order by j.finished_at, j.id
     limit _limit
     for update skip locked),
  gone as (
    delete from supaqueue.job dead using candidate c
     where dead.id = c.id
       and dead.finished_at is not null and dead.finished_at < _cutoff
       and not exists (
         select 1 from supaqueue.job_dependency d
           join supaqueue.job dj on dj.id = d.job
          where d.depends_on = dead.id and dj.status in ('pending', 'in_progress'))
     returning 1)
  select (select count(*) from gone), (select count(*) from candidate), l.finished_at, l.id
    into deleted, _seen, last_at, last_id
    from (select 1) one
    left join lateral (select c.finished_at, c.id from candidate c
                        order by c.finished_at desc, c.id desc limit 1) l on true;
  if _seen < _limit then
    -- nothing older is left in this queue (rows skipped as locked: the next run takes them)
    last_at := null;
    last_id := null;
  end if;
end
$$;

-- Retention (issue 26 item 4), run by the cron job `supaqueue-retention` (see cron_jobs_for), never inside the
-- tick: each batch is its own short transaction, so no lock is held for longer than one batch and
-- dispatch, completion and enqueue never wait on a large delete. The batch size adapts so that a
-- batch takes about _batch_ms (100..10000 rows; per-row cost grows with attempts, dependencies
-- and table bloat); a run goes on until every queue is caught up or _seconds have passed.
-- No SET clause and not SECURITY DEFINER: a procedure with either cannot COMMIT.
CREATE OR REPLACE PROCEDURE supaqueue.prune_history(IN _seconds numeric DEFAULT 50, IN _batch_ms numeric DEFAULT 50, INOUT _pruned bigint DEFAULT NULL::bigint)
    LANGUAGE plpgsql
    AS $$
declare
  _until timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => _seconds);
  _queues uuid[];
  _queue uuid;
  _limit integer := 500;
  _started timestamptz;
  _ms numeric;
  _deleted integer;
  _at timestamptz;
  _id uuid;
begin
  _pruned := 0;
  _queues := array(select q.id from supaqueue.queue q
                    where q.retention_seconds is not null order by q.id);
  foreach _queue in array _queues loop
    _at := null;
    _id := null;
    loop
      -- uninstalled while running
      exit when pg_catalog.to_regprocedure(
        'supaqueue._prune_batch(uuid,integer,timestamp with time zone,uuid)') is null;
      _started := pg_catalog.clock_timestamp();
      begin
        select b.deleted, b.last_at, b.last_id into _deleted, _at, _id
          from supaqueue._prune_batch(_queue, _limit, _at, _id) b;
      exception when others then
        -- one queue's failure must not stop the others
        raise warning 'supaqueue.prune_history: queue %: %', _queue, sqlerrm;
        _deleted := 0;
        _at := null;
      end;
      commit;
      _pruned := _pruned + coalesce(_deleted, 0);
      exit when _at is null;
      _ms := extract(epoch from pg_catalog.clock_timestamp() - _started) * 1000;
      -- at most doubled or halved per batch, so one slow batch (a checkpoint) does not swing it
      _limit := least(10000, greatest(100, round(_limit * least(2, greatest(0.5,
                  _batch_ms / greatest(_ms, 1))))))::integer;
      exit when pg_catalog.clock_timestamp() >= _until;
    end loop;
    exit when pg_catalog.clock_timestamp() >= _until;
  end loop;
end
$$;

-- Issue 26 item 4 moved retention from the tick into its own cron job: schedule it at once where supaqueue's
-- cron jobs are already scheduled by this role in this database, so that retention does not
-- pause between this upgrade and the next `pulumi up` (which reconciles too).
DO $$
begin
  if pg_catalog.to_regclass('cron.job') is null then
    return;  -- no pg_cron in this database: nothing schedules supaqueue's jobs here
  end if;
  -- planned only when reached, so only where cron.job exists
  if exists (select 1 from cron.job j
              where j.jobname = 'supaqueue-tick' and j.username = current_user
                and j.database = pg_catalog.current_database()) then
    perform supaqueue.reconcile_cron();
  end if;
end
$$;
