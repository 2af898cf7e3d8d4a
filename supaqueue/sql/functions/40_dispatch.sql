-- supaqueue functions/40_dispatch.sql: Dispatch: free workers take jobs, the function claims its
-- lease, chained claims, held workers.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- What claiming a lease returns once it is claimed: the job, or {"refused": reason} (the attempt
-- then ended as refused) when it cannot run. One lease's case of _claimed_jobs.
CREATE OR REPLACE FUNCTION supaqueue._claim_document(_cj supaqueue.current_job) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _doc jsonb := supaqueue._claimed_jobs(array[_cj]) -> 0;
begin
  if _doc ? 'refused' then
    perform supaqueue.refuse_current_job(_cj.id, _doc ->> 'refused');
    return jsonb_build_object('refused', _doc ->> 'refused');
  end if;
  return _doc;
end
$$;

-- Kept for callers of older versions: _claimed_jobs' answer for one lease.
CREATE OR REPLACE FUNCTION supaqueue._claimed_job(_cj supaqueue.current_job) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue._claimed_jobs(array[_cj]) -> 0;
end
$$;

-- The claim documents of claimed leases, in one statement whatever their number (a batch's
-- claim, claim_batch; one lease's, _claim_document): a JSON array in the leases' order of, per
-- lease, its document or, when it cannot run, {"refused": reason, "current_job": {id, job}}
-- (the caller ends it: refuse_current_job). Cannot run: a payload over max_payload_bytes()
-- (enqueue refuses those; this also covers a payload updated in place since) or dependency
-- results over max_dependency_results_bytes().
-- The document: the lease, the call's deadline, the job with `job.body` (the exact JSON text to
-- send) and the queue's call settings. The body's rule: a step whose payload is an object
-- without its own `dependency_results` key (or null) gets its dependencies' results under that
-- key; any other payload is sent as it is.
-- plpgsql, not SQL: a SQL function's plan is not cached between calls (Postgres 15); a generic
-- plan, the same for one lease or fifty (a custom plan per call cost a chained job 0.5 ms), by
-- index only (a hash join over the whole job table otherwise looks cheap to it).
CREATE OR REPLACE FUNCTION supaqueue._claimed_jobs(_cjs supaqueue.current_job[]) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
begin
  return (
    select coalesce(jsonb_agg(
      case
        when r.reason is not null then jsonb_build_object(
          'refused', r.reason, 'current_job', jsonb_build_object('id', c.id, 'job', c.job))
        else jsonb_build_object(
          'current_job', jsonb_build_object(
            'id', c.id, 'worker', c.worker, 'job', c.job,
            'lease_expires_at', c.lease_expires_at, 'claimed_at', c.claimed_at,
            -- 0017: the call's deadline on the database's clock, and the time left to it now:
            -- the dispatcher counts that from when it sent the claim, so skew cannot make it
            -- later
            'deadline', t.deadline,
            'deadline_in_ms', greatest(0, floor(
              extract(epoch from t.deadline - clock_timestamp()) * 1000))::bigint),
          'job', jsonb_build_object(
            'id', j.id, 'queue', j.queue, 'payload', j.payload, 'attempts', j.attempts,
            'dependency_results', d.deps,
            'body', case
                      when d.deps = '{}'::jsonb then p.text
                      when jsonb_typeof(j.payload) = 'null'
                        then jsonb_build_object('dependency_results', d.deps)::text
                      when jsonb_typeof(j.payload) = 'object'
                           and not j.payload ? 'dependency_results'
                        then (j.payload || jsonb_build_object('dependency_results', d.deps))::text
                      else p.text
                    end),
          'queue', jsonb_build_object(
            'id', q.id, 'name', q.name, 'edge_function_name', q.edge_function_name,
            'method', q.method, 'default_headers', q.default_headers, 'timeout_ms', q.timeout_ms),
          'limits', jsonb_build_object('max_result_bytes', supaqueue.max_result_bytes()))
      end
      order by c.ordinality), '[]'::jsonb)
    from unnest(_cjs) with ordinality c
    join supaqueue.job j on j.id = c.job
    join supaqueue.queue q on q.id = j.queue
    cross join lateral (select j.payload::text as text) p
    cross join lateral (
      select coalesce(jsonb_object_agg(dd.depends_on::text, coalesce(dj.result, 'null'::jsonb)),
                      '{}'::jsonb) as deps,
             coalesce(sum(octet_length(dj.result::text)), 0) as bytes
        from supaqueue.job_dependency dd
        join supaqueue.job dj on dj.id = dd.depends_on
       where dd.job = j.id) d
    cross join lateral (
      select case
               when octet_length(p.text) > supaqueue.max_payload_bytes() then format(
                 'the payload is %s bytes, over the limit of %s bytes',
                 octet_length(p.text), supaqueue.max_payload_bytes())
               when d.bytes > supaqueue.max_dependency_results_bytes() then format(
                 'the results of the jobs it depends on total %s bytes, over the limit of %s bytes',
                 d.bytes, supaqueue.max_dependency_results_bytes())
             end as reason) r
    cross join lateral (
      select coalesce(c.claimed_at, c.started_at)
               + make_interval(secs => q.timeout_ms / 1000.0) as deadline) t
  );
end
$$;

-- Keys (issue 26; docs/architecture/dispatch.md, "Keys and fairness"). A keyed job that became
-- ready (enqueued, retried, its dependencies done, retried by the operator): its key must be
-- due by the job's run_at. Called by the job triggers _450_job_key_ready_*. Never waits for a
-- dispatcher: a key row another transaction holds gets a wake row instead (_key_wakes).
CREATE OR REPLACE FUNCTION supaqueue._key_ready(_queue uuid, _key text, _run_at timestamp with time zone) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _due timestamptz;
begin
  -- KEY SHARE until this transaction ends: a dispatcher makes a key idle only under FOR UPDATE
  -- (SKIP LOCKED), so it cannot make this key idle before this job is visible to it.
  select k.due_at into _due from supaqueue.queue_key k
   where k.queue = _queue and k.key = _key
     for key share skip locked;
  if found then
    if _due is not null and _due <= _run_at then
      return;  -- due already (the usual case for a key with a backlog): nothing to write
    end if;
    update supaqueue.queue_key k
       set due_at = least(coalesce(k.due_at, 'infinity'::timestamptz), _run_at)
     where (k.queue, k.key) = (select l.queue, l.key from supaqueue.queue_key l
                                where l.queue = _queue and l.key = _key
                                  for no key update skip locked);
    if found then
      return;
    end if;
  elsif supaqueue._key_insert_lock(_queue, _key) then
    -- a new key (a row being made idle or removed is held FOR UPDATE: the insert conflicts)
    insert into supaqueue.queue_key (queue, key, due_at) values (_queue, _key, _run_at)
      on conflict (queue, key) do nothing;
    if found then
      return;
    end if;
  end if;
  insert into supaqueue.queue_key_wake (queue, key, run_at) values (_queue, _key, _run_at);
