-- supaqueue functions/95_triggers.sql: supaqueue's own triggers on its tables, and their functions.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- One trigger function for new jobs and new workers: either may let a queue dispatch.
CREATE OR REPLACE FUNCTION supaqueue.tg__dispatch_after_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _queue uuid;
  _k record;
  _key_from boolean := false;
begin
  if tg_table_name = 'job' then
    -- 0026: a job without a key in a queue with `key_from` gets the key at that path into its
    -- payload (`$.tenant_id`), so table-trigger, schedule and dead-letter jobs get keys too. A JSON
    -- string gives its text, another value its JSON text; null or missing: no key. Here, once per
    -- statement, rather than in a row trigger that every job of every queue would pay for; only
    -- such jobs are written twice. Their keys are then read back from the jobs below.
    if exists (select 1 from supaqueue.queue q
                where q.key_from is not null and q.id in (select n.queue from new_rows n)) then
      update supaqueue.job j
         -- queue_key_from_path allows only `$` and dotted field names
         set key = j.payload #>> string_to_array(substr(q.key_from, 3), '.')
        from new_rows n, supaqueue.queue q
       where j.id = n.id and n.key is null and q.id = n.queue and q.key_from is not null
         and j.payload #>> string_to_array(substr(q.key_from, 3), '.') is not null;
      _key_from := found;
    end if;
    -- keyed jobs: their keys become due, once per key, before the dispatch below. New keys in one
    -- statement (a batch over 10,000 tenants: no call per key), under one insert lock per
    -- bucket (_key_bucket: 64 per queue at most) rather than one per key; the others by
    -- _key_ready. The keys left over are found by NOT IN, a hashed subplan whatever the
    -- estimates: NOT EXISTS made an anti-join that the planner, estimating one row (a transition
    -- table has no statistics), ran as a nested loop: 50 million comparisons, 2.4 s, for an
    -- INSERT over 10,000 new keys.
    for _k in
      with ready as (
        select n.queue, n.key, min(n.run_at) as run_at from new_rows n
         where not _key_from
           and n.key is not null and n.status = 'pending' and n.pending_dependencies = 0
         group by n.queue, n.key
        union all
        -- keys set by key_from above: new_rows has the jobs as inserted, without them
        select j.queue, j.key, min(j.run_at) from new_rows n join supaqueue.job j on j.id = n.id
         where _key_from
           and j.key is not null and j.status = 'pending' and j.pending_dependencies = 0
         group by j.queue, j.key),
      fresh as (
        select r.queue, r.key, r.run_at, supaqueue._key_bucket(r.key) as bucket from ready r
         where not exists (select 1 from supaqueue.queue_key k
                            where k.queue = r.queue and k.key = r.key)),
      locked as (
        select b.queue, b.bucket
          from (select distinct on (f.queue, f.bucket) f.queue, f.bucket, f.key from fresh f) b
         where supaqueue._key_insert_lock(b.queue, b.key)),
      made as (
        insert into supaqueue.queue_key (queue, key, due_at)
          select f.queue, f.key, f.run_at from fresh f
           where (f.queue, f.bucket) in (select l.queue, l.bucket from locked l)
          on conflict (queue, key) do nothing
          returning queue, key)
      select r.queue, r.key, r.run_at from ready r
       where (r.queue, r.key) not in (select m.queue, m.key from made m)
    loop
      perform supaqueue._key_ready(_k.queue, _k.key, _k.run_at);
    end loop;
    -- Statement-level: a 100k-row INSERT dispatches once per queue, not once per row; a job that
    -- waits for dependencies gives no reason to dispatch.
    for _queue in
      select distinct n.queue from new_rows n where n.status = 'pending' and n.pending_dependencies = 0
    loop
      perform supaqueue.dispatch(_queue);
    end loop;
  else
    for _queue in select distinct n.queue from new_rows n loop
      perform supaqueue.dispatch(_queue);
    end loop;
  end if;
  return null;
end
$$;

