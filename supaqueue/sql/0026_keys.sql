-- supaqueue 0026: keys (issue 26 items 1 and 2). A job may carry a key (a tenant, a customer):
-- a queue may then limit each key's concurrent calls and rate besides its own, and its ready
-- jobs are served round-robin across keys (docs/architecture/dispatch.md, "Keys and fairness").
-- Tables, columns, indexes and constraints only; the functions are in functions/.

-- 1 ---------------------------------------------------------------------------------------------
-- The job's key: null = no key (the jobs of no key are served as before, see dispatch.md).
alter table supaqueue.job add column key text;
-- 1024 bytes of text: the key is in two btree indexes, whose entries must fit a third of a page.
alter table supaqueue.job
  add constraint job_key_size check (
    key is null
    or pg_catalog.octet_length(key) <= 1024
    or supaqueue.refuse_job_value(
      'job_key_size',
      pg_catalog.format('key: %s bytes, over the limit of 1024 bytes; use a shorter key',
                        pg_catalog.octet_length(key)),
      'a long natural key can be hashed: md5(<key>) is 32 characters'));

-- Ready jobs: those without a key as before (job_ready_idx, now without the keyed ones, so the
-- no-key selection never walks another key's backlog), the keyed ones per key.
drop index supaqueue.job_ready_idx;
create index job_ready_idx on supaqueue.job (queue, priority desc, run_at, id)
  where status = 'pending' and pending_dependencies = 0 and key is null;
create index job_key_ready_idx on supaqueue.job (queue, key, priority desc, run_at, id)
  where status = 'pending' and pending_dependencies = 0 and key is not null;

-- 2 ---------------------------------------------------------------------------------------------
-- Queue settings (null = none). The constraints are the one authority for the bounds
-- (supaqueue/installation_spec.py and the Pulumi spec mirror them; tests compare).
alter table supaqueue.queue
  add column key_from text,
  add column workers_per_key integer,
  add column rate_limit_per_key double precision,
  add column rate_limit_burst_per_key integer,
  -- a dotted path of field names into the payload: $.tenant_id, $.customer.id (at most 8 levels)
  add constraint queue_key_from_path
    check (key_from is null or key_from ~ '^\$(\.[A-Za-z_][A-Za-z0-9_]{0,62}){1,8}$'),
  add constraint queue_workers_per_key_range
    check (workers_per_key is null or (workers_per_key >= 1 and workers_per_key <= 1000)),
  -- as queue_rate_limit_range (0008): NaN and infinity refused, the refill cannot overflow
  add constraint queue_rate_limit_per_key_range
    check (rate_limit_per_key is null
           or (rate_limit_per_key > 0 and rate_limit_per_key <= 2147483647)),
  add constraint queue_rate_limit_burst_per_key_positive
    check (rate_limit_burst_per_key is null or rate_limit_burst_per_key >= 1);

-- 3 ---------------------------------------------------------------------------------------------
-- The key of the call a worker runs, or is held for (worker.held_until): a key's busy workers
-- are counted here, so a held worker counts against its call's key until it is released.
alter table supaqueue.worker add column key text;
create index worker_key_idx on supaqueue.worker (queue, key) where key is not null;

-- 4 ---------------------------------------------------------------------------------------------
-- Per (queue, key) state. A row exists while the key has (or recently had) jobs.
-- due_at: the key's turn. The due key with the earliest due_at is served next; serving it sets
--   due_at to the time of serving (the back of the rotation), so keys with ready jobs take turns.
--   Null = the key has no ready job (idle); a future time = its next job (or token, or the end of
--   a hold) is due then.
-- tokens / refilled_at: the key's token bucket (rate_limit_per_key), as queue_bucket's.
-- held_until / hold_reason: the key is not served before held_until (null = not held).
create table supaqueue.queue_key (
  queue uuid not null references supaqueue.queue (id) on delete cascade,
  key text not null,
  due_at timestamptz,
  served_at timestamptz,
  tokens double precision,
  refilled_at timestamptz,
  held_until timestamptz,
  hold_reason text,
  primary key (queue, key)
);
-- the next key: one index probe, however many keys there are
create index queue_key_due_idx on supaqueue.queue_key (queue, due_at) where due_at is not null;
-- idle keys, for the tick's clean-up
create index queue_key_idle_idx on supaqueue.queue_key (served_at) where due_at is null;

-- A keyed job became ready while its key's row was locked by another transaction: the next
-- report or tick makes the key due (functions/40_dispatch.sql, supaqueue._key_wakes).
create table supaqueue.queue_key_wake (
  id bigint generated always as identity primary key,
  queue uuid not null references supaqueue.queue (id) on delete cascade,
  key text not null,
  run_at timestamptz not null
);
create index queue_key_wake_queue_idx on supaqueue.queue_key_wake (queue, id);

-- 5 ---------------------------------------------------------------------------------------------
-- Enqueue functions take a key now (functions/30_enqueue.sql, functions/85_data_api.sql define
-- them again with `_key` / `key`): their old signatures go.
drop function supaqueue.enqueue(text, jsonb, timestamptz, integer, text, uuid[]);
drop function supaqueue.enqueue(uuid, jsonb, timestamptz, integer, text, uuid[]);
drop function supaqueue.enqueue_batch(text, jsonb, timestamptz, integer, text[], uuid[]);
drop function supaqueue_api.enqueue(text, jsonb, timestamptz, integer, text, uuid[]);
drop function supaqueue_api.enqueue_batch(text, jsonb, timestamptz, integer, text[], uuid[]);
