-- supaqueue 0001: types, tables and indexes of the queue engine.
-- The migration runner has already created schema supaqueue and its ledger supaqueue.migrations.

-- On Supabase pg_net and Vault are extensions; the local stack installs stand-in schemas with the
-- same interface instead, so an extension is created only where its schema is missing.
do $$
begin
  if to_regnamespace('net') is null then
    create extension if not exists pg_net;
  end if;
  if to_regnamespace('vault') is null then
    create extension if not exists supabase_vault;
  end if;
end
$$;

create type supaqueue.job_status as enum ('pending', 'in_progress', 'success', 'failed', 'cancelled');

-- Written by the Pulumi program: functions_url, dispatcher_slug. No text substitution into SQL.
create table supaqueue.settings (
  key text primary key,
  value text not null
);

-- Every 4xx except 408 (timeout) and 429 (rate limited): retrying cannot change the answer.
create function supaqueue.default_non_retryable_statuses() returns integer[]
language sql immutable parallel safe
set search_path = ''
as $$
  select array(select s from pg_catalog.generate_series(400, 499) s where s not in (408, 429))
$$;

create table supaqueue.queue (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  edge_function_name text not null,
  default_headers jsonb not null default '{}',
  method text not null default 'POST',
  max_attempts integer not null default 3,
  backoff_base_ms integer not null default 1000,
  backoff_max_ms integer not null default 300000,
  -- 0.1 = each delay varies by +-10%, so retries of a failed batch do not arrive together
  backoff_jitter double precision not null default 0.1,
  non_retryable_statuses integer[] not null default supaqueue.default_non_retryable_statuses(),
  timeout_ms integer not null default 30000,
  -- the lease also covers pg_net delivery and the report back, hence a grace on top of the timeout
  lease_grace_ms integer not null default 30000,
  rate_limit_per_second double precision,
  rate_limit_burst integer,
  paused boolean not null default false,
  retention_seconds integer,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint queue_edge_function_name_is_slug check (edge_function_name ~ '^[A-Za-z0-9][A-Za-z0-9_-]*$'),
  constraint queue_method_known check (method in ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
  constraint queue_default_headers_object check (jsonb_typeof(default_headers) = 'object'),
  constraint queue_max_attempts_positive check (max_attempts >= 1),
  constraint queue_backoff_valid check (backoff_base_ms >= 0 and backoff_max_ms >= backoff_base_ms),
  constraint queue_backoff_jitter_fraction check (backoff_jitter >= 0 and backoff_jitter <= 1),
  -- at most one hour: the supaqueue Edge Function refuses (400) a dispatch with a longer timeout
  constraint queue_timeout_positive
    check (timeout_ms > 0 and timeout_ms <= 3600000 and lease_grace_ms >= 0),
  constraint queue_rate_limit_positive check (rate_limit_per_second is null or rate_limit_per_second > 0),
  constraint queue_rate_limit_burst_positive check (rate_limit_burst is null or rate_limit_burst >= 1),
  constraint queue_retention_non_negative check (retention_seconds is null or retention_seconds >= 0)
);

-- Token bucket of a rate-limited queue; kept apart so that dispatch never updates the queue row.
create table supaqueue.queue_bucket (
  queue uuid primary key references supaqueue.queue (id) on delete cascade,
  tokens double precision not null,
  refilled_at timestamptz not null
);

create table supaqueue.worker (
  id uuid primary key default gen_random_uuid(),
  queue uuid not null references supaqueue.queue (id) on delete cascade,
  locked boolean not null default false,
  -- set when the worker count shrinks while this worker is busy: removed when its job ends
  retiring boolean not null default false,
  created_at timestamptz not null default now()
);
create index worker_free_idx on supaqueue.worker (queue) where not locked and not retiring;

create table supaqueue.job (
  id uuid primary key default gen_random_uuid(),
  queue uuid not null references supaqueue.queue (id),
  payload jsonb not null default '{}',
  attempts integer not null default 0,
  status supaqueue.job_status not null default 'pending',
  priority integer not null default 0,
  run_at timestamptz not null default now(),
  dedup_key text,
  pending_dependencies integer not null default 0,
  result jsonb,
  last_status_code integer,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint job_finished_at_iff_final
    check ((status in ('success', 'failed', 'cancelled')) = (finished_at is not null)),
  constraint job_pending_dependencies_non_negative check (pending_dependencies >= 0)
);
-- Dispatch reads the head of this index: only jobs that could run, in dispatch order.
create index job_ready_idx on supaqueue.job (queue, priority desc, run_at, id)
  where status = 'pending' and pending_dependencies = 0;
create index job_unfinished_idx on supaqueue.job (queue, created_at)
  where status in ('pending', 'in_progress');
create index job_finished_idx on supaqueue.job (queue, finished_at)
  where finished_at is not null;
create unique index job_dedup_key_idx on supaqueue.job (queue, dedup_key)
  where dedup_key is not null and status in ('pending', 'in_progress');

create table supaqueue.job_dependency (
  job uuid not null references supaqueue.job (id) on delete cascade,
  depends_on uuid not null references supaqueue.job (id) on delete cascade,
  primary key (job, depends_on),
  constraint job_dependency_not_self check (job <> depends_on)
);
create index job_dependency_depends_on_idx on supaqueue.job_dependency (depends_on);

-- One row per dispatched attempt that has not ended yet: the lease.
create table supaqueue.current_job (
  id uuid primary key default gen_random_uuid(),
  worker uuid not null unique references supaqueue.worker (id),
  job uuid not null unique references supaqueue.job (id),
  is_complete boolean not null default false,
  is_successful boolean not null default false,
  started_at timestamptz not null default now(),
  lease_expires_at timestamptz not null,
  request_id bigint
);
create index current_job_lease_idx on supaqueue.current_job (lease_expires_at);

-- History: one row per ended attempt.
create table supaqueue.job_attempt (
  id bigint generated always as identity primary key,
  job uuid not null references supaqueue.job (id) on delete cascade,
  queue uuid not null,
  attempt integer not null,
  worker uuid,
  started_at timestamptz not null,
  ended_at timestamptz not null default now(),
  outcome text not null,
  status_code integer,
  error text,
  duration_ms integer,
  response_excerpt text,
  constraint job_attempt_outcome_known check (outcome in ('success', 'failure', 'lease_expired'))
);
create index job_attempt_job_idx on supaqueue.job_attempt (job);
create index job_attempt_queue_ended_idx on supaqueue.job_attempt (queue, ended_at);