-- AFTER UPDATE, a keyed job that became ready (retried, its dependencies done, retried or run now
-- by the operator, given back after a missing dispatcher): its key must be due by its run_at.
-- The trigger (_450_job_key_ready) is on updates that name pending_dependencies or run_at, not
-- status: the two updates of every job's attempt (taken, ended) name only status, and each
-- UPDATE statement pays for every trigger it names (its WHEN prepared again), keys or not. So
-- an update that makes a job pending must name run_at (its retry time, or `run_at = run_at`).
CREATE OR REPLACE FUNCTION supaqueue.tg__job_key_ready() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._key_ready(new.queue, new.key, new.run_at);
  return null;
end
$$;

-- AFTER UPDATE: a job that has just failed for good (any way: attempts used up, a non-retryable
-- status, refused, lease expired at the last attempt) enqueues one job in its queue's dead-letter
-- queue, in the failure's transaction: {"job_id", "queue", "error", "response_excerpt",
-- "status_code", "attempts", "failed_at", "payload"}. A payload too large to carry is left out
-- (`payload_omitted` says so). If the enqueue still fails, the failure is recorded anyway and a
-- WARNING names the job: a dead letter must never block the engine's failure path.
CREATE OR REPLACE FUNCTION supaqueue.tg__job_dead_letter() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _q supaqueue.queue;
  _letter jsonb;
begin
  select * into _q from supaqueue.queue where id = new.queue;
  if _q.dead_letter_queue is null then
    return null;
  end if;
  _letter := jsonb_build_object(
    'job_id', new.id, 'queue', _q.name, 'error', new.last_error,
    'response_excerpt', new.last_response_excerpt, 'status_code', new.last_status_code,
    'attempts', new.attempts, 'failed_at', new.finished_at, 'payload', new.payload);
  if octet_length(_letter::text) > supaqueue.max_payload_bytes() then
    _letter := jsonb_set(_letter, '{payload}', 'null'::jsonb) || jsonb_build_object(
      'payload_omitted', format('the payload (%s bytes) is too large for a dead letter; read it '
                                'with `supaqueue job %s`', octet_length(new.payload::text), new.id));
  end if;
  begin
    insert into supaqueue.job (queue, payload, source, source_name)
      values (_q.dead_letter_queue, _letter, 'dead_letter', _q.name);
  exception when others then
    raise warning 'supaqueue: dead letter of job % (queue %) not enqueued: %', new.id, _q.name,
      sqlerrm;
  end;
  return null;
end
$$;

-- BEFORE UPDATE: an attempt that ended unsuccessfully (in_progress -> pending or failed) copies its
-- answer's excerpt from the history row _end_attempt wrote just before (0014: it inserts the
-- attempt, then updates the job). A success clears an excerpt left by an earlier failure. Only
-- those transitions call it, so a success without an old excerpt costs no function call.
CREATE OR REPLACE FUNCTION supaqueue.tg__job_last_response() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if new.status = 'success' then
    new.last_response_excerpt := null;
  else
    new.last_response_excerpt := (
      select h.response_excerpt from supaqueue.job_attempt h
       where h.job = new.id order by h.id desc limit 1);
  end if;
  return new;
end
$$;

-- A payload over the limit fails the whole INSERT statement (enqueue included), naming the limit,
-- never echoing the payload. Statement-level, before the dispatch trigger (_500_…) by name, so a
-- 100k-row INSERT is checked in one pass.
CREATE OR REPLACE FUNCTION supaqueue.tg__job_payload_limit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _largest bigint;
begin
  select max(octet_length(n.payload::text)) into _largest from new_rows n;
  if _largest > supaqueue.max_payload_bytes() then
    raise exception 'supaqueue: a job payload is % bytes, over the limit of % bytes',
      _largest, supaqueue.max_payload_bytes()
      using errcode = '54000',
            hint = 'Keep large data in a table or in Storage and put its key in the payload.';
  end if;
  return null;
end
$$;

