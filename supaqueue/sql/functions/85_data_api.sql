-- supaqueue functions/85_data_api.sql: The Data API: schema supaqueue_api's wrappers and their
-- checks.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- The API role the caller acts as. Inside a SECURITY DEFINER function current_user is the owner,
-- (also in this one), but the `role` setting still holds what the caller SET ROLE to (PostgREST's
-- `SET LOCAL ROLE` from the JWT), and a session can only SET ROLE to a role it is a member of, so
-- it cannot be claimed falsely, unlike `request.jwt.claims`. Without SET ROLE: the session's own
-- role.
CREATE OR REPLACE FUNCTION supaqueue._api_caller_role() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select case when coalesce(pg_catalog.current_setting('role', true), 'none') in ('none', '')
              then session_user::text
              else pg_catalog.current_setting('role', true) end
$$;

-- Whether the caller may use a queue whose enqueue_roles are `_roles` (enqueue into it, read its
-- jobs); raises 42501 otherwise (PostgREST answers 401 to anon, 403 to a signed-in user).
-- service_role and roles that are members of it (postgres) may use every queue; `authenticated`
-- / `anon` (and roles inside them) only a queue whose enqueue_roles names them.
CREATE OR REPLACE FUNCTION supaqueue._api_check(_roles text[], _name text, _caller text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- For enqueueing. service_role (and its members): _queue_by_name's lookup (SQ020 naming an unknown
-- name, with the names there are). Other roles: an unknown name and a queue the role may not use
-- answer alike (42501) and no name is listed, so the public anon key tells nobody which queues
-- exist. FOR KEY SHARE either way, against a concurrent drop_queue.
CREATE OR REPLACE FUNCTION supaqueue._api_queue(_name text, _caller text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

SET default_tablespace = '';

SET default_table_access_method = heap;

-- = supaqueue.enqueue(text, …) for the caller's role. PostgREST passes a JSON `null` argument as
-- SQL NULL, which supaqueue.enqueue reads as "no payload" (`{}`): here it is the JSON null the
-- caller sent, as over SQL and in enqueue_batch (an omitted payload still takes the default).
CREATE OR REPLACE FUNCTION supaqueue_api.enqueue(queue text, payload jsonb DEFAULT '{}'::jsonb, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT 0, dedup_key text DEFAULT NULL::text, depends_on uuid[] DEFAULT NULL::uuid[], key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue.enqueue(supaqueue._api_queue(queue, 'supaqueue_api.enqueue'),
                           coalesce(payload, 'null'::jsonb), run_at, priority, dedup_key,
                           depends_on, key);
end
$$;

-- = supaqueue.enqueue_batch(text, …) for the caller's role: one job per element of the
-- JSON array `payloads`, the ids in the same order.
CREATE OR REPLACE FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT 0, dedup_keys text[] DEFAULT NULL::text[], depends_on uuid[] DEFAULT NULL::uuid[], keys text[] DEFAULT NULL::text[]) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._api_queue(queue, 'supaqueue_api.enqueue_batch');
  return supaqueue.enqueue_batch(queue, payloads, run_at, priority, dedup_keys, depends_on, keys);
end
$$;

-- = supaqueue.get_job(uuid); a caller that is not service_role sees only jobs of the
-- queues its role may enqueue into (ids are random: in practice, the jobs it enqueued).
CREATE OR REPLACE FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- Who may call the wrappers: every API role may try; each wrapper checks the queue's
-- `enqueue_roles` (_api_check). Nothing else in the schema is granted.
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