end
$$;

-- The bucket of a key's insert lock (_key_insert_lock), 0..63: a batch over many new keys takes
-- each of its buckets' lock once (tg__dispatch_after_insert), not once per key. Pure; inlined
-- into its callers, which a SET clause would prevent.
CREATE OR REPLACE FUNCTION supaqueue._key_bucket(_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select pg_catalog.hashtext(_key) & 63
$$;

-- Whether this transaction may insert the state row of a new key: it holds (or has just taken) the
-- transaction-level advisory lock of the key's bucket (one of 64 per queue, so a batch over
-- 10,000 new keys takes at most 64 locks). Every insert of a queue_key row takes it first, so an
-- insert never meets another transaction's uncommitted row of the same key and never waits: two
-- transactions each enqueueing new keys in the other's order would otherwise deadlock. False:
-- another transaction is inserting a key of that bucket; the caller leaves a wake row instead.
CREATE OR REPLACE FUNCTION supaqueue._key_insert_lock(_queue uuid, _key text) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext(_queue::text),
                                              supaqueue._key_bucket(_key))
$$;

-- Makes the keys of a queue's wake rows due (see _key_ready); a wake whose key row is still held
-- by another transaction stays for the next dispatch. Returns the wakes done.
CREATE OR REPLACE FUNCTION supaqueue._key_wakes(_queue uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _w supaqueue.queue_key_wake;
  _n integer := 0;
begin
  for _w in
    select * from supaqueue.queue_key_wake w where w.queue = _queue
     order by w.id limit 1000 for update skip locked
  loop
    update supaqueue.queue_key k
       set due_at = least(coalesce(k.due_at, 'infinity'::timestamptz), _w.run_at)
     where (k.queue, k.key) = (select l.queue, l.key from supaqueue.queue_key l
                                where l.queue = _queue and l.key = _w.key
                                  for no key update skip locked);
    if not found and supaqueue._key_insert_lock(_queue, _w.key) then
      insert into supaqueue.queue_key (queue, key, due_at) values (_queue, _w.key, _w.run_at)
        on conflict (queue, key) do nothing;
    end if;
    if found then
      delete from supaqueue.queue_key_wake where id = _w.id;
      _n := _n + 1;
    end if;
  end loop;
  return _n;
end
$$;

-- A chain's next job from its own key when _next_keyed_job finds no other key to serve (none is
-- due, or every due one is being served by another dispatcher, whose lock it skips: usually its
-- own key's row, locked by a concurrent report of the same key). Without this, the chains of one
-- busy key ended whenever two reports met, and their jobs went back through pg_net
-- (docs/architecture/dispatch.md, "Keys and fairness"). No key lock is needed: the chaining
-- worker already counts against its key (worker.key), so taking that key's next job adds no busy
-- worker, and the count (others than this worker) only stops a chain above a lowered limit. The
-- key's turn is not moved (its row is another's to write): only when its turn has come (due, not
-- held), and never with rate_limit_per_key (a token is a write to the row). Null: none.
CREATE OR REPLACE FUNCTION supaqueue._chain_own_key_job(_q supaqueue.queue, _chain_worker uuid, _since_serve text[]) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _key text;
  _now timestamptz := clock_timestamp();
  _job uuid;
begin
  if _q.rate_limit_per_key is not null then
    return null;
  end if;
  select w.key into _key from supaqueue.worker w where w.id = _chain_worker;
  if _key is null or _key = any (_since_serve)
     or not exists (select 1 from supaqueue.queue_key k
                     where k.queue = _q.id and k.key = _key and k.due_at <= _now
                       and (k.held_until is null or k.held_until <= _now))
     or (_q.workers_per_key is not null
         and (select count(*) from supaqueue.worker w
               where w.queue = _q.id and w.key = _key
                 and w.id <> _chain_worker) >= _q.workers_per_key) then
    return null;
  end if;
  select j.id into _job from supaqueue.job j
   where j.queue = _q.id and j.key = _key and j.status = 'pending'
     and j.pending_dependencies = 0 and j.run_at <= _now
   order by j.priority desc, j.run_at, j.id
   limit 1
     for update skip locked;
  return _job;
end
$$;

-- Which keyed job next. The due key with the earliest due_at (one probe of queue_key_due_idx,
-- however many keys) gives its first ready job by priority, then run_at, if it is within its
-- limits; serving it moves it to the back (due_at = now), so keys with ready jobs take turns.
-- A key that cannot be served moves: held (held_until) → to held_until; out of tokens
-- (rate_limit_per_key) → to its next token; at workers_per_key → to the back; no ready job → to
-- its next job's run_at, or idle (due_at null).
-- With per-key limits, the key's row stays locked (FOR NO KEY UPDATE) until the caller's
-- transaction ends, so concurrent dispatchers skip the key and its busy count (workers whose
-- `key` it is, held ones included; the chaining worker not) and its tokens cannot be overtaken.
-- Without (fairness only), keys are read unlocked and moved only where no one else holds them:
-- concurrent dispatchers may then serve one busy key at once, as they serve a queue without keys.
-- _since_serve: keys moved to the back since the last job this dispatch took; meeting one again
-- means every due key has been looked at. Returns the job (locked FOR UPDATE), or null.
CREATE OR REPLACE FUNCTION supaqueue._next_keyed_job(_q supaqueue.queue, _chain_worker uuid, INOUT _since_serve text[], OUT _job uuid) RETURNS record
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _limited boolean := _q.workers_per_key is not null or _q.rate_limit_per_key is not null;
  _k supaqueue.queue_key;
  _now timestamptz;
  _cap double precision;
  _tokens double precision;
  _busy integer;
  _next timestamptz;
  _back boolean;
  _idle boolean;
