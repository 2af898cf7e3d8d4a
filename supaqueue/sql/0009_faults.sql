-- supaqueue 0009: safe under real faults.
-- 1. service_role gets the documented interface only (reads, enqueue, report, tick): every other
--    write goes through the engine's SECURITY DEFINER functions, which keep the invariants.
-- 2. supaqueue's pg_cron jobs: the schedule chosen by the pg_cron version in one place,
--    reconciled by every `pulumi up` (not only once by 0006), and their run history bounded.

-- 1 ---------------------------------------------------------------------------------------------
-- Routines only the owner (the Pulumi program's role, `postgres`) may run. service_role may run
-- every other routine whose name does not start with '_'. A new owner-only routine goes here.
create function supaqueue.owner_only_routines() returns text[]
language sql immutable security definer
set search_path = ''
as $$
  select array[
    'apply_privileges', 'owner_only_routines', 'uninstall',
    -- pg_cron runs these; the Pulumi program changes queues and the schedule
    'tick_loop', 'dispatch', 'set_worker_count', 'drop_queue',
    'cron_jobs_for', 'cron_drift', 'reconcile_cron', 'prune_cron_history', 'cron_job_names']
$$;

-- Redefines 0005's: service_role no longer gets every privilege on everything.
create or replace function supaqueue.apply_privileges() returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  _role text;
  _routine regprocedure;
begin
  revoke all on schema supaqueue from public;
  revoke all on all tables in schema supaqueue from public;
  revoke all on all sequences in schema supaqueue from public;
  revoke all on all routines in schema supaqueue from public;
  foreach _role in array array['anon', 'authenticated'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = _role) then
      execute format('revoke all on schema supaqueue from %I', _role);
      execute format('revoke all on all tables in schema supaqueue from %I', _role);
      execute format('revoke all on all sequences in schema supaqueue from %I', _role);
      execute format('revoke all on all routines in schema supaqueue from %I', _role);
    end if;
  end loop;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    revoke all on all tables in schema supaqueue from service_role;
    revoke all on all sequences in schema supaqueue from service_role;
    revoke all on all routines in schema supaqueue from service_role;
    grant usage on schema supaqueue to service_role;
    -- Reading is harmless; enqueueing by INSERT names only these columns (docs/architecture.md).
    grant select on all tables in schema supaqueue to service_role;
    grant insert (queue, payload, priority, run_at, dedup_key) on supaqueue.job to service_role;
    -- Every routine but the internal ones (named `_…`, trigger functions) and the owner's (the
    -- Pulumi program's): those take the engine's rows as given, or change what a stack owns.
    for _routine in
      select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'supaqueue'::regnamespace
          and p.proname not like '\_%'
          and p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
          and p.proname <> all (supaqueue.owner_only_routines())
    loop
      execute format('grant execute on routine %s to service_role', _routine);
    end loop;
  end if;
end
$$;

-- 2 ---------------------------------------------------------------------------------------------
-- supaqueue's pg_cron jobs for a pg_cron version: pg_cron >= 1.5 (Supabase ships 1.6) runs the
-- tick every second itself; older ones only once a minute, so that job runs the looping call.
-- The run history job keeps pg_cron's job_run_details bounded (pg_cron never prunes it).
create function supaqueue.cron_jobs_for(_pg_cron_version text)
returns table (jobname text, schedule text, command text)
language sql immutable security definer
set search_path = ''
as $$
  select j.jobname, j.schedule, j.command
  from (select pg_catalog.string_to_array(pg_catalog.split_part(_pg_cron_version, '-', 1), '.')
                 ::integer[] >= array[1, 5] as seconds) v,
  lateral (values
    ('supaqueue-tick',
     case when v.seconds then '1 seconds' else '* * * * *' end,
     case when v.seconds then 'select supaqueue.tick()' else 'call supaqueue.tick_loop()' end),
    ('supaqueue-cron-history', '*/10 * * * *', 'select supaqueue.prune_cron_history()')
  ) j (jobname, schedule, command)
$$;

-- The names of supaqueue's own cron jobs, exactly (uninstall unschedules these and no other).
-- Replaces 0007's list where it exists, so the names have one authority: cron_jobs_for.
create or replace function supaqueue.cron_job_names() returns text[]
language sql immutable security definer
set search_path = ''
as $$
  select array(select c.jobname from supaqueue.cron_jobs_for('0') c order by 1)
$$;

-- How supaqueue's cron jobs differ from what the installed pg_cron (or _pg_cron_version) needs,
-- one line each; empty when they match or pg_cron is not in this database.
create function supaqueue.cron_drift(_pg_cron_version text default null) returns text[]
language plpgsql stable security definer
set search_path = ''
as $$
declare
  _version text := coalesce(_pg_cron_version,
    (select e.extversion from pg_catalog.pg_extension e where e.extname = 'pg_cron'));
  _want record;
  _have record;
  _drift text[] := '{}';
begin
  if _version is null or pg_catalog.to_regclass('cron.job') is null then
    return _drift;
  end if;
  for _want in select * from supaqueue.cron_jobs_for(_version) order by 1 loop
    -- pg_cron's row security shows a role its own jobs only: these are the installer's.
    select j.schedule, j.command, j.active, j.database into _have
      from cron.job j
     where j.jobname = _want.jobname and j.username = current_user;
    if not found then
      _drift := _drift || format('%s is not scheduled; pg_cron %s needs %L at %L',
                                 _want.jobname, _version, _want.command, _want.schedule);
    elsif _have.schedule is distinct from _want.schedule
       or _have.command is distinct from _want.command then
      _drift := _drift || format('%s runs %L at %L; pg_cron %s needs %L at %L',
                                 _want.jobname, _have.command, _have.schedule, _version,
                                 _want.command, _want.schedule);
    elsif not _have.active or _have.database is distinct from pg_catalog.current_database() then
      _drift := _drift || format('%s is inactive or runs in database %L; it must run in %L',
                                 _want.jobname, _have.database, pg_catalog.current_database());
    end if;
  end loop;
  return _drift;
end
$$;

-- Makes supaqueue's cron jobs what the installed pg_cron needs (cron.schedule replaces a job of
-- the same name). Returns the drift it repaired. Run by this migration and by every `pulumi up`.
create function supaqueue.reconcile_cron() returns text[]
language plpgsql security definer
set search_path = ''
as $$
declare
  _drift text[] := supaqueue.cron_drift();
  _want record;
