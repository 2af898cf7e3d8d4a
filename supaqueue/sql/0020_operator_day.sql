-- supaqueue 0020: an operator's day (issue 22 items 2, 3, 4, 8): emptying a queue on purpose
-- (cancel_jobs, retry_jobs, run_job_now), why a job failed (the last response excerpt on the job,
-- an error search over it that an index serves, retries marked in the history, job id prefixes),
-- dead-letter queues, and a default retention of finished jobs.
--
-- The engine's failure path (_end_attempt, _finish_attempt) is NOT redefined: two row triggers on
-- `job` act on the transitions it makes (in_progress -> pending/failed), in its transaction.
-- Redefined here: list_jobs and _failed_jobs (the error search; same signatures and results),
-- retry_job and retry_failed_jobs (each records its retries; otherwise 0013's).

-- ---- 1. The last response excerpt on the job, and an error search an index serves -------------

-- The excerpt of the last failed attempt's answer (the real reason is often only there: `HTTP 404
-- Not Found` vs `Requested function was not found`). Kept beside last_error, cleared with it by a
-- success.
alter table supaqueue.job add column last_response_excerpt text;

-- BEFORE UPDATE: an attempt that ended unsuccessfully (in_progress -> pending or failed) copies its
-- answer's excerpt from the history row _end_attempt wrote just before (0014: it inserts the
-- attempt, then updates the job). A success clears an excerpt left by an earlier failure. Only
-- those transitions call it, so a success without an old excerpt costs no function call.
create function supaqueue.tg__job_last_response() returns trigger
language plpgsql security definer
set search_path = ''
as $$
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

create trigger _300_job_last_response
  before update of status on supaqueue.job
  for each row
  when (old.status = 'in_progress'
        and (new.status in ('pending', 'failed')
             or (new.status = 'success' and old.last_response_excerpt is not null)))
  execute function supaqueue.tg__job_last_response();

-- What "error contains" searches: the last error and the last response excerpt. pg_trgm (on
-- Supabase in schema `extensions`; trusted, so the database owner may create it) lets a GIN index
-- serve `ILIKE '%text%'`. Partial: only jobs that have an error or an excerpt (the search states
-- it too), so a job that succeeds at once never touches the index. Without pg_trgm the search
-- still works, unindexed (a NOTICE says so).
do $$
declare
  _schema text;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_trgm')
     and exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_trgm') then
    if exists (select 1 from pg_catalog.pg_namespace where nspname = 'extensions') then
      create extension pg_trgm schema extensions;
    else
      create extension pg_trgm;
    end if;
  end if;
  select n.nspname into _schema
    from pg_catalog.pg_extension e join pg_catalog.pg_namespace n on n.oid = e.extnamespace
   where e.extname = 'pg_trgm';
  if _schema is null then
    raise notice 'supaqueue: pg_trgm is not available: the error search (list_jobs '
                 '_error_contains) works without an index';
    return;
  end if;
  execute format(
    'create index job_error_search_idx on supaqueue.job using gin '
    '((coalesce(last_error, '''') || '' '' || coalesce(last_response_excerpt, '''')) %I.gin_trgm_ops) '
    'where last_error is not null or last_response_excerpt is not null', _schema);
end
$$;

-- The LIKE pattern that finds _text anywhere, any case (its %, _ and \ match themselves).
create function supaqueue._contains_pattern(_text text) returns text
language sql immutable parallel safe security definer
set search_path = ''
as $$
  select '%' || replace(replace(replace(_text, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

-- = 0013's _failed_jobs; "error contains" also searches the response excerpt.
create or replace function supaqueue._failed_jobs(
  _queue uuid, _since timestamptz, _error_contains text
) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = 'failed'
     and j.finished_at >= coalesce(_since, '-infinity')
     and (_error_contains is null
          or ((j.last_error is not null or j.last_response_excerpt is not null)
              and (coalesce(j.last_error, '') || ' ' || coalesce(j.last_response_excerpt, ''))
                  ilike supaqueue._contains_pattern(_error_contains)))
   order by j.finished_at
$$;

-- = 0013's list_jobs (same arguments and columns) with one change: a search by error text covers
-- the response excerpt too. A rare text (fewer than 5,000 jobs match) is found through
-- job_error_search_idx and its matches sorted; a common one is dense in the newest rows, so the
-- list's ranges are read newest first as before, filtered, which finds a page sooner than sorting
-- thousands (benchmarks/operator_bench.py).
create or replace function supaqueue.list_jobs(
  _queue uuid default null,
  _statuses supaqueue.job_status[] default null,
  _created_after timestamptz default null,
  _created_before timestamptz default null,
  _error_contains text default null,
  _before_created timestamptz default null,
  _before_id uuid default null,
  _limit integer default 50
) returns table (
  id uuid,
  queue uuid,
  queue_name text,
  status supaqueue.job_status,
  attempts integer,
  priority integer,
  run_at timestamptz,
  created_at timestamptz,
  finished_at timestamptz,
  pending_dependencies integer,
  last_status_code integer,
  last_error text
)
language plpgsql stable security definer
set search_path = ''
set jit = off
as $$
declare
  _states supaqueue.job_status[] := coalesce(
    _statuses, enum_range(null::supaqueue.job_status));
  _c timestamptz := least(coalesce(_before_created, 'infinity'),
                          coalesce(_created_before, 'infinity'));
  -- with _c from _created_before, the smallest uuid makes the bound strict (created before it)
  _i uuid := case when _before_created < coalesce(_created_before, 'infinity')
                  then coalesce(_before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
                  when _created_before is not null
                  then '00000000-0000-0000-0000-000000000000'
                  else 'ffffffff-ffff-ffff-ffff-ffffffffffff' end;
  _from timestamptz := coalesce(_created_after, '-infinity');
  _n integer := least(greatest(coalesce(_limit, 50), 1), 1000);
  _pattern text := supaqueue._contains_pattern(_error_contains);
  _common constant integer := 5000;
begin
  if _pattern is not null then
    -- a successful job has no last_error (its success clears it), so a search by error text
    -- never reads the (usually largest) range of successful jobs
    _states := array_remove(_states, 'success');
  end if;
  if _pattern is not null and (
       select count(*) from (
         select 1 from supaqueue.job x
          where (x.last_error is not null or x.last_response_excerpt is not null)
            and (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                ilike _pattern
          limit _common) hits) < _common then
    return query
      select x.id, x.queue, q.name, x.status, x.attempts, x.priority, x.run_at, x.created_at,
             x.finished_at, x.pending_dependencies, x.last_status_code, left(x.last_error, 300)
        from supaqueue.job x
        join supaqueue.queue q on q.id = x.queue
       where (x.last_error is not null or x.last_response_excerpt is not null)
         and (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
             ilike _pattern
         and (_queue is null or x.queue = _queue)
         and x.status = any (_states)
         and (x.created_at, x.id) < (_c, _i) and x.created_at >= _from
       order by x.created_at desc, x.id desc
       limit _n;
    return;
  end if;
  if _queue is null then
    return query
      select j.id, j.queue, q.name, j.status, j.attempts, j.priority, j.run_at, j.created_at,
             j.finished_at, j.pending_dependencies, j.last_status_code, left(j.last_error, 300)
        from supaqueue.queue qq
        cross join unnest(_states) s(state)
        cross join lateral (
          select * from supaqueue.job x
           where x.queue = qq.id and x.status = s.state and (x.created_at, x.id) < (_c, _i)
             and x.created_at >= _from
             and (_pattern is null
                  or (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                     ilike _pattern)
           order by x.created_at desc, x.id desc
           limit _n) j
        join supaqueue.queue q on q.id = j.queue
       order by j.created_at desc, j.id desc
       limit _n;
  else
    return query
      select j.id, j.queue, q.name, j.status, j.attempts, j.priority, j.run_at, j.created_at,
             j.finished_at, j.pending_dependencies, j.last_status_code, left(j.last_error, 300)
        from unnest(_states) s(state)
        cross join lateral (
          select * from supaqueue.job x
           where x.queue = _queue and x.status = s.state and (x.created_at, x.id) < (_c, _i)
             and x.created_at >= _from
             and (_pattern is null
                  or (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))
                     ilike _pattern)
           order by x.created_at desc, x.id desc
           limit _n) j
        join supaqueue.queue q on q.id = j.queue
       order by j.created_at desc, j.id desc
       limit _n;
  end if;
end
$$;

-- ---- 2. Operator actions in the attempt history ----------------------------------------------

-- Which operator action started which run of a job: attempts are numbered from 1 again after a
-- retry; a run is the attempts after one action (job_attempt ids above `after_attempt`).
create table supaqueue.job_operator_action (
  id bigint generated always as identity primary key,
  job uuid not null references supaqueue.job (id) on delete cascade,
  action text not null,
  at timestamptz not null default clock_timestamp(),
  -- the last attempt (job_attempt.id) before the action; null: the job had none
  after_attempt bigint,
  -- who: the session's role and application (`supaqueue-console`, `supaqueue-dashboard`, ...)
  by text not null default (session_user || coalesce(
    ' via ' || nullif(pg_catalog.current_setting('application_name', true), ''), '')),
  constraint job_operator_action_known
    check (action in ('retry_job', 'retry_failed_jobs', 'retry_jobs', 'run_job_now'))
);
create index job_operator_action_job_idx on supaqueue.job_operator_action (job);

create function supaqueue._record_action(_job uuid, _action text) returns void
language sql security definer
set search_path = ''
as $$
  insert into supaqueue.job_operator_action (job, action, after_attempt)
    select _job, _action, (select max(h.id) from supaqueue.job_attempt h where h.job = _job)
$$;

-- = 0013's retry_job, recording the retry.
create or replace function supaqueue.retry_job(_job uuid) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  if not supaqueue._retry_job(_job, true) then
    return false;
  end if;
  perform supaqueue._record_action(_job, 'retry_job');
  perform supaqueue.dispatch(j.queue) from supaqueue.job j where j.id = _job;
  return true;
end
$$;

-- = 0013's retry_failed_jobs, recording each retry.
create or replace function supaqueue.retry_failed_jobs(
  _queue uuid,
  _since timestamptz default null,
  _error_contains text default null,
  _dry_run boolean default false
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _id uuid;
  _n integer := 0;
begin
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.retry_failed_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._failed_jobs(_queue, _since, _error_contains);
    return _n;
  end if;
  for _id in select f from supaqueue._failed_jobs(_queue, _since, _error_contains) f loop
    -- not strict: a job whose dedup key is taken (by one retried just before, say) stays failed
    if supaqueue._retry_job(_id, false) then
      perform supaqueue._record_action(_id, 'retry_failed_jobs');
      _n := _n + 1;
    end if;
  end loop;
  if _n > 0 then
    perform supaqueue.dispatch(_queue);
  end if;
  return _n;
end
$$;

-- The runs of a job, for the detail views (job_detail's attempt_history lists attempts in the same
-- order, by job_attempt id): per attempt its run (1 + the operator actions before it) and the
-- actions, each with the run it started. Read in the same statement as job_detail.
create function supaqueue.job_runs(_job uuid) returns jsonb
language sql stable security definer
set search_path = ''
set jit = off
as $$
  select jsonb_build_object(
    'attempts', coalesce((
      select jsonb_agg(jsonb_build_object(
               'attempt', h.attempt,
               'run', 1 + (select count(*) from supaqueue.job_operator_action a
                            where a.job = _job and a.action <> 'run_job_now'
                              and coalesce(a.after_attempt, 0) < h.id)) order by h.id)
        from supaqueue.job_attempt h where h.job = _job), '[]'::jsonb),
    'actions', coalesce((
      select jsonb_agg(jsonb_build_object(
               'action', a.action, 'at', a.at, 'by', a.by,
               'run', 1 + (select count(*) from supaqueue.job_operator_action b
                            where b.job = _job and b.action <> 'run_job_now' and b.id <= a.id))
             order by a.id)
        from supaqueue.job_operator_action a where a.job = _job), '[]'::jsonb),
    'last_response_excerpt', (select j.last_response_excerpt from supaqueue.job j where j.id = _job))
$$;

-- Job ids starting with _prefix (hex digits, hyphens ignored; what the dashboard shows is the
-- first 8), at most _limit, read as one range of the primary key.
create function supaqueue.job_ids_with_prefix(_prefix text, _limit integer default 10)
returns setof uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
  _hex text := lower(replace(coalesce(_prefix, ''), '-', ''));
begin
  if _hex !~ '^[0-9a-f]{1,32}$' then
    raise exception 'supaqueue.job_ids_with_prefix: % is not the start of a job id (hex digits)',
      coalesce(quote_literal(_prefix), 'null') using errcode = '22023';
  end if;
  return query
    select j.id from supaqueue.job j
     where j.id between rpad(_hex, 32, '0')::uuid and rpad(_hex, 32, 'f')::uuid
     order by j.id
     limit greatest(coalesce(_limit, 10), 1);
end
$$;

-- ---- 3. Emptying a queue on purpose ------------------------------------------------------------

-- The jobs of a filter (that of list_jobs: queue, states, created window, error text) for the
-- bulk actions below; one authority for their dry runs (the count the operator confirms).
create function supaqueue._jobs_matching(
  _queue uuid, _states supaqueue.job_status[], _created_after timestamptz,
  _created_before timestamptz, _error_contains text
) returns setof uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
  _from timestamptz := coalesce(_created_after, '-infinity');
  _to timestamptz := coalesce(_created_before, 'infinity');
  _pattern text := supaqueue._contains_pattern(_error_contains);
begin
  -- one statement per case, so that each is one index range (no `_x is null or` in a plan)
  if _pattern is not null then
    return query
      select j.id from supaqueue.job j
       where (j.last_error is not null or j.last_response_excerpt is not null)
         and (coalesce(j.last_error, '') || ' ' || coalesce(j.last_response_excerpt, ''))
             ilike _pattern
         and (_queue is null or j.queue = _queue) and j.status = any (_states)
         and j.created_at >= _from and j.created_at < _to;
  elsif _queue is not null then
    return query
      select j.id from supaqueue.job j
       where j.queue = _queue and j.status = any (_states)
         and j.created_at >= _from and j.created_at < _to;
  else
    return query
      select j.id from supaqueue.job j
       where j.status = any (_states) and j.created_at >= _from and j.created_at < _to;
  end if;
end
$$;

-- Cancels the pending and/or in-progress jobs of a filter (null _queue: every queue), and, as a
-- failure does, their pending dependents. Pending ones in one statement (a job a dispatch takes
-- meanwhile is in progress by then and left alone unless in-progress ones are asked for too);
-- then each in-progress one through cancel_job, so its lease is taken away and the dispatcher's
-- late answer changes nothing. Returns how many were cancelled; with _dry_run, how many match.
create function supaqueue.cancel_jobs(
  _queue uuid,
  _statuses supaqueue.job_status[] default array['pending']::supaqueue.job_status[],
  _error_contains text default null,
  _created_after timestamptz default null,
  _created_before timestamptz default null,
  _dry_run boolean default false
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _n integer := 0;
  _id uuid;
  _cancelled uuid[];
begin
  if _queue is not null and not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.cancel_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _statuses is null or cardinality(_statuses) = 0
     or not _statuses <@ array['pending', 'in_progress']::supaqueue.job_status[] then
    raise exception 'supaqueue.cancel_jobs: only pending and in_progress jobs can be cancelled, got %',
      coalesce(_statuses::text, 'null') using errcode = '22023';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._jobs_matching(
      _queue, _statuses, _created_after, _created_before, _error_contains);
    return _n;
  end if;
  if 'pending' = any (_statuses) then
    -- status is checked again on each row once locked: one dispatched meanwhile is skipped
    with done as (
      update supaqueue.job j
         set status = 'cancelled', finished_at = now(), updated_at = now(),
             cancelled_by_operator = true, last_error = 'cancelled by the operator'
        from supaqueue._jobs_matching(_queue, array['pending']::supaqueue.job_status[],
                                      _created_after, _created_before, _error_contains) m (id)
       where j.id = m.id and j.status = 'pending'
      returning j.id
    )
    select coalesce(array_agg(id), '{}') into _cancelled from done;
    _n := cardinality(_cancelled);
    for _id in
      select c from unnest(_cancelled) c
       where exists (select 1 from supaqueue.job_dependency d where d.depends_on = c)
    loop
      perform supaqueue._cancel_dependents(
        _id, format('cancelled: job %s it depends on was cancelled by the operator', _id));
    end loop;
  end if;
  if 'in_progress' = any (_statuses) then
    for _id in select m from supaqueue._jobs_matching(
                 _queue, array['in_progress']::supaqueue.job_status[], _created_after,
                 _created_before, _error_contains) m loop
      if supaqueue.cancel_job(_id) then
        _n := _n + 1;
      end if;
    end loop;
  end if;
  return _n;
end
$$;

-- Retries the failed jobs of a filter (null _queue: every queue) as retry_job does, skipping those
-- that cannot be retried (a dependency failed, the dedup key is held), recording each retry.
-- Returns how many were retried; with _dry_run, how many failed jobs match.
create function supaqueue.retry_jobs(
  _queue uuid,
  _error_contains text default null,
  _created_after timestamptz default null,
  _created_before timestamptz default null,
  _dry_run boolean default false
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  _n integer := 0;
  _id uuid;
  _queues uuid[] := '{}';
begin
  if _queue is not null and not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.retry_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._jobs_matching(
      _queue, array['failed']::supaqueue.job_status[], _created_after, _created_before,
      _error_contains);
    return _n;
  end if;
  for _id in select m from supaqueue._jobs_matching(
               _queue, array['failed']::supaqueue.job_status[], _created_after, _created_before,
               _error_contains) m loop
    if supaqueue._retry_job(_id, false) then
      perform supaqueue._record_action(_id, 'retry_jobs');
      _queues := _queues || (select j.queue from supaqueue.job j where j.id = _id);
      _n := _n + 1;
    end if;
  end loop;
  perform supaqueue.dispatch(q) from (select distinct unnest(_queues) q) d;
  return _n;
end
$$;

-- Runs a delayed pending job now (its run_at, whether set at enqueue or by a retry's backoff);
-- it still waits for its dependencies and a free worker. False, changing nothing, when the job is
-- not pending or already due.
create function supaqueue.run_job_now(_job uuid) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  _j supaqueue.job;
begin
  select * into _j from supaqueue.job where id = _job for update;
  if not found then
    raise exception 'supaqueue.run_job_now: there is no job with id %', _job
      using errcode = 'SQ005';
  end if;
  if _j.status <> 'pending' or _j.run_at <= now() then
    return false;
  end if;
  update supaqueue.job set run_at = now(), updated_at = now() where id = _job;
  perform supaqueue._record_action(_job, 'run_job_now');
  perform supaqueue.dispatch(_j.queue);
  return true;
end
$$;

-- ---- 4. Dead-letter queues --------------------------------------------------------------------

-- A queue may name a dead-letter queue: a job that fails for good enqueues one job there.
-- Restrict (the default action): a queue named as another's dead-letter queue cannot be dropped
-- until that one stops naming it (the Pulumi program removes or changes the other first).
alter table supaqueue.queue add column dead_letter_queue uuid;
alter table supaqueue.queue add constraint queue_dead_letter_queue_fkey
  foreign key (dead_letter_queue) references supaqueue.queue (id);

-- Refuses a chain of dead-letter queues that leads back to the queue (itself included): a dead
-- letter that fails would go round for ever. `pulumi preview` refuses it first (config).
create function supaqueue.tg__queue_dead_letter_no_loop() returns trigger
language plpgsql security definer
set search_path = ''
as $$
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

create trigger _100_queue_dead_letter_no_loop
  before insert or update of dead_letter_queue on supaqueue.queue
  for each row when (new.dead_letter_queue is not null)
  execute function supaqueue.tg__queue_dead_letter_no_loop();

-- AFTER UPDATE: a job that has just failed for good (any way: attempts used up, a non-retryable
-- status, refused, lease expired at the last attempt) enqueues one job in its queue's dead-letter
-- queue, in the failure's transaction: {"job_id", "queue", "error", "response_excerpt",
-- "status_code", "attempts", "failed_at", "payload"}. A payload too large to carry is left out
-- (`payload_omitted` says so). If the enqueue still fails, the failure is recorded anyway and a
-- WARNING names the job: a dead letter must never block the engine's failure path.
create function supaqueue.tg__job_dead_letter() returns trigger
language plpgsql security definer
set search_path = ''
as $$
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
    insert into supaqueue.job (queue, payload) values (_q.dead_letter_queue, _letter);
  exception when others then
    raise warning 'supaqueue: dead letter of job % (queue %) not enqueued: %', new.id, _q.name,
      sqlerrm;
  end;
  return null;
end
$$;

create trigger _600_job_dead_letter
  after update of status on supaqueue.job
  for each row when (new.status = 'failed' and old.status <> 'failed')
  execute function supaqueue.tg__job_dead_letter();

-- ---- 5. A default retention of finished jobs --------------------------------------------------

-- 7 days (docs/architecture.md says why). Queues made before keep what they have: a null there
-- may be a choice (keep for ever), so the migration cannot tell; the Pulumi program applies the
-- default to a stack's queue whose declaration never set `retention_seconds` (its next `up`).
alter table supaqueue.queue alter column retention_seconds set default 604800;

select supaqueue.apply_privileges();