begin
  -- bounded: each pass takes a job or moves a key (a key's moves are bounded by its jobs and
  -- tokens); what is left over is for the next dispatch
  for _pass in 1..10000 loop
    _now := clock_timestamp();
    if _limited then
      select * into _k from supaqueue.queue_key k
       where k.queue = _q.id and k.due_at <= _now
       order by k.due_at
       limit 1
         for no key update skip locked;
    else
      select * into _k from supaqueue.queue_key k
       where k.queue = _q.id and k.due_at <= _now
       order by k.due_at
       limit 1;
    end if;
    if not found or _k.key = any (_since_serve) then
      if _chain_worker is not null and _limited then
        -- no other key to serve now: a chain may go on with its own key's next job
        _job := supaqueue._chain_own_key_job(_q, _chain_worker, _since_serve);
      end if;
      return;
    end if;
    _next := null;
    _back := false;
    _idle := false;
    _tokens := null;

    if _k.held_until > _now then
      _next := _k.held_until;
    elsif _q.workers_per_key is not null
          and (select count(*) from supaqueue.worker w
                where w.queue = _q.id and w.key = _k.key
                  and w.id is distinct from _chain_worker) >= _q.workers_per_key then
      _back := true;
    else
      if _q.rate_limit_per_key is not null then
        _cap := greatest(1, coalesce(_q.rate_limit_burst_per_key, ceil(_q.rate_limit_per_key)));
        _tokens := least(_cap, coalesce(
          _k.tokens + extract(epoch from _now - _k.refilled_at) * _q.rate_limit_per_key, _cap));
      end if;
      if _tokens < 1 then
        _next := _now + make_interval(secs => (1 - _tokens) / _q.rate_limit_per_key);
      else
        select j.id into _job from supaqueue.job j
         where j.queue = _q.id and j.key = _k.key and j.status = 'pending'
           and j.pending_dependencies = 0 and j.run_at <= _now
         order by j.priority desc, j.run_at, j.id
         limit 1
           for update skip locked;
        if _job is not null then
          _tokens := _tokens - 1;
          _since_serve := '{}';
        end if;
        -- The key's next ready job (one more probe now saves a turn later, as a key with one job
        -- would otherwise come round again only to be found empty), else its next pending job's
        -- run_at (null: none), in one statement. A ready one: served, to the back; not served, a
        -- ready job another transaction holds (being taken, or locked by an enqueue of a job that
        -- depends on it): look again after the other keys.
        select r.ready,
               case when not r.ready then (
                 select j.run_at from supaqueue.job j
                  where j.queue = _q.id and j.key = _k.key and j.status = 'pending'
                    and j.pending_dependencies = 0 and j.id is distinct from _job
                  order by j.run_at
                  limit 1) end
          into _back, _next
          from (select exists (select 1 from supaqueue.job j
                                where j.queue = _q.id and j.key = _k.key and j.status = 'pending'
                                  and j.pending_dependencies = 0 and j.run_at <= _now
                                  and j.id is distinct from _job) as ready) r;
        _idle := not _back and _next is null;
      end if;
    end if;

    if _idle then
      -- Nothing (else) pending: idle, locking and writing in one statement (a key with one job,
      -- e.g. 10,000 tenants of one job each, goes idle once per job). FOR UPDATE conflicts with
      -- the KEY SHARE of an enqueue of this key that has not committed (its job is not visible
      -- yet), and with a concurrent dispatcher's lock: then look again after the other keys.
      update supaqueue.queue_key k
         set due_at = null,
             served_at = case when _job is not null then _now else coalesce(k.served_at, _now) end,
             tokens = case when _tokens is not null then _tokens else k.tokens end,
             refilled_at = case when _tokens is not null then _now else k.refilled_at end
       where (k.queue, k.key) = (select l.queue, l.key from supaqueue.queue_key l
                                  where l.queue = _q.id and l.key = _k.key
                                    for update skip locked);
      _back := not found;
    end if;
    if _back then
      _next := clock_timestamp();
      if _job is null then
        _since_serve := _since_serve || _k.key;
      end if;
    end if;
    if _back or not _idle then
      -- (a row another dispatcher holds is moved by that one)
      update supaqueue.queue_key k
         set due_at = _next,
             served_at = case when _job is not null then _now else coalesce(k.served_at, _now) end,
             tokens = case when _tokens is not null then _tokens else k.tokens end,
             refilled_at = case when _tokens is not null then _now else k.refilled_at end
       where (k.queue, k.key) = (select l.queue, l.key from supaqueue.queue_key l
                                  where l.queue = _q.id and l.key = _k.key
                                    for no key update skip locked);
    end if;
    if _job is not null then
      return;
    end if;
  end loop;
end
$$;