-- Refuses a chain of dead-letter queues that leads back to the queue (itself included): a dead
-- letter that fails would go round for ever. `pulumi preview` refuses it first (config).
CREATE OR REPLACE FUNCTION supaqueue.tg__queue_dead_letter_no_loop() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _path text[];
begin
  with recursive chain (id, path) as (
    select new.dead_letter_queue, array[new.name]
    union
    select q.dead_letter_queue, c.path || q.name
      from chain c join supaqueue.queue q on q.id = c.id
     where c.id <> new.id and q.dead_letter_queue is not null and cardinality(c.path) < 1000
  )
  select c.path into _path from chain c where c.id = new.id limit 1;
  if _path is not null then
    raise exception 'queue %: dead_letter_queue leads back to it (% -> %): a dead letter would loop',
      new.name, array_to_string(_path, ' -> '), new.name
      using errcode = '23514', constraint = 'queue_dead_letter_no_loop';
  end if;
  return new;
end
$$;

-- A queue that was resumed, or whose rate limit was raised, may now dispatch.
CREATE OR REPLACE FUNCTION supaqueue.tg__queue_updated() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _queue uuid;
begin
  -- 0026: a changed per-key rate: keys waiting for a token (due later) are looked at again now
  -- (the selection moves each to its next token under the new rate, or serves it)
  for _queue in
    select n.id from new_queues n join old_queues o on o.id = n.id
     where n.rate_limit_per_key is distinct from o.rate_limit_per_key
        or n.rate_limit_burst_per_key is distinct from o.rate_limit_burst_per_key
  loop
    update supaqueue.queue_key k set due_at = now()
     where (k.queue, k.key) in (
       select l.queue, l.key from supaqueue.queue_key l
        where l.queue = _queue and l.due_at > now()
          and (l.held_until is null or l.held_until <= now())
          for no key update skip locked);
  end loop;
  for _queue in select n.id from new_queues n where not n.paused loop
    perform supaqueue.dispatch(_queue);
  end loop;
  return null;
end
$$;

CREATE OR REPLACE TRIGGER _100_queue_dead_letter_no_loop BEFORE INSERT OR UPDATE OF dead_letter_queue ON supaqueue.queue FOR EACH ROW WHEN ((new.dead_letter_queue IS NOT NULL)) EXECUTE FUNCTION supaqueue.tg__queue_dead_letter_no_loop();

CREATE OR REPLACE TRIGGER _300_job_last_response BEFORE UPDATE OF status ON supaqueue.job FOR EACH ROW WHEN (((old.status = 'in_progress'::supaqueue.job_status) AND ((new.status = ANY (ARRAY['pending'::supaqueue.job_status, 'failed'::supaqueue.job_status])) OR ((new.status = 'success'::supaqueue.job_status) AND (old.last_response_excerpt IS NOT NULL))))) EXECUTE FUNCTION supaqueue.tg__job_last_response();

CREATE OR REPLACE TRIGGER _400_job_payload_limit AFTER INSERT ON supaqueue.job REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__job_payload_limit();

CREATE OR REPLACE TRIGGER _500_dispatch_after_insert AFTER INSERT ON supaqueue.job REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__dispatch_after_insert();

CREATE OR REPLACE TRIGGER _500_dispatch_after_insert AFTER INSERT ON supaqueue.worker REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__dispatch_after_insert();

CREATE OR REPLACE TRIGGER _500_dispatch_after_update AFTER UPDATE ON supaqueue.queue REFERENCING OLD TABLE AS old_queues NEW TABLE AS new_queues FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__queue_updated();

CREATE OR REPLACE TRIGGER _450_job_key_ready AFTER UPDATE OF pending_dependencies, run_at ON supaqueue.job FOR EACH ROW WHEN (((new.key IS NOT NULL) AND (new.status = 'pending'::supaqueue.job_status) AND (new.pending_dependencies = 0) AND ((old.status <> 'pending'::supaqueue.job_status) OR (old.pending_dependencies <> 0) OR (new.run_at < old.run_at)))) EXECUTE FUNCTION supaqueue.tg__job_key_ready();

CREATE OR REPLACE TRIGGER _600_job_dead_letter AFTER UPDATE OF status ON supaqueue.job FOR EACH ROW WHEN (((new.status = 'failed'::supaqueue.job_status) AND (old.status <> 'failed'::supaqueue.job_status))) EXECUTE FUNCTION supaqueue.tg__job_dead_letter();
