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
  'supaqueue''s Data API: enqueue, enqueue_batch, job_status (docs/architecture.md, "Data API")';
revoke all on schema supaqueue_api from public;

-- The API role the caller acts as. Inside a SECURITY DEFINER function current_user is the owner,
-- but the `role` setting still holds what the caller SET ROLE to (PostgREST's `SET LOCAL ROLE`
-- from the JWT), and a session can only SET ROLE to a role it is a member of, so it cannot be
-- claimed falsely, unlike `request.jwt.claims`. Without SET ROLE: the session's own role.
create function supaqueue._api_caller_role() returns text
language sql stable set search_path = '' as $$
  select case when coalesce(pg_catalog.current_setting('role', true), 'none') in ('none', '')
              then session_user::text
              else pg_catalog.current_setting('role', true) end
$$;

-- The queue's id when the caller may enqueue into it (or read its jobs); raises otherwise:
-- SQ005 when no queue has that name (naming it), 42501 when the caller's role may not use it
-- (PostgREST answers 401 to anon, 403 to a signed-in user). service_role and the roles that are
-- members of it (postgres) may use every queue; `authenticated` / `anon` (and roles inside them)
-- only a queue whose enqueue_roles names them.
create function supaqueue._api_queue(_name text) returns uuid
language plpgsql stable security definer set search_path = '' as $$
declare
  _role text := supaqueue._api_caller_role();
  _q supaqueue.queue;
begin
  select * into _q from supaqueue.queue where name = _name;
  if not found then
    raise exception 'supaqueue: there is no queue named %', coalesce(pg_catalog.quote_literal(_name), 'null')
      using errcode = 'SQ005',
            hint = 'check the name against supaqueue:queues in the stack (a removed queue takes no jobs)';
  end if;
  if pg_catalog.pg_has_role(_role, 'service_role', 'MEMBER') then
    return _q.id;
  end if;
  if ('authenticated' = any (_q.enqueue_roles)
        and pg_catalog.pg_has_role(_role, 'authenticated', 'MEMBER'))
     or ('anon' = any (_q.enqueue_roles) and pg_catalog.pg_has_role(_role, 'anon', 'MEMBER')) then
    return _q.id;
  end if;
  raise exception 'supaqueue: role % may not enqueue into queue %', _role, pg_catalog.quote_literal(_name)
    using errcode = '42501',
          hint = 'list the role in the queue''s enqueue_roles (supaqueue:queues) to allow it';
end
$$;

create function supaqueue_api.enqueue(queue text, payload jsonb default '{}'::jsonb,
                                      run_at timestamptz default null, priority integer default 0,
                                      dedup_key text default null, depends_on uuid[] default null)
returns uuid
language plpgsql security definer set search_path = '' as $$
begin
  return supaqueue.enqueue(supaqueue._api_queue(queue), payload, run_at, priority, dedup_key,
                           depends_on);
end
$$;

-- Many payloads (a JSON array) into one queue in one call; the ids in the array's order.
create function supaqueue_api.enqueue_batch(queue text, payloads jsonb,
                                            run_at timestamptz default null,
                                            priority integer default 0)
returns uuid[]
language plpgsql security definer set search_path = '' as $$
declare
  _q uuid := supaqueue._api_queue(queue);
begin
  if payloads is null or pg_catalog.jsonb_typeof(payloads) <> 'array' then
    raise exception 'supaqueue: payloads must be a JSON array, got %',
      coalesce(pg_catalog.jsonb_typeof(payloads), 'null') using errcode = '22023';
  end if;
  return array(
    select supaqueue.enqueue(_q, p.value, run_at, priority)
      from pg_catalog.jsonb_array_elements(payloads) with ordinality as p(value, n)
     order by p.n);
end
$$;

-- A job's state and result, for callers that wait for it; null when there is no such job. A
-- caller that is not service_role sees only jobs of queues its role may enqueue into.
create function supaqueue_api.job_status(id uuid) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  _j supaqueue.job;
  _name text;
begin
  select * into _j from supaqueue.job j where j.id = job_status.id;
  if not found then
    return null;
  end if;
  select q.name into _name from supaqueue.queue q where q.id = _j.queue;
  perform supaqueue._api_queue(_name);
  return pg_catalog.jsonb_build_object(
    'id', _j.id, 'queue', _name, 'status', _j.status, 'attempts', _j.attempts,
    'result', _j.result, 'last_status_code', _j.last_status_code, 'last_error', _j.last_error,
    'created_at', _j.created_at, 'finished_at', _j.finished_at);
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

-- = 0007's uninstall, also dropping supaqueue_api (its wrappers call into supaqueue).
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
    perform cron.unschedule(j.jobid) from cron.job j
      where j.jobname = any (supaqueue.cron_job_names()) and j.database = pg_catalog.current_database();
  end if;
  drop schema if exists supaqueue_api cascade;
  drop schema supaqueue cascade;
end
$$;