CREATE OR REPLACE FUNCTION supaqueue._dispatch(_queue uuid, _chain_worker uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
  _held boolean := false;
  -- 0028: leases per call (1 unless the queue batches), the current call's batch id (its first
  -- lease's) and how many leases it has so far
  _batch_size integer := 1;
  _batch uuid;
  _in_batch integer := 0;
  _target integer;
  _ready integer;
  _oldest timestamptz;
  _keyed boolean;
  _wakes boolean;
  _any_keys boolean;
  _keyed_turn boolean := random() < 0.5;
  _since_serve text[] := '{}';
  _kid uuid;
  _have boolean;
  -- set-based batches (issue 26 item 5)
  _want integer;
  _jobs uuid[];
  _workers uuid[];
  _leases uuid[];
  _requests bigint[] := '{}';
begin
  -- Nothing to do when the queue is paused in the stack or by the operator (0013), or, but for
  -- a chain, when every worker is busy (the usual case at saturation, after each report): no job
  -- row gets probed or locked for nothing. One statement: each one a call runs costs more
  -- (executor start) than the lookups it makes here.
  -- 0027: nor while its target holds it (Retry-After; a primary-key probe of a tiny table).
  select q.* into _q from supaqueue.queue q
   where q.id = _queue and not q.paused and q.operator_paused_at is null
     and not exists (select 1 from supaqueue.queue_hold h
                      where h.queue = _queue and h.held_until > _now)
     and (_chain_worker is not null
          or exists (select 1 from supaqueue.worker w
                      where w.queue = _queue and not w.locked and not w.retiring));
  if not found then
    return 0;
  end if;

  if _chain_worker is null then
    -- Not configured yet (the Pulumi program writes it): jobs wait; the tick retries every second.
    select rtrim(u.value, '/') || '/' || coalesce(s.value, 'supaqueue'),
           exists (select 1 from supaqueue.dispatch_hold)
      into _url, _held
      from supaqueue.settings u
      left join supaqueue.settings s on s.key = 'dispatcher_slug'
      where u.key = 'functions_url';
    if _url is null then
      return 0;
    end if;
    -- 0018: the dispatcher answered 404 (deleted behind the stack's back): one job at a time
    -- probes it, and none while a probe is out (supaqueue._hold_missing_dispatcher).
    if _held and exists (select 1 from supaqueue.dispatch_hold h where h.probe_lease is not null)
    then
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
  if _chain_worker is not null or _held then
    _budget := least(coalesce(_budget, 1), 1);
  end if;

  -- Which job next (docs/architecture/dispatch.md, "Keys and fairness"): jobs without a key as
  -- before (by priority, then run_at), keyed jobs by supaqueue._next_keyed_job; when both have
  -- ready jobs the two take turns, the first turn drawn at random.
  -- The highest priority that has ready jobs without a key. Jobs are probed one priority at a
  -- time, so that `run_at <= now()` bounds each index range: jobs delayed to later (run_at, backoff)
  -- are never read, however many there are. The cost grows with the number of distinct priorities
  -- only. The probe also returns where that priority's first ready entry is (_from): the selection
  -- starts there instead of walking again over the entries of jobs taken since the last vacuum
  -- (dead, but kept in job_ready_idx until then: thousands at a busy queue, read twice per job
  -- before 0015). A job that became ready before _from since the probe is taken next time, as
  -- one that became ready just after the selection would be.
  select j.priority, j.run_at, j.id into _prio, _from_run_at, _from_id from supaqueue.job j
    where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
      and j.key is null
    order by j.priority desc, j.run_at, j.id
    limit 1;
  -- Keys (0026), in one statement (each costs): wakes to apply, keys due, any key state at all
  -- (a worker counts against a key only while its key has a row: the tick keeps those).
  select exists (select 1 from supaqueue.queue_key_wake w where w.queue = _queue),
         exists (select 1 from supaqueue.queue_key k
                  where k.queue = _queue and k.due_at <= clock_timestamp()),
         exists (select 1 from supaqueue.queue_key k where k.queue = _queue)
    into _wakes, _keyed, _any_keys;
  if _wakes then
    perform supaqueue._key_wakes(_queue);
    _keyed := exists (select 1 from supaqueue.queue_key k
                       where k.queue = _queue and k.due_at <= clock_timestamp());
    _any_keys := true;
  end if;

  -- 0028: a batched queue's calls carry up to batch_size leases each (chains never batch: a
  -- batch's report frees its workers and dispatches again). Fewer ready jobs than a full batch
  -- (batch_size, or the queue's workers if fewer) wait while the first of them in dispatch
  -- order has been due for less than batch_max_wait_ms (docs/architecture.md, "Batch delivery").
  if _chain_worker is not null and _q.batch_size > 1 then
    -- a chain begun before the queue was set to batch: its target now expects arrays, so the
    -- worker goes back to pg_net dispatch (report_and_claim frees it)
    return 0;
  end if;
  if _chain_worker is null and _q.batch_size > 1 then
    _batch_size := _q.batch_size;
    if _q.batch_max_wait_ms > 0 and not _held and (_prio is not null or _keyed) then
      _target := least(_batch_size, (select count(*) from supaqueue.worker w
                                      where w.queue = _queue and not w.retiring));
      -- Ready jobs without a key (job_ready_idx), then keyed ones (0026): those of the first
      -- due keys (queue_key_due_idx, job_key_ready_idx), each probe bounded by _target, so the
      -- cost does not grow with keys or backlog. Held keys and keys out of tokens are not due:
      -- their jobs cannot join a batch now and do not count. A due key without a ready job may
      -- hide a later one: the wait then ends by the oldest job seen (at once if none is seen).
      select count(*) into _ready from (
        select 1 from supaqueue.job j
         where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
           and j.key is null and j.run_at <= now()
         limit _target) r;
      select j.run_at into _oldest from supaqueue.job j
       where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
         and j.key is null and j.run_at <= now()
       order by j.priority desc, j.run_at, j.id
       limit 1;
      if _keyed and _ready < _target then
        select _ready + coalesce(sum(r.n), 0), least(_oldest, min(r.oldest))
          into _ready, _oldest
          from (select k.key from supaqueue.queue_key k
                 where k.queue = _queue and k.due_at <= clock_timestamp()
                 order by k.due_at
                 limit _target - _ready) k,
               lateral (select count(*) as n, min(j.run_at) as oldest from (
                          select j.run_at from supaqueue.job j
                           where j.queue = _queue and j.key = k.key and j.status = 'pending'
                             and j.pending_dependencies = 0 and j.run_at <= now()
                           limit _target) j) r;
      end if;
      if _ready < _target
         and _oldest > now() - make_interval(secs => _q.batch_max_wait_ms / 1000.0) then
        return 0;  -- the tick (every second) or the next enqueue looks again
      end if;
    end if;
  end if;

  -- Set-based batches (issue 26 item 5; docs/architecture.md, "Batch delivery"): a batched
  -- queue's jobs without a key, while none of its keys is due (the common case), are taken for
  -- all free workers at once in a few statements, not job by job: up to as many ready jobs as
  -- free workers and rate tokens, in the loop's order (priority, then run_at, one index range
  -- per priority), then a free worker for each, the jobs in progress, one request per
  -- batch_size leases, the leases. Jobs first, then workers, as below. Anything else (keys due,
  -- a chain, a held dispatcher) goes job by job through the loop below.
  if _batch_size > 1 and not _keyed and not _held and _prio is not null then
    select count(*) into _want from supaqueue.worker w
     where w.queue = _queue and not w.locked and not w.retiring;
    _want := least(_want, coalesce(_budget, _want));
    _jobs := '{}';
    loop
      exit when _prio is null or cardinality(_jobs) >= _want;
      _jobs := _jobs || array(
        select j.id from supaqueue.job j
         where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
           and j.key is null and j.priority = _prio and j.run_at <= now()
           and (j.run_at, j.id) >= (_from_run_at, _from_id)
         order by j.run_at, j.id
         limit _want - cardinality(_jobs)
           for update skip locked);
      exit when cardinality(_jobs) >= _want;
      -- nothing more due (or everything taken) at this priority: the next lower one
      select j.priority, j.run_at, j.id into _prio, _from_run_at, _from_id from supaqueue.job j
       where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
         and j.key is null and j.priority < _prio
       order by j.priority desc, j.run_at, j.id
       limit 1;
    end loop;
    if cardinality(_jobs) > 0 then
      _workers := array(
        select w.id from supaqueue.worker w
         where w.queue = _queue and not w.locked and not w.retiring
         limit cardinality(_jobs)
           for update skip locked);
      if cardinality(_workers) > 0 then
        select ds.decrypted_secret into _secret
          from vault.decrypted_secrets ds where ds.name = 'supaqueue_secret'
         order by ds.created_at desc limit 1;
      end if;
      -- jobs without a worker (another dispatcher took it) stay pending, unwritten
      if cardinality(_workers) > 0 and _secret is not null then
        _n := cardinality(_workers);
        _jobs := _jobs[1:_n];
        update supaqueue.worker set locked = true, key = null where id = any (_workers);
        update supaqueue.job
           set status = 'in_progress', attempts = attempts + 1, updated_at = now()
         where id = any (_jobs);
        _leases := array(select gen_random_uuid() from generate_series(1, _n));
        -- a batch's id is its first lease's (as below)
        for _b in 0 .. (_n - 1) / _batch_size loop
          _requests := _requests || net.http_post(
            url := _url,
            body := jsonb_build_object('batch', jsonb_build_object(
                      'id', _leases[_b * _batch_size + 1])),
            headers := jsonb_build_object('Content-Type', 'application/json',
                                          'supaqueue-secret', _secret),
            timeout_milliseconds := 5000);
        end loop;
        _lease := supaqueue._lease_deadline(_now, _q.timeout_ms, _q.lease_grace_ms);
        insert into supaqueue.current_job (id, worker, job, started_at, lease_expires_at,
                                           request_id, batch)
          select u.id, u.worker, u.job, _now, _lease,
                 _requests[((u.i - 1) / _batch_size + 1)::integer],
                 _leases[(((u.i - 1) / _batch_size) * _batch_size + 1)::integer]
            from unnest(_leases, _workers, _jobs) with ordinality u(id, worker, job, i);
      end if;
    end if;
    _budget := _n;  -- done: the loop below takes nothing more
  end if;

  loop
    exit when _budget is not null and _n >= _budget;

    -- Job first, then worker: a worker is only ever locked by a dispatcher that has a job for it.
    _have := false;
    for _pass in 1..2 loop
      if (_pass = 1) = _keyed_turn then
        continue when not _keyed;
        select n._job, n._since_serve into _kid, _since_serve
          from supaqueue._next_keyed_job(_q, _chain_worker, _since_serve) n;
        if _kid is null then
          _keyed := false;
          continue;
        end if;
        select * into _job from supaqueue.job where id = _kid;
        _have := true;
        exit;
      end if;
      loop
        exit when _prio is null;
        select * into _job from supaqueue.job
          where queue = _queue and status = 'pending' and pending_dependencies = 0
            and key is null and priority = _prio and run_at <= now()
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
            and j.key is null and j.priority < _prio
          order by j.priority desc, j.run_at, j.id
          limit 1;
      end loop;
      if _prio is not null then
        _have := true;
        exit;
      end if;
    end loop;
    exit when not _have;
    _keyed_turn := not _keyed_turn;

    if _chain_worker is null then
      select w.id into _worker from supaqueue.worker w
        where w.queue = _queue and not w.locked and not w.retiring
        limit 1 for update skip locked;
    else
      -- still locked from the job it just reported, and row-locked by the caller (which checked
      -- that it is not retiring): no write to the worker at all
      _worker := _chain_worker;
    end if;

    -- Decrypted only when there is something to send: idle ticks stay cheap.
    if _worker is not null and _chain_worker is null and _secret is null then
      select ds.decrypted_secret into _secret
        from vault.decrypted_secrets ds where ds.name = 'supaqueue_secret'
        order by ds.created_at desc limit 1;
      -- not configured yet, as above
    end if;
    if _worker is null or (_chain_worker is null and _secret is null) then
      -- The selected job stays pending. Its key must stay due: the selection may have made it
      -- idle (its only ready job was this one) or moved it on.
      if _job.key is not null then
        perform supaqueue._key_ready(_queue, _job.key, _job.run_at);
      end if;
      exit;
    end if;

    if _chain_worker is null then
      update supaqueue.worker set locked = true, key = _job.key where id = _worker;
    elsif _job.key is not null or _any_keys then
      -- the key the chained worker now counts against (a write only when it changes; in a queue
      -- without key state no worker has a key, so none is read)
      update supaqueue.worker set key = _job.key
       where id = _worker and key is distinct from _job.key;
    end if;
    update supaqueue.job
      set status = 'in_progress', attempts = attempts + 1, updated_at = now()
      where id = _job.id
      returning * into _job;

    _cj_id := gen_random_uuid();
    _lease := supaqueue._lease_deadline(_now, _q.timeout_ms, _q.lease_grace_ms);
    if _chain_worker is not null then
      _request := null;
    elsif _in_batch = 0 then
      -- References only: the function claims the lease and reads the rest from the database, so
      -- what goes through pg_net stays this small whatever the payload and dependency results.
      -- A batch's request names only its id (= its first lease's): the function claims every
      -- lease of the batch at once (claim_batch); the rest of them follow below, and pg_net
      -- sends the request only once this transaction committed them all.
      if _batch_size > 1 then
        _batch := _cj_id;
        _body := jsonb_build_object('batch', jsonb_build_object('id', _batch));
      else
        _body := jsonb_build_object(
          'current_job', jsonb_build_object('id', _cj_id, 'job', _job.id, 'attempt', _job.attempts));
      end if;

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
                                       claimed_at, batch)
      values (_cj_id, _worker, _job.id, _now, _lease, _request,
              case when _chain_worker is not null then _now end, _batch);
    if _held then
      update supaqueue.dispatch_hold set probe_lease = _cj_id, probed_at = _now;
    end if;

    _worker := null;
    _n := _n + 1;
    if _batch_size > 1 then
      _in_batch := _in_batch + 1;
      if _in_batch >= _batch_size then
        _in_batch := 0;  -- full: the next lease starts another call
      end if;
    end if;
  end loop;

  if _q.rate_limit_per_second is not null then
    update supaqueue.queue_bucket
      set tokens = _tokens - _n, refilled_at = _now
      where queue = _queue;
  end if;
  return _n;
