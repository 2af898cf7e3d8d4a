-- supaqueue 0024: the Data API (PostgREST, supabase-js) surface. A separate schema,
-- `supaqueue_api`, holds only SECURITY DEFINER wrappers (enqueue, batch enqueue, job status), so
-- exposing it to PostgREST exposes nothing else of supaqueue. Each queue says which API roles
-- besides service_role may enqueue into it (`enqueue_roles`); anon and authenticated get nothing
-- unless a queue names them.

alter table supaqueue.queue add column enqueue_roles text[] not null default '{}';
alter table supaqueue.queue add constraint queue_enqueue_roles_known
  check (enqueue_roles <@ array['anon', 'authenticated']::text[]
         and array_position(enqueue_roles, null) is null);

create schema supaqueue_api;
comment on schema supaqueue_api is
  'supaqueue''s Data API: enqueue, enqueue_batch, get_job (docs/architecture.md, "Data API")';
revoke all on schema supaqueue_api from public;

-- The API role the caller acts as. Inside a SECURITY DEFINER function current_user is the owner,
-- (also in this one), but the `role` setting still holds what the caller SET ROLE to (PostgREST's `SET LOCAL ROLE`
-- from the JWT), and a session can only SET ROLE to a role it is a member of, so it cannot be
-- claimed falsely, unlike `request.jwt.claims`. Without SET ROLE: the session's own role.
create function supaqueue._api_caller_role() returns text
language sql stable security definer set search_path = '' as $$
  select case when coalesce(pg_catalog.current_setting('role', true), 'none') in ('none', '')
              then session_user::text
              else pg_catalog.current_setting('role', true) end
$$;

-- Whether the caller may use a queue whose enqueue_roles are `_roles` (enqueue into it, read its
-- jobs); raises 42501 otherwise (PostgREST answers 401 to anon, 403 to a signed-in user).
-- service_role and roles that are members of it (postgres) may use every queue; `authenticated`
-- / `anon` (and roles inside them) only a queue whose enqueue_roles names them.
create function supaqueue._api_check(_roles text[], _name text, _caller text) returns void
language plpgsql stable security definer set search_path = '' as $$
declare
  _role text := supaqueue._api_caller_role();
begin
  if pg_catalog.pg_has_role(_role, 'service_role', 'MEMBER')
     or ('authenticated' = any (_roles) and pg_catalog.pg_has_role(_role, 'authenticated', 'MEMBER'))
     or ('anon' = any (_roles) and pg_catalog.pg_has_role(_role, 'anon', 'MEMBER')) then
    return;
  end if;
  raise exception '%: role % may not use queue %', _caller, _role, pg_catalog.quote_literal(_name)
    using errcode = '42501',
          hint = 'list the role in the queue''s enqueue_roles (supaqueue:queues) to allow it';
end
$$;

-- For enqueueing. service_role (and its members): 0023's lookup (SQ020 naming an unknown name,
-- with the names there are). Other roles: an unknown name and a queue the role may not use answer
-- alike (42501) and no name is listed, so the public anon key tells nobody which queues exist.
-- FOR KEY SHARE either way, against a concurrent drop_queue.
create function supaqueue._api_queue(_name text, _caller text) returns uuid
language plpgsql security definer set search_path = '' as $$
declare
  _role text := supaqueue._api_caller_role();
  _id uuid;
begin
  if pg_catalog.pg_has_role(_role, 'service_role', 'MEMBER') then
    return supaqueue._queue_by_name(_name, _caller);
  end if;
  select q.id into _id from supaqueue.queue q
   where q.name = _name
     and (('authenticated' = any (q.enqueue_roles)
           and pg_catalog.pg_has_role(_role, 'authenticated', 'MEMBER'))
       or ('anon' = any (q.enqueue_roles) and pg_catalog.pg_has_role(_role, 'anon', 'MEMBER')))
   for key share;
  if not found then
    raise exception '%: role % may not use queue %', _caller, _role,
                    pg_catalog.quote_literal(coalesce(_name, 'null'))
      using errcode = '42501',
            hint = 'a queue names the roles that may use it in its enqueue_roles (supaqueue:queues);'
                   ' a name that is no queue answers the same';
  end if;
  return _id;
end
$$;

-- = supaqueue.enqueue(text, …) (0023) for the caller's role.
create function supaqueue_api.enqueue(queue text, payload jsonb default '{}'::jsonb,
                                      run_at timestamptz default null, priority integer default 0,
                                      dedup_key text default null, depends_on uuid[] default null)