begin
  if cardinality(_drift) = 0 then
    return _drift;
  end if;
  for _want in
    select * from supaqueue.cron_jobs_for(
      (select e.extversion from pg_catalog.pg_extension e where e.extname = 'pg_cron'))
  loop
    perform cron.unschedule(j.jobid) from cron.job j
      where j.jobname = _want.jobname and j.username = current_user
        and (not j.active or j.database is distinct from pg_catalog.current_database());
    perform cron.schedule(_want.jobname, _want.schedule, _want.command);
  end loop;
  return _drift;
end
$$;

-- Deletes the run history of supaqueue's own cron jobs older than _keep (never another job's).
-- Needs only what the platform grants `postgres`: SELECT on cron.job, DELETE on job_run_details.
-- A run still 'running' a day past _keep was cut off by a crash.
create function supaqueue.prune_cron_history(_keep interval default interval '1 hour')
returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  _n bigint;
begin
  if pg_catalog.to_regclass('cron.job_run_details') is null then
    return 0;
  end if;
  delete from cron.job_run_details d
   where d.jobid in (select j.jobid from cron.job j
                      where j.username = current_user
                        and j.jobname = any (supaqueue.cron_job_names()))
     and coalesce(d.end_time, d.start_time + interval '1 day') < pg_catalog.now() - _keep;
  get diagnostics _n = row_count;
  return _n;
end
$$;

select supaqueue.reconcile_cron();
select supaqueue.apply_privileges();