end
$$;

-- Frees a worker after its (last) job; a retiring one goes: its job was its last.
CREATE OR REPLACE FUNCTION supaqueue._free_worker(_worker uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update supaqueue.worker set locked = false, key = null where id = _worker and not retiring;
  if not found then
    delete from supaqueue.worker where id = _worker;
  end if;
end
$$;

-- Called by the tick first. Unclaimed leases whose dispatch pg_net has answered with HTTP 404
-- (the platform's gateway found no function at the dispatcher's URL: it never ran, so nothing
-- claimed or called anything) go back to their jobs as if never dispatched: the job pending
-- again with its attempt count as before, the worker free. A probe that is no longer an
-- unclaimed lease (claimed, so the dispatcher is back; or ended otherwise) ends the hold.
-- pg_net's responses are found by request id within those created since the lease began
-- (net._http_response is indexed on `created` only); leases are normally claimed within
-- milliseconds, so this reads only the last moments' answers. Returns the leases given back.
CREATE OR REPLACE FUNCTION supaqueue._hold_missing_dispatcher() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _r record;
  _content text;
  _n integer := 0;
  _url text;
  _h supaqueue.dispatch_hold;
  _secret text;
begin
  delete from supaqueue.dispatch_hold h
   where h.probe_lease is not null
     and not exists (select 1 from supaqueue.current_job c
                      where c.id = h.probe_lease and c.claimed_at is null);
  -- An idle probe answered by anything but a 404 (the dispatcher answers a body without a lease
  -- 400 and changes nothing): the function is back.
  delete from supaqueue.dispatch_hold h
   where h.probe_request is not null
     and exists (select 1 from net._http_response r
                  where r.id = h.probe_request and r.created >= h.probed_at - interval '1 minute'
                    and r.status_code is not null and r.status_code <> 404);

  for _r in
    select c.id, c.job, c.worker, r.content
      from supaqueue.current_job c
      cross join lateral (
        select r.status_code, r.content from net._http_response r
         where r.id = c.request_id and r.created >= c.started_at - interval '1 minute'
         limit 1) r
     where c.claimed_at is null and c.request_id is not null and r.status_code = 404
     for update of c skip locked
  loop
    delete from supaqueue.current_job where id = _r.id;
    -- run_at named (unchanged) so that a keyed job's key becomes due again (_450_job_key_ready)
    update supaqueue.job
       set status = 'pending', attempts = greatest(attempts - 1, 0), run_at = run_at,
           updated_at = now()
     where id = _r.job and status = 'in_progress';
    perform supaqueue._free_worker(_r.worker);
    _content := _r.content;
    _n := _n + 1;
  end loop;

  if _n > 0 then
    select rtrim(u.value, '/') || '/' || coalesce(s.value, 'supaqueue') into _url
      from supaqueue.settings u
      left join supaqueue.settings s on s.key = 'dispatcher_slug'
     where u.key = 'functions_url';
    insert into supaqueue.dispatch_hold as h (reason, returned, probed_at)
      values (format('the dispatcher %s answered HTTP 404 (%s): it is not deployed; run '
                     '`pulumi up` to deploy it again. Jobs wait, no attempt is counted.',
                     coalesce(_url, '(no functions_url)'), left(coalesce(_content, ''), 200)),
              _n, clock_timestamp())
      on conflict (id) do update
        set returned = h.returned + excluded.returned, probe_lease = null;
  end if;

  -- Held with no job to probe with (nothing ready, or every queue paused): probe every 5 s with a
  -- request of no lease, so the hold ends once the function is back even while nothing waits.
  select * into _h from supaqueue.dispatch_hold for update skip locked;
  if found and _h.probe_lease is null
     and (_h.probed_at is null or _h.probed_at < clock_timestamp() - interval '5 seconds') then
    select rtrim(u.value, '/') || '/' || coalesce(s.value, 'supaqueue') into _url
      from supaqueue.settings u
      left join supaqueue.settings s on s.key = 'dispatcher_slug'
     where u.key = 'functions_url';
    select ds.decrypted_secret into _secret
      from vault.decrypted_secrets ds where ds.name = 'supaqueue_secret'
     order by ds.created_at desc limit 1;
    if _url is not null and _secret is not null then
      update supaqueue.dispatch_hold
         set probe_request = net.http_post(
               url := _url, body := '{"probe": "supaqueue dispatch hold"}'::jsonb,
               headers := jsonb_build_object('Content-Type', 'application/json',
                                             'supaqueue-secret', _secret),
               timeout_milliseconds := 5000),
             probed_at = clock_timestamp();
    end if;
  end if;
  return _n;
end
$$;

-- The worker of a call that may still be running stays locked until the call cannot be: the
-- request reached the target before the dispatcher abandoned it (at `claimed_at + timeout_ms`
-- at the latest: a proxy drops a request whose client has gone), and the platform stops the
-- target `target_wall_clock_ms` after it arrived. 0029: it names the lease (`held_for`), so that
-- the call's late answer can free it sooner (_release_held_for).
CREATE OR REPLACE FUNCTION supaqueue._hold_worker(_cj supaqueue.current_job) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update supaqueue.worker w
     set locked = true,
         held_for = _cj.id,
         held_until = greatest(clock_timestamp(),
                               coalesce(_cj.claimed_at, _cj.started_at)
                                 + make_interval(secs => q.timeout_ms / 1000.0))
                      + make_interval(secs => q.target_wall_clock_ms / 1000.0)
    from supaqueue.queue q
   where w.id = _cj.worker and q.id = w.queue;
end
$$;

-- Frees (or, retiring, removes) every held worker whose call can no longer be running.
CREATE OR REPLACE FUNCTION supaqueue._release_held_workers() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _worker uuid;
  _n integer := 0;
begin
  for _worker in
    select w.id from supaqueue.worker w
     where w.held_until is not null and w.held_until <= clock_timestamp()
     for update skip locked
  loop
    update supaqueue.worker set locked = false, held_until = null, held_for = null, key = null
     where id = _worker and not retiring;
    if not found then
      delete from supaqueue.worker where id = _worker;
    end if;
    _n := _n + 1;
  end loop;
  return _n;
end
$$;

-- 0029: the whole answer (`is_complete` true) of calls whose leases are no longer current came
-- after all (the operator cancelled the job, or the tick expired the lease of a slow dispatcher),
-- or the dispatcher refused such a lease instead of calling (refuse_current_job):
-- those calls are over, so the workers held for them are freed now, as _release_held_workers
-- frees them (a retiring one goes). Nothing for a lease no worker is held for (never held,
-- already released, a duplicate). Returns the queues of the workers freed, to dispatch.
-- A concurrent release by the tick or a resize locks the row first; this then sees its change.
CREATE OR REPLACE FUNCTION supaqueue._release_held_for(_leases uuid[]) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _queues uuid[];
begin
  with freed as (
    update supaqueue.worker set locked = false, held_until = null, held_for = null, key = null
     where held_for = any (_leases) and held_for is not null and not retiring
    returning queue)
  select coalesce(array_agg(distinct f.queue), '{}') into _queues from freed f;
  -- a statement of its own: it sees a worker that a concurrent resize made retiring meanwhile
  delete from supaqueue.worker where held_for = any (_leases) and held_for is not null;
  return _queues;
end
$$;

-- The function's claim of a dispatched lease: only a current, unclaimed lease of an in-progress
-- job; restarts its deadline (_lease_deadline) and returns _claim_document's answer, else null.
CREATE OR REPLACE FUNCTION supaqueue.claim_current_job(cur_job_id uuid, _attempt integer DEFAULT NULL::integer) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    AS $$
declare
  _cj supaqueue.current_job;
  _now timestamptz := clock_timestamp();
begin
  update supaqueue.current_job c
     set claimed_at = _now,
         lease_expires_at = supaqueue._lease_deadline(_now, q.timeout_ms, q.lease_grace_ms)
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

CREATE OR REPLACE FUNCTION supaqueue.dispatch(_queue uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue._dispatch(_queue, null);
end
$$;

-- Ends a claimed attempt that the dispatcher cannot run (invalid headers, a payload or dependency
-- results over the limits): a final failure with the reason, never retried, dependents cancelled.
-- Returns false, changing nothing of the job, when the lease is not current or was never claimed.
-- A refusal of a lease no longer current (cancelled, or expired by the tick) still frees the
-- worker held for it: the dispatcher refuses instead of calling the target (edge/handler.ts
-- `accept`, the one caller outside this file), and only the one that claimed the lease has its
-- document, so that call never began (_release_held_for; the queue then dispatches).
CREATE OR REPLACE FUNCTION supaqueue.refuse_current_job(cur_job_id uuid, _reason text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _cj supaqueue.current_job;
  _queue uuid;
  _dispatched integer;
begin
  delete from supaqueue.current_job where id = cur_job_id and claimed_at is not null
    returning * into _cj;
  if not found then
    foreach _queue in array supaqueue._release_held_for(array[cur_job_id]) loop
      _dispatched := supaqueue._dispatch(_queue, null);
    end loop;
    return false;
  end if;
  foreach _queue in array supaqueue._finish_attempt(
    _cj, 'refused', null, null,
    'refused by the dispatcher: ' || coalesce(_reason, 'no reason given'), null, null, null)
  loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return true;
end
$$;

CREATE OR REPLACE FUNCTION supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer DEFAULT NULL::integer, _response_excerpt text DEFAULT NULL::text, _error text DEFAULT NULL::text, _retry_after_seconds numeric DEFAULT NULL::numeric, _result jsonb DEFAULT NULL::jsonb, _duration_ms integer DEFAULT NULL::integer, _chain_jobs integer DEFAULT NULL::integer, _chain_elapsed_ms bigint DEFAULT NULL::bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    AS $$
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
    -- 0029: the whole answer of a call whose worker is held for it: the call is over, so the
    -- worker is freed and its queue dispatches; the answer itself is dropped (no chain either)
    if _is_complete then
      foreach _queue in array supaqueue._release_held_for(array[cur_job_id]) loop
        _dispatched := supaqueue._dispatch(_queue, null);
      end loop;
    end if;
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

-- 0028: the function's claim of a batch (every lease of one call, `current_job.batch`), in one
-- UPDATE with claim_current_job's conditions and deadline for each lease. Returns
-- {"jobs": [...]}: per lease claimed, _claim_document's answer (a refusal with its lease's
-- `current_job` {id, job} added); leases not current are left out (empty: nothing to call).
-- Set-based (issue 26 item 5): every document in one statement (_claimed_jobs).
-- Lock order (session 9): a batch's leases in lease id order, then (report_batch, a refusal
-- here) their jobs and workers. report_batch locks them in the same order: a second delivery's
-- claim, whose statement began before the first claim committed, locks each lease it visits
-- though the first one claimed it (Postgres locks the newest version, then finds it claimed),
-- and so met the first delivery's report ending the same leases in another order (40P01).
CREATE OR REPLACE FUNCTION supaqueue.claim_batch(_batch uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    AS $$
declare
  _cjs supaqueue.current_job[];
  _now timestamptz := clock_timestamp();
  _jobs jsonb;
  _refused jsonb;
begin
  with locked as materialized (
    -- ORDER BY runs before the lock: the leases are locked in id order
    select c.id from supaqueue.current_job c
     where c.batch = _batch and c.claimed_at is null and c.lease_expires_at > _now
     order by c.id
       for no key update of c),
  claimed as (
    update supaqueue.current_job c
       set claimed_at = _now,
           lease_expires_at = supaqueue._lease_deadline(_now, q.timeout_ms, q.lease_grace_ms)
      from locked l, supaqueue.job j, supaqueue.queue q
     where c.id = l.id
       and c.claimed_at is null
       and c.lease_expires_at > _now
       and j.id = c.job and j.status = 'in_progress'
       and q.id = j.queue
    returning c as cj)
  select array_agg(x.cj order by (x.cj).id) into _cjs from claimed x;
  if _cjs is null then
    return jsonb_build_object('jobs', '[]'::jsonb);
  end if;
  _jobs := supaqueue._claimed_jobs(_cjs);
  -- what cannot run ends now as refused (rare: a payload updated in place past the limit)
  for _refused in select e.value from jsonb_array_elements(_jobs) e where e.value ? 'refused' loop
    perform supaqueue.refuse_current_job((_refused -> 'current_job' ->> 'id')::uuid,
                                         _refused ->> 'refused');
  end loop;
  -- as claim_current_job: the next step is an HTTP call, not a write
  perform set_config('synchronous_commit', 'off', true);
  return jsonb_build_object('jobs', _jobs);
end
$$;

-- 0028: the outcomes of a batch's leases in one statement: a JSON array of objects with
-- end_current_job's arguments by name (`current_job`, `is_complete`, `is_successful`,
-- `status_code`, `response_excerpt`, `error`, `retry_after_seconds`, `result` (absent: none),
-- `duration_ms`). Each lease ends exactly as end_current_job would end it (its own attempt,
-- retry, result; a call that may still run holds its worker); never chains. Then each queue
-- concerned dispatches once. Returns a JSON array of booleans: whether each lease was current.
-- An outcome with `is_complete` true of a lease no longer current frees the worker held for its
-- call (0029, _release_held_for); the job is not touched.
-- Set-based (issue 26 item 5): the successes (complete and successful: the common case) end in
-- a few statements (leases, jobs, attempt rows, workers, dependents), each doing for every such
-- lease what _end_attempt does for one (keep the two in step); every other outcome ends through
-- _end_attempt as before. A report naming a lease twice goes lease by lease whole (the second
-- one is then not current).
CREATE OR REPLACE FUNCTION supaqueue.report_batch(_outcomes jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    AS $$
declare
  _o jsonb;
  _i integer;
  _cj supaqueue.current_job;
  _running boolean;
  _retry numeric;
  _queues uuid[] := '{}';
  _queue uuid;
  _current boolean[] := array_fill(false, array[jsonb_array_length(_outcomes)]);
  _set boolean;
  _ords integer[] := '{}';
  _jobs uuid[];
  _workers uuid[];
  _dispatched integer;
begin
  -- Every lease of the report first, locked in lease id order (claim_batch's order: see there;
  -- then jobs and workers), whatever the outcomes' order; in the statement that was already
  -- here, so the hot path takes no statement more. Whether each lease is named once.
  select u.once into _set
    from (select count(*) = count(distinct e.value ->> 'current_job') as once
            from jsonb_array_elements(_outcomes) e) u,
         (select count(*) from (
            select from supaqueue.current_job c
             where c.id in (select (e.value ->> 'current_job')::uuid
                              from jsonb_array_elements(_outcomes) e)
             order by c.id
               for update of c) l) n;
  if _set then
    with o as (
      select e.ordinality as ord, (e.value ->> 'current_job')::uuid as lease, e.value as o
        from jsonb_array_elements(_outcomes) with ordinality e
       where e.value -> 'is_complete' = 'true'::jsonb
         and e.value -> 'is_successful' = 'true'::jsonb),
    ended as (
      delete from supaqueue.current_job c using o
       where c.id = o.lease
      returning c.job, c.worker, c.started_at, o.ord, o.o),
    done as (
      -- as _end_attempt's success: locks, ends and reads the job in one statement
      update supaqueue.job j
         set status = 'success', result = case when e.o ? 'result' then e.o -> 'result' end,
             finished_at = now(), updated_at = now(),
             last_status_code = (e.o ->> 'status_code')::integer, last_error = null
        from ended e
       where j.id = e.job
      returning j.id, j.queue, j.attempts, e.worker, e.started_at, e.ord, e.o),
    attempts as (
      insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                         status_code, error, duration_ms, response_excerpt)
        select d.id, d.queue, d.attempts, d.worker, d.started_at, clock_timestamp(), 'success',
               (d.o ->> 'status_code')::integer, left(d.o ->> 'error', 2000),
               coalesce((d.o ->> 'duration_ms')::integer,
                        (extract(epoch from clock_timestamp() - d.started_at) * 1000)::integer),
               left(d.o ->> 'response_excerpt', 2000)
          from done d
         order by d.ord)
    select coalesce(array_agg(d.ord::integer), '{}'), coalesce(array_agg(d.id), '{}'),
           coalesce(array_agg(d.worker), '{}'), coalesce(array_agg(distinct d.queue), '{}')
      into _ords, _jobs, _workers, _queues
      from done d;
    if cardinality(_ords) > 0 then
      foreach _i in array _ords loop
        _current[_i] := true;
      end loop;
      -- _free_worker for each: a retiring one goes (its job was its last)
      update supaqueue.worker set locked = false, key = null
       where id = any (_workers) and not retiring;
      delete from supaqueue.worker where id = any (_workers) and retiring;
      -- Dependents whose last dependency this was become ready (one decrement per dependency
      -- that succeeded here: a job may depend on several jobs of the batch).
      with released as (
        update supaqueue.job j
           set pending_dependencies = j.pending_dependencies - r.n, updated_at = now()
          from (select d.job, count(*)::integer as n from supaqueue.job_dependency d
                 where d.depends_on = any (_jobs) group by d.job) r
         where j.id = r.job and j.status = 'pending'
        returning j.queue, j.pending_dependencies)
      select _queues || coalesce(array_agg(distinct r.queue), '{}')
        into _queues
        from released r where r.pending_dependencies = 0;
    end if;
  end if;

  -- the rest, in order (the successes above were ended there, or were not current)
  for _o, _i in
    select e.value, e.ordinality from jsonb_array_elements(_outcomes) with ordinality e
     where not (_set and coalesce(e.value -> 'is_complete' = 'true'::jsonb
                                  and e.value -> 'is_successful' = 'true'::jsonb, false))
  loop
    delete from supaqueue.current_job where id = (_o ->> 'current_job')::uuid returning * into _cj;
    if not found then
      continue;
    end if;
    _current[_i] := true;
    _running := (_o -> 'is_complete') is distinct from 'true'::jsonb;
    _retry := (_o ->> 'retry_after_seconds')::numeric;
    _queues := _queues || supaqueue._end_attempt(
      _cj,
      case when not _running and (_o -> 'is_successful') = 'true'::jsonb
           then 'success' else 'failure' end,
      (_o ->> 'status_code')::integer, _o ->> 'response_excerpt', _o ->> 'error',
      case when _retry > 0 then least(_retry, 31536000) end,
      case when _o ? 'result' then _o -> 'result' end,
      (_o ->> 'duration_ms')::integer, _running);
    if _running then
      perform supaqueue._hold_worker(_cj);
    end if;
  end loop;

  -- 0029: the whole answers of leases no longer current free the workers held for their calls
  if false = any (_current) then
    _queues := _queues || supaqueue._release_held_for(array(
      select (e.value ->> 'current_job')::uuid
        from jsonb_array_elements(_outcomes) with ordinality e
       where e.value -> 'is_complete' = 'true'::jsonb and not _current[e.ordinality::integer]));
  end if;

  for _queue in select distinct u from unnest(_queues) u loop
    _dispatched := supaqueue._dispatch(_queue, null);
  end loop;
  return to_jsonb(_current);
end
$$;