returns uuid
language plpgsql security definer set search_path = '' as $$
begin
  return supaqueue.enqueue(supaqueue._api_queue(queue, 'supaqueue_api.enqueue'), payload, run_at,
                           priority, dedup_key, depends_on);
end
$$;

-- = supaqueue.enqueue_batch(text, …) (0023) for the caller's role: one job per element of the
-- JSON array `payloads`, the ids in the same order.
create function supaqueue_api.enqueue_batch(queue text, payloads jsonb,
                                            run_at timestamptz default null,
                                            priority integer default 0,
                                            dedup_keys text[] default null,
                                            depends_on uuid[] default null)
returns uuid[]
language plpgsql security definer set search_path = '' as $$
begin
  perform supaqueue._api_queue(queue, 'supaqueue_api.enqueue_batch');
  return supaqueue.enqueue_batch(queue, payloads, run_at, priority, dedup_keys, depends_on);
end
$$;

-- = supaqueue.get_job(uuid) (0023); a caller that is not service_role sees only jobs of the
-- queues its role may enqueue into (ids are random: in practice, the jobs it enqueued).
create function supaqueue_api.get_job(id uuid,
                                         out queue text, out status text,
                                         out attempts integer, out max_attempts integer,
                                         out result jsonb, out last_status_code integer,
                                         out last_error text, out run_at timestamptz,
                                         out created_at timestamptz, out updated_at timestamptz,
                                         out finished_at timestamptz)
language plpgsql stable security definer set search_path = '' as $$
declare
  _s record;
begin
  select * into _s from supaqueue.get_job(get_job.id);
  -- no row lock here: a status read may run in a read-only transaction (PostgREST's GET)
  perform supaqueue._api_check((select q.enqueue_roles from supaqueue.queue q
                                 where q.name = _s.queue), _s.queue, 'supaqueue_api.get_job');
  queue := _s.queue; status := _s.status; attempts := _s.attempts;
  max_attempts := _s.max_attempts; result := _s.result; last_status_code := _s.last_status_code;
  last_error := _s.last_error; run_at := _s.run_at; created_at := _s.created_at;
  updated_at := _s.updated_at; finished_at := _s.finished_at;
end
$$;

revoke all on all routines in schema supaqueue_api from public;
do $$
declare
  _role text;
begin
  foreach _role in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = _role) then
      execute format('grant usage on schema supaqueue_api to %I', _role);
      execute format('grant execute on all routines in schema supaqueue_api to %I', _role);
    end if;
  end loop;
end
$$;

-- = 0019's uninstall, also dropping supaqueue_api (its wrappers call into supaqueue), and trying
-- the drop again when a running tick deadlocks with it.
create or replace function supaqueue.uninstall() returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  _found text;
  _count integer;
begin
  if coalesce(current_setting('supaqueue.drop_dependents', true), '') not in ('on', 'true') then
    select string_agg(d.object_type || ' ' || d.object_identity, '; '), count(*)
      into _found, _count
      from supaqueue.external_dependents() d;
    if _count > 0 then
      raise exception 'supaqueue was not removed: % object(s) outside the schema supaqueue depend '
                      'on it and would be dropped with it: %', _count, _found
        using errcode = 'SQ002',
              hint = 'drop or change them first (e.g. drop the view, change the column''s type, '
                     'drop the foreign key); or, to drop them with supaqueue, '
                     'set supaqueue.drop_dependents = on in this session';
    end if;
  end if;
  if pg_catalog.to_regclass('cron.job') is not null then
    if pg_catalog.to_regclass('cron.job_run_details') is not null
       and pg_catalog.has_table_privilege('cron.job_run_details', 'DELETE') then
      delete from cron.job_run_details d
       where d.jobid in (select j.jobid from cron.job j
                          where j.jobname = any (supaqueue.cron_job_names())
                            and j.database = pg_catalog.current_database());
    end if;
    perform cron.unschedule(j.jobid) from cron.job j
      where j.jobname = any (supaqueue.cron_job_names()) and j.database = pg_catalog.current_database();
  end if;
  -- A tick running now holds locks the drop needs and may then want one the drop took first:
  -- Postgres ends one of the two (deadlock). If it is the drop, the tick finishes; try again.
  for _try in 1..5 loop
    begin
      drop schema if exists supaqueue_api cascade;
      drop schema supaqueue cascade;
      return;
    exception when deadlock_detected then
      if _try = 5 then
        raise;
      end if;
      perform pg_catalog.pg_sleep(0.2 * _try);
    end;
  end loop;
end
$$;

select supaqueue.apply_privileges();
