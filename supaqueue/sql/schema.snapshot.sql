CREATE SCHEMA supaqueue;

ALTER SCHEMA supaqueue OWNER TO postgres;

CREATE SCHEMA supaqueue_api;

ALTER SCHEMA supaqueue_api OWNER TO postgres;

COMMENT ON SCHEMA supaqueue_api IS 'supaqueue''s Data API: enqueue, enqueue_batch, get_job (docs/architecture.md, "Data API")';

CREATE TYPE supaqueue.cron_spec AS (
	seconds integer,
	minutes integer[],
	hours integer[],
	days integer[],
	months integer[],
	weekdays integer[],
	minute_star boolean,
	hour_star boolean,
	day_star boolean,
	weekday_star boolean
);

ALTER TYPE supaqueue.cron_spec OWNER TO postgres;

CREATE TYPE supaqueue.job_status AS ENUM (
    'pending',
    'in_progress',
    'success',
    'failed',
    'cancelled'
);

ALTER TYPE supaqueue.job_status OWNER TO postgres;

CREATE FUNCTION supaqueue._api_caller_role() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select case when coalesce(pg_catalog.current_setting('role', true), 'none') in ('none', '')
              then session_user::text
              else pg_catalog.current_setting('role', true) end
$$;

ALTER FUNCTION supaqueue._api_caller_role() OWNER TO postgres;

CREATE FUNCTION supaqueue._api_check(_roles text[], _name text, _caller text) RETURNS void
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

ALTER FUNCTION supaqueue._api_check(_roles text[], _name text, _caller text) OWNER TO postgres;

CREATE FUNCTION supaqueue._api_queue(_name text, _caller text) RETURNS uuid
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

ALTER FUNCTION supaqueue._api_queue(_name text, _caller text) OWNER TO postgres;

CREATE TABLE supaqueue.current_job (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    worker uuid NOT NULL,
    job uuid NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    lease_expires_at timestamp with time zone NOT NULL,
    request_id bigint,
    claimed_at timestamp with time zone,
    batch uuid
);

ALTER TABLE supaqueue.current_job OWNER TO postgres;

CREATE FUNCTION supaqueue._cancel_attempt(_cj supaqueue.current_job) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _j supaqueue.job;
begin
  select * into _j from supaqueue.job where id = _cj.job for update;
  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     error, duration_ms)
    values (_j.id, _j.queue, _j.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            'cancelled', 'cancelled by the operator while in progress',
            (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer);
  if _cj.claimed_at is not null then
    -- claimed: the dispatcher may be calling the target; the worker waits until it cannot be
    perform supaqueue._hold_worker(_cj);
  else
    update supaqueue.worker set locked = false, key = null where id = _cj.worker and not retiring;
    if not found then
      delete from supaqueue.worker where id = _cj.worker;
    end if;
  end if;
  update supaqueue.job
    set status = 'cancelled', finished_at = now(), updated_at = now(),
        cancelled_by_operator = true, last_error = 'cancelled by the operator'
    where id = _j.id;
  perform supaqueue._cancel_dependents(
    _j.id, format('cancelled: job %s it depends on was cancelled by the operator', _j.id));
  return _j.queue;
end
$$;

ALTER FUNCTION supaqueue._cancel_attempt(_cj supaqueue.current_job) OWNER TO postgres;

CREATE FUNCTION supaqueue._cancel_dependents(_job uuid, _reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _n integer;
  _total integer := 0;
begin
  -- Repeated until a pass cancels nothing: a pass may wait for an enqueue that holds a dependent
  -- FOR SHARE, and that enqueue's new edge is only visible to the next statement's snapshot.
  loop
    with recursive dependents (job) as (
      select d.job from supaqueue.job_dependency d where d.depends_on = _job
      union
      select d.job from supaqueue.job_dependency d join dependents x on d.depends_on = x.job
    )
    update supaqueue.job j
      set status = 'cancelled', finished_at = now(), updated_at = now(), last_error = _reason
      from dependents x
      where j.id = x.job and j.status = 'pending';
    get diagnostics _n = row_count;
    exit when _n = 0;
    _total := _total + _n;
  end loop;
  return _total;
end
$$;

ALTER FUNCTION supaqueue._cancel_dependents(_job uuid, _reason text) OWNER TO postgres;

CREATE FUNCTION supaqueue.default_non_retryable_statuses() RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select array(select s from pg_catalog.generate_series(400, 499) s where s not in (408, 429))
$$;

ALTER FUNCTION supaqueue.default_non_retryable_statuses() OWNER TO postgres;

CREATE TABLE supaqueue.queue (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    edge_function_name text NOT NULL,
    default_headers jsonb DEFAULT '{}'::jsonb NOT NULL,
    method text DEFAULT 'POST'::text NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    backoff_base_ms integer DEFAULT 1000 NOT NULL,
    backoff_max_ms integer DEFAULT 300000 NOT NULL,
    backoff_jitter double precision DEFAULT 0.1 NOT NULL,
    non_retryable_statuses integer[] DEFAULT supaqueue.default_non_retryable_statuses() NOT NULL,
    timeout_ms integer DEFAULT 30000 NOT NULL,
    lease_grace_ms integer DEFAULT 30000 NOT NULL,
    rate_limit_per_second double precision,
    rate_limit_burst integer,
    paused boolean DEFAULT false NOT NULL,
    retention_seconds integer DEFAULT 604800,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    owner_stack text,
    owner_stack_id text,
    operator_paused_at timestamp with time zone,
    target_wall_clock_ms integer DEFAULT 400000 NOT NULL,
    dead_letter_queue uuid,
    discard_unfinished_on_delete boolean DEFAULT false NOT NULL,
    enqueue_roles text[] DEFAULT '{}'::text[] NOT NULL,
    payload_schema jsonb,
    key_from text,
    workers_per_key integer,
    rate_limit_per_key double precision,
    rate_limit_burst_per_key integer,
    hold_on_retry_after text DEFAULT 'job'::text NOT NULL,
    batch_size integer DEFAULT 1 NOT NULL,
    batch_max_wait_ms integer DEFAULT 0 NOT NULL,
    CONSTRAINT queue_backoff_jitter_fraction CHECK (((backoff_jitter >= (0)::double precision) AND (backoff_jitter <= (1)::double precision))),
    CONSTRAINT queue_backoff_valid CHECK (((backoff_base_ms >= 0) AND (backoff_max_ms >= backoff_base_ms))),
    CONSTRAINT queue_batch_max_wait_range CHECK (((batch_max_wait_ms >= 0) AND (batch_max_wait_ms <= 300000))),
    CONSTRAINT queue_batch_method CHECK (((batch_size = 1) OR (method = ANY (ARRAY['POST'::text, 'PUT'::text, 'PATCH'::text])))),
    CONSTRAINT queue_batch_size_range CHECK (((batch_size >= 1) AND (batch_size <= 100))),
    CONSTRAINT queue_default_headers_object CHECK ((jsonb_typeof(default_headers) = 'object'::text)),
    CONSTRAINT queue_edge_function_name_is_slug CHECK ((edge_function_name ~ '^[A-Za-z][A-Za-z0-9_-]{0,62}$'::text)),
    CONSTRAINT queue_enqueue_roles_known CHECK (((enqueue_roles <@ ARRAY['anon'::text, 'authenticated'::text]) AND (array_position(enqueue_roles, NULL::text) IS NULL))),
    CONSTRAINT queue_hold_on_retry_after_known CHECK ((hold_on_retry_after = ANY (ARRAY['job'::text, 'key'::text, 'queue'::text]))),
    CONSTRAINT queue_key_from_path CHECK (((key_from IS NULL) OR (key_from ~ '^\$(\.[A-Za-z_][A-Za-z0-9_]{0,62}){1,8}$'::text))),
    CONSTRAINT queue_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT queue_method_known CHECK ((method = ANY (ARRAY['GET'::text, 'POST'::text, 'PUT'::text, 'PATCH'::text, 'DELETE'::text]))),
    CONSTRAINT queue_name_is_slug CHECK ((name ~ '^[A-Za-z][A-Za-z0-9_-]{0,62}$'::text)),
    CONSTRAINT queue_payload_schema_object CHECK (((payload_schema IS NULL) OR (jsonb_typeof(payload_schema) = 'object'::text))),
    CONSTRAINT queue_payload_schema_size CHECK (((payload_schema IS NULL) OR (octet_length((payload_schema)::text) <= 65536))),
    CONSTRAINT queue_rate_limit_burst_per_key_positive CHECK (((rate_limit_burst_per_key IS NULL) OR (rate_limit_burst_per_key >= 1))),
    CONSTRAINT queue_rate_limit_burst_positive CHECK (((rate_limit_burst IS NULL) OR (rate_limit_burst >= 1))),
    CONSTRAINT queue_rate_limit_per_key_range CHECK (((rate_limit_per_key IS NULL) OR ((rate_limit_per_key > (0)::double precision) AND (rate_limit_per_key <= (2147483647)::double precision)))),
    CONSTRAINT queue_rate_limit_range CHECK (((rate_limit_per_second IS NULL) OR ((rate_limit_per_second > (0)::double precision) AND (rate_limit_per_second <= (2147483647)::double precision)))),
    CONSTRAINT queue_retention_non_negative CHECK (((retention_seconds IS NULL) OR (retention_seconds >= 0))),
    CONSTRAINT queue_target_wall_clock_range CHECK (((target_wall_clock_ms >= 1000) AND (target_wall_clock_ms <= 3600000))),
    CONSTRAINT queue_timeout_range CHECK ((((timeout_ms >= 1) AND (timeout_ms <= 390000)) AND (lease_grace_ms >= 0))),
    CONSTRAINT queue_workers_per_key_range CHECK (((workers_per_key IS NULL) OR ((workers_per_key >= 1) AND (workers_per_key <= 1000))))
);

ALTER TABLE supaqueue.queue OWNER TO postgres;

COMMENT ON COLUMN supaqueue.queue.discard_unfinished_on_delete IS 'Set by the Pulumi stack that owns the queue: removing it may discard its unfinished jobs.';

CREATE FUNCTION supaqueue._chain_own_key_job(_q supaqueue.queue, _chain_worker uuid, _since_serve text[]) RETURNS uuid
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

ALTER FUNCTION supaqueue._chain_own_key_job(_q supaqueue.queue, _chain_worker uuid, _since_serve text[]) OWNER TO postgres;

CREATE FUNCTION supaqueue._check_table_trigger_condition(_table_schema text, _table_name text, _events text[], _condition text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  _event text;
  _probe refcursor;
begin
  if _condition is null then
    return;
  end if;
  foreach _event in array _events loop
    begin
      open _probe for execute pg_catalog.format('select 1 from %s where (%s)::boolean limit 0',
        case _event
          when 'INSERT' then pg_catalog.format('%I.%I as new', _table_schema, _table_name)
          when 'DELETE' then pg_catalog.format('%I.%I as old', _table_schema, _table_name)
          else pg_catalog.format('%I.%I as new, %I.%I as old', _table_schema, _table_name,
                                 _table_schema, _table_name) end,
        _condition);
      close _probe;
      begin
        execute pg_catalog.format(
          'create trigger supaqueue_when_check after %s on %I.%I for each row when (%s) '
          'execute function pg_catalog.suppress_redundant_updates_trigger()',
          _event, _table_schema, _table_name, _condition);
        raise exception using errcode = 'SQ0WP';  -- always roll the probe back
      exception when sqlstate 'SQ0WP' then
        null;
      end;
    exception when others then
      raise exception 'when: % is not a valid condition for % on %.% (one SQL expression over '
                      'the row, as in a trigger''s WHEN: no subqueries, no -- comments, no second '
                      'statement): %',
        pg_catalog.quote_literal(_condition), _event, _table_schema, _table_name, sqlerrm
        using errcode = '22023';
    end;
  end loop;
end
$$;

ALTER FUNCTION supaqueue._check_table_trigger_condition(_table_schema text, _table_name text, _events text[], _condition text) OWNER TO postgres;

CREATE FUNCTION supaqueue._check_timezone(_tz text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  if _tz is null or not exists (select 1 from pg_catalog.pg_timezone_names where name = _tz) then
    raise exception 'timezone: unknown time zone %, use an IANA name such as UTC or Europe/Paris',
      coalesce(pg_catalog.quote_literal(_tz), 'null') using errcode = '22023';
  end if;
end
$$;

ALTER FUNCTION supaqueue._check_timezone(_tz text) OWNER TO postgres;

CREATE FUNCTION supaqueue._claim_document(_cj supaqueue.current_job) RETURNS jsonb
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

ALTER FUNCTION supaqueue._claim_document(_cj supaqueue.current_job) OWNER TO postgres;

CREATE FUNCTION supaqueue._claimed_job(_cj supaqueue.current_job) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue._claimed_jobs(array[_cj]) -> 0;
end
$$;

ALTER FUNCTION supaqueue._claimed_job(_cj supaqueue.current_job) OWNER TO postgres;

CREATE FUNCTION supaqueue._claimed_jobs(_cjs supaqueue.current_job[]) RETURNS jsonb
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

ALTER FUNCTION supaqueue._claimed_jobs(_cjs supaqueue.current_job[]) OWNER TO postgres;

CREATE FUNCTION supaqueue._contains_pattern(_text text) RETURNS text
    LANGUAGE sql IMMUTABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select '%' || replace(replace(replace(_text, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;

ALTER FUNCTION supaqueue._contains_pattern(_text text) OWNER TO postgres;

CREATE FUNCTION supaqueue._cron_day_matches(_spec supaqueue.cron_spec, _t timestamp without time zone) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case when _spec.day_star or _spec.weekday_star
              then day_ok and weekday_ok
              else day_ok or weekday_ok end
    from (select pg_catalog.date_part('day', _t)::integer = any (_spec.days) as day_ok,
                 pg_catalog.date_part('dow', _t)::integer = any (_spec.weekdays) as weekday_ok) d
$$;

ALTER FUNCTION supaqueue._cron_day_matches(_spec supaqueue.cron_spec, _t timestamp without time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue._cron_field(_field text, _what text, _low integer, _high integer, _names text[] DEFAULT NULL::text[]) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  _part text;
  _m text[];
  _a integer;
  _b integer;
  _step integer;
  _values integer[] := '{}';
  _token text;
  _bound integer;
begin
  foreach _part in array pg_catalog.string_to_array(_field, ',') loop
    _m := pg_catalog.regexp_match(_part,
      '^(?:(\*)|([0-9]{1,4}|[A-Za-z]{3})(?:-([0-9]{1,4}|[A-Za-z]{3}))?)(?:/([0-9]{1,4}))?$');
    if _m is null then
      raise exception 'cron: % field %: % is not *, n, a-b, */step or a-b/step',
        _what, pg_catalog.quote_literal(_field), pg_catalog.quote_literal(_part)
        using errcode = '22023';
    end if;
    if _m[1] is not null then
      _a := _low;
      _b := _high;
    else
      for _i in 2..3 loop
        _token := _m[_i];
        continue when _token is null;
        if _token ~ '^[0-9]+$' then
          _bound := _token::integer;
        else
          _bound := pg_catalog.array_position(_names, pg_catalog.lower(_token));
          if _bound is null then
            raise exception 'cron: % field %: unknown name %', _what,
              pg_catalog.quote_literal(_field), pg_catalog.quote_literal(_token)
              using errcode = '22023';
          end if;
          _bound := _bound + _low - 1;
        end if;
        if _i = 2 then _a := _bound; else _b := _bound; end if;
      end loop;
      if _m[3] is null then
        if _m[4] is not null then
          raise exception 'cron: % field %: a step needs a range (use %-%/% or */%)', _what,
            pg_catalog.quote_literal(_field), _a, _high, _m[4], _m[4] using errcode = '22023';
        end if;
        _b := _a;
      end if;
    end if;
    _step := coalesce(_m[4]::integer, 1);
    if _a < _low or _a > _high or _b < _low or _b > _high then
      raise exception 'cron: % field %: values must be within %-%', _what,
        pg_catalog.quote_literal(_field), _low, _high using errcode = '22023';
    end if;
    if _a > _b then
      raise exception 'cron: % field %: range %-% goes backwards', _what,
        pg_catalog.quote_literal(_field), _a, _b using errcode = '22023';
    end if;
    if _step < 1 then
      raise exception 'cron: % field %: a step must be at least 1', _what,
        pg_catalog.quote_literal(_field) using errcode = '22023';
    end if;
    _values := _values || array(select pg_catalog.generate_series(_a, _b, _step));
  end loop;
  return array(select distinct v from pg_catalog.unnest(_values) v order by v);
end
$_$;

ALTER FUNCTION supaqueue._cron_field(_field text, _what text, _low integer, _high integer, _names text[]) OWNER TO postgres;

CREATE FUNCTION supaqueue._cron_latest_slot(_spec supaqueue.cron_spec, _tz text, _from timestamp with time zone, _now timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  _window interval;
  _start timestamptz;
  _slot timestamptz;
  _next timestamptz;
begin
  if _spec.seconds is not null then
    return greatest(_from, pg_catalog.to_timestamp(
      pg_catalog.floor(pg_catalog.date_part('epoch', _now) / _spec.seconds) * _spec.seconds));
  end if;
  foreach _window in array array['1 minute', '10 minutes', '1 hour', '6 hours', '1 day',
                                 '7 days', '32 days', '366 days']::interval[] loop
    _start := greatest(_now - _window, _from - interval '1 microsecond');
    _slot := supaqueue._cron_next(_spec, _start, _tz);
    if _slot is not null and _slot <= _now then
      for _i in 1..1000 loop
        _next := supaqueue._cron_next(_spec, _slot, _tz);
        exit when _next is null or _next > _now;
        _slot := _next;
      end loop;
      return _slot;
    end if;
    exit when _start < _from;
  end loop;
  return _from;
end
$$;

ALTER FUNCTION supaqueue._cron_latest_slot(_spec supaqueue.cron_spec, _tz text, _from timestamp with time zone, _now timestamp with time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue._cron_next(_spec supaqueue.cron_spec, _after timestamp with time zone, _tz text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  -- larger than any UTC offset change (DST shifts are 1 h, 30 min on Lord Howe Island)
  _margin constant interval := interval '3 hours';
  _wall timestamp;
  _c timestamp;
  _s timestamptz;
  _best timestamptz;
  _offsets interval[];
  _instant timestamptz;
  _instants timestamptz[];
  _wildcard boolean := _spec.minute_star or _spec.hour_star;
begin
  if not pg_catalog.isfinite(_after) then
    return null;
  end if;
  if _spec.seconds is not null then
    return pg_catalog.to_timestamp(
      (pg_catalog.floor(pg_catalog.date_part('epoch', _after) / _spec.seconds) + 1) * _spec.seconds);
  end if;
  _wall := _after at time zone _tz;
  _c := supaqueue._cron_next_wall(_spec, _wall);
  if _c is null then
    return null;
  end if;
  _s := _c at time zone _tz;
  -- Usual case: the offset is the same for hours around _after and around _s, so wall time
  -- and real time advance together and the first matching wall time is the next slot.
  if _s > _after
     and supaqueue._utc_offset(_after, _tz) = supaqueue._utc_offset(_after + _margin, _tz)
     and supaqueue._utc_offset(_s - _margin, _tz) = supaqueue._utc_offset(_s, _tz)
     and supaqueue._utc_offset(_s, _tz) = supaqueue._utc_offset(_s + _margin, _tz) then
    return _s;
  end if;
  -- Near a DST change: every matching wall time from a margin before _after; each one's
  -- instants (none in a gap, two in a repeated hour); the smallest after _after wins. A slot
  -- before the best one found has a wall time below the best's plus the margin.
  _c := _wall - _margin;
  for _i in 1..2000 loop
    _c := supaqueue._cron_next_wall(_spec, _c);
    exit when _c is null
      or (_best is not null and _c >= (_best at time zone _tz) + _margin);
    _s := _c at time zone _tz;
    _offsets := array[supaqueue._utc_offset(_s - _margin, _tz),
                      supaqueue._utc_offset(_s + _margin, _tz)];
    _instants := array(
      select distinct i from (select (_c - o) at time zone 'UTC' as i
                                from pg_catalog.unnest(_offsets) o) x
       where (i at time zone _tz) = _c order by i);
    if pg_catalog.cardinality(_instants) = 0 then
      -- a wall time the clock skips: fixed times run shifted by the jump (PostgreSQL's reading)
      _instants := case when _wildcard then '{}'::timestamptz[] else array[_s] end;
    elsif pg_catalog.cardinality(_instants) > 1 and not _wildcard then
      _instants := _instants[1:1];  -- a repeated wall time: fixed times run once
    end if;
    foreach _instant in array _instants loop
      if _instant > _after and (_best is null or _instant < _best) then
        _best := _instant;
      end if;
    end loop;
  end loop;
  return _best;
end
$$;

ALTER FUNCTION supaqueue._cron_next(_spec supaqueue.cron_spec, _after timestamp with time zone, _tz text) OWNER TO postgres;

CREATE FUNCTION supaqueue._cron_next_wall(_spec supaqueue.cron_spec, _after timestamp without time zone) RETURNS timestamp without time zone
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
declare
  _t timestamp := pg_catalog.date_trunc('minute', _after) + interval '1 minute';
  _limit timestamp := _after + interval '5 years';
  _next integer;
begin
  loop
    if _t > _limit then
      return null;
    end if;
    if not pg_catalog.date_part('month', _t)::integer = any (_spec.months) then
      _t := pg_catalog.date_trunc('month', _t) + interval '1 month';
      continue;
    end if;
    if not supaqueue._cron_day_matches(_spec, _t) then
      _t := pg_catalog.date_trunc('day', _t) + interval '1 day';
      continue;
    end if;
    if not pg_catalog.date_part('hour', _t)::integer = any (_spec.hours) then
      select min(h) into _next from pg_catalog.unnest(_spec.hours) h
        where h > pg_catalog.date_part('hour', _t)::integer;
      _t := case when _next is null then pg_catalog.date_trunc('day', _t) + interval '1 day'
                 else pg_catalog.date_trunc('day', _t) + pg_catalog.make_interval(hours => _next)
            end;
      continue;
    end if;
    if not pg_catalog.date_part('minute', _t)::integer = any (_spec.minutes) then
      select min(m) into _next from pg_catalog.unnest(_spec.minutes) m
        where m > pg_catalog.date_part('minute', _t)::integer;
      _t := case when _next is null then pg_catalog.date_trunc('hour', _t) + interval '1 hour'
                 else pg_catalog.date_trunc('hour', _t) + pg_catalog.make_interval(mins => _next)
            end;
      continue;
    end if;
    return _t;
  end loop;
end
$$;

ALTER FUNCTION supaqueue._cron_next_wall(_spec supaqueue.cron_spec, _after timestamp without time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue._dispatch(_queue uuid, _chain_worker uuid) RETURNS integer
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

ALTER FUNCTION supaqueue._dispatch(_queue uuid, _chain_worker uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._end_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _keep_worker boolean) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _job supaqueue.job;
  _q supaqueue.queue;
  _final boolean;
  _delay_ms double precision;
  _queues uuid[];
  _refused boolean := _outcome = 'refused';
begin
  if _outcome = 'lease_expired' and _cj.claimed_at is null then
    _error := _error || ' (never claimed: the dispatch was not delivered to the function in time)';
  end if;
  if _outcome = 'success' then
    -- locks, ends and reads the job in one statement: success needs nothing of it beforehand
    update supaqueue.job
      set status = 'success', result = _result, finished_at = now(), updated_at = now(),
          last_status_code = _status_code, last_error = null
      where id = _cj.job
      returning * into _job;
  else
    select * into _job from supaqueue.job where id = _cj.job for update;
    select * into _q from supaqueue.queue where id = _job.queue;
  end if;
  _queues := array[_job.queue];

  -- 0033: retry_after_seconds as the retry uses it (lift_hold tells its delay by it)
  insert into supaqueue.job_attempt (job, queue, attempt, worker, started_at, ended_at, outcome,
                                     status_code, error, duration_ms, response_excerpt,
                                     retry_after_seconds)
    values (_job.id, _job.queue, _job.attempts, _cj.worker, _cj.started_at, clock_timestamp(),
            case when _refused then 'failure' else _outcome end, _status_code, left(_error, 2000),
            coalesce(_duration_ms,
                     (extract(epoch from clock_timestamp() - _cj.started_at) * 1000)::integer),
            left(_response_excerpt, 2000),
            case when _outcome <> 'success' and _retry_after_seconds > 0
                 then _retry_after_seconds end);

  if not _keep_worker then
    perform supaqueue._free_worker(_cj.worker);
  end if;

  if _outcome = 'success' then
    -- Dependents whose last dependency this was become ready.
    if not exists (select 1 from supaqueue.job_dependency d where d.depends_on = _job.id) then
      return _queues;
    end if;
    with released as (
      update supaqueue.job j
        set pending_dependencies = j.pending_dependencies - 1, updated_at = now()
        from supaqueue.job_dependency d
        where d.depends_on = _job.id and j.id = d.job and j.status = 'pending'
        returning j.queue, j.pending_dependencies
    )
    select _queues || coalesce(array_agg(distinct r.queue), '{}')
      into _queues
      from released r where r.pending_dependencies = 0 and r.queue <> _job.queue;
    return _queues;
  end if;

  _final := _refused or _job.attempts >= _q.max_attempts
    or (_status_code is not null and _status_code = any (_q.non_retryable_statuses));
  if _final then
    update supaqueue.job
      set status = 'failed', finished_at = now(), updated_at = now(),
          last_status_code = _status_code, last_error = left(_error, 2000)
      where id = _job.id;
    perform supaqueue._cancel_dependents(
      _job.id, format('cancelled: job %s it depends on failed', _job.id));
  else
    _delay_ms := supaqueue.backoff_ms(_q, _job.attempts);
    if _retry_after_seconds is not null then
      _delay_ms := greatest(_delay_ms, _retry_after_seconds * 1000);
    end if;
    update supaqueue.job
      set status = 'pending', run_at = now() + make_interval(secs => _delay_ms / 1000.0),
          updated_at = now(), last_status_code = _status_code, last_error = left(_error, 2000)
      where id = _job.id;
  end if;
  -- 0027: the target asked to be left alone (429/503 with Retry-After): hold the job's key or
  -- queue, whatever becomes of this job (its attempts may be used up; the answer stands)
  if _status_code in (429, 503) and _retry_after_seconds > 0
     and _q.hold_on_retry_after <> 'job' then
    perform supaqueue._hold_on_retry_after(_q.id, _q.hold_on_retry_after, _job.id, _job.key,
                                           _status_code, _retry_after_seconds);
  end if;
  return _queues;
end
$$;

ALTER FUNCTION supaqueue._end_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _keep_worker boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue._failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = 'failed'
     and j.finished_at >= coalesce(_since, '-infinity')
     and (_error_contains is null
          or ((j.last_error is not null or j.last_response_excerpt is not null)
              and (coalesce(j.last_error, '') || ' ' || coalesce(j.last_response_excerpt, ''))
                  ilike supaqueue._contains_pattern(_error_contains)))
   order by j.finished_at
$$;

ALTER FUNCTION supaqueue._failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text) OWNER TO postgres;

CREATE FUNCTION supaqueue._finish_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  -- a claimed lease that expired: the dispatcher was lost, its call may still be running
  _running boolean := _outcome = 'lease_expired' and _cj.claimed_at is not null;
  _queues uuid[];
begin
  _queues := supaqueue._end_attempt(_cj, _outcome, _status_code, _response_excerpt, _error,
                                    _retry_after_seconds, _result, _duration_ms, _running);
  if _running then
    perform supaqueue._hold_worker(_cj);
  end if;
  return _queues;
end
$$;

ALTER FUNCTION supaqueue._finish_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) OWNER TO postgres;

CREATE FUNCTION supaqueue._free_worker(_worker uuid) RETURNS void
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

ALTER FUNCTION supaqueue._free_worker(_worker uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._hold_missing_dispatcher() RETURNS integer
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

ALTER FUNCTION supaqueue._hold_missing_dispatcher() OWNER TO postgres;

CREATE FUNCTION supaqueue._hold_on_retry_after(_queue uuid, _mode text, _job uuid, _key text, _status_code integer, _retry_after_seconds numeric) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _now timestamptz := clock_timestamp();
  _seconds numeric := least(_retry_after_seconds, supaqueue.max_hold_seconds());
  _until timestamptz := _now + make_interval(secs => _seconds::double precision);
  _reason text := format('HTTP %s with Retry-After: %s s (job %s)%s', _status_code,
                         trim_scale(_retry_after_seconds), _job,
                         case when _seconds < _retry_after_seconds
                           then format('; held %s s, the longest hold', _seconds) else '' end);
begin
  -- Many calls in flight meet the same wall at once: only an answer that lengthens the hold
  -- writes (and locks) the row.
  if _mode = 'key' and _key is not null then
    if exists (select 1 from supaqueue.queue_key k
                where k.queue = _queue and k.key = _key and k.held_until >= _until) then
      return;
    end if;
    -- The key's turn (due_at) comes no sooner than the hold's end; an idle key (null: no ready
    -- job) stays idle. A key without a row yet is due at the hold's end.
    insert into supaqueue.queue_key as k (queue, key, due_at, held_until, hold_reason)
      values (_queue, _key, _until, _until, _reason)
      on conflict (queue, key) do update
        set held_until = excluded.held_until, hold_reason = excluded.hold_reason,
            due_at = case when k.due_at is not null then greatest(k.due_at, excluded.held_until) end
        where k.held_until is null or k.held_until < excluded.held_until;
    return;
  end if;
  if exists (select 1 from supaqueue.queue_hold h
              where h.queue = _queue and h.held_until >= _until) then
    return;
  end if;
  insert into supaqueue.queue_hold as h (queue, since, held_until, reason)
    values (_queue, _now, _until, _reason)
    on conflict (queue) do update
      set held_until = excluded.held_until, reason = excluded.reason,
          -- a hold that had ended begins again; one going on keeps its start
          since = case when h.held_until > _now then h.since else excluded.since end
      where h.held_until < excluded.held_until;
end
$$;

ALTER FUNCTION supaqueue._hold_on_retry_after(_queue uuid, _mode text, _job uuid, _key text, _status_code integer, _retry_after_seconds numeric) OWNER TO postgres;

CREATE FUNCTION supaqueue._hold_worker(_cj supaqueue.current_job) RETURNS void
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

ALTER FUNCTION supaqueue._hold_worker(_cj supaqueue.current_job) OWNER TO postgres;

CREATE FUNCTION supaqueue._install_table_trigger_objects(_id uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._install_table_trigger_objects(_id, false);
end
$$;

ALTER FUNCTION supaqueue._install_table_trigger_objects(_id uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._install_table_trigger_objects(_id uuid, _functions_only boolean) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  _t supaqueue.table_trigger;
  _event text;
  _part text;
  _names record;
  _alias text;
  _body text;
  _trigger text;
  _when text;
  -- format() pattern of a Database Webhook payload: type, record, old_record
  _payload constant text :=
    'pg_catalog.jsonb_build_object(''type'', %L, ''table'', TG_TABLE_NAME, '
    '''schema'', TG_TABLE_SCHEMA, ''record'', %s, ''old_record'', %s)';
  -- 0021: each job names the trigger that made it (job.source, job.source_name)
  _source constant text := '''trigger'', %L, ';
begin
  select * into _t from supaqueue.table_trigger where id = _id;
  if _t.condition is not null then
    foreach _event in array _t.events loop
      -- the condition as the trigger will evaluate it: rows of this table as NEW and/or OLD
      begin
        execute pg_catalog.format('select 1 from %s where (%s)::boolean limit 0',
          case _event
            when 'INSERT' then pg_catalog.format('%I.%I as new', _t.table_schema, _t.table_name)
            when 'DELETE' then pg_catalog.format('%I.%I as old', _t.table_schema, _t.table_name)
            else pg_catalog.format('%I.%I as new, %I.%I as old', _t.table_schema,
                                   _t.table_name, _t.table_schema, _t.table_name) end,
          _t.condition);
      exception when others then
        raise exception 'when: % is not a valid condition for % on %.%: %',
          pg_catalog.quote_literal(_t.condition), _event, _t.table_schema, _t.table_name, sqlerrm
          using errcode = '22023';
      end;
    end loop;
  end if;
  foreach _part in array supaqueue._table_trigger_parts(_t.events) loop
    _names := supaqueue._table_trigger_names(_t.name, _part);
    if _part in ('insert', 'delete') then
      _alias := case _part when 'insert' then 'new' else 'old' end;
      _when := case when _t.condition is null then ''
                    else pg_catalog.format(' where (%s)', _t.condition) end;
      -- use_column: `new`/`old` are the transition table's rows, not PL/pgSQL's (null) NEW/OLD
      _body := '#variable_conflict use_column' || chr(10)
        || 'begin insert into supaqueue.job (queue, source, source_name, payload) select '
        || pg_catalog.quote_literal(_t.queue) || '::uuid, '
        || pg_catalog.format(_source, _t.name)
        || pg_catalog.format(_payload, pg_catalog.upper(_part),
             case _part when 'insert' then 'pg_catalog.to_jsonb(new.*)' else 'null' end,
             case _part when 'insert' then 'null' else 'pg_catalog.to_jsonb(old.*)' end)
        || pg_catalog.format(' from supaqueue_%s_rows as %s', _alias, _alias)
        || _when || '; return null;'
        -- PostgreSQL tracks no dependency of a function body on the columns its condition
        -- uses: a column dropped later fails the user's statement; say which trigger and why.
        || case when _t.condition is null then '' else pg_catalog.format(
             ' exception when undefined_column or undefined_function or undefined_table then'
             ' raise exception %L, sqlerrm using errcode = sqlstate, hint = %L;',
             pg_catalog.format('supaqueue trigger %s (%s on %s.%s): its condition fails: %%s',
                               _t.name, pg_catalog.upper(_part), _t.table_schema, _t.table_name),
             'Change or remove its `when` in the stack, then run `pulumi up`.') end
        || ' end';
      _trigger := pg_catalog.format(
        'create trigger %I after %s on %I.%I referencing %s table as supaqueue_%s_rows '
        'for each statement execute function supaqueue.%I()',
        _names.trigger_name, _part, _t.table_schema, _t.table_name, _alias, _alias,
        _names.function_name);
    elsif _part = 'update' then
      _body := pg_catalog.format(
        'begin insert into supaqueue.table_trigger_buffer (trigger, record, old_record) '
        'values (%L::uuid, pg_catalog.to_jsonb(NEW), pg_catalog.to_jsonb(OLD)); '
        'return null; end', _t.id);
      _trigger := pg_catalog.format(
        'create trigger %I after update on %I.%I for each row%s execute function supaqueue.%I()',
        _names.trigger_name, _t.table_schema, _t.table_name,
        case when _t.condition is null then ''
             else pg_catalog.format(' when (%s)', _t.condition) end,
        _names.function_name);
    else  -- update_flush: after the statement's row-level captures, all of them at once
      _body := 'begin with captured as (delete from supaqueue.table_trigger_buffer b where '
        || pg_catalog.format('b.trigger = %L::uuid', _t.id)
        || ' returning b.record, b.old_record) insert into supaqueue.job (queue, source, source_name, '
        || 'payload) select '
        || pg_catalog.quote_literal(_t.queue) || '::uuid, '
        || pg_catalog.format(_source, _t.name)
        || pg_catalog.format(_payload, 'UPDATE', 'c.record', 'c.old_record')
        || ' from captured c; return null; end';
      _trigger := pg_catalog.format(
        'create trigger %I after update on %I.%I for each statement '
        'execute function supaqueue.%I()',
        _names.trigger_name, _t.table_schema, _t.table_name, _names.function_name);
    end if;
    execute pg_catalog.format(
      'create or replace function supaqueue.%I() returns trigger language plpgsql '
      'security definer set search_path = '''' as %L', _names.function_name, _body);
    execute pg_catalog.format('revoke all on function supaqueue.%I() from public',
                              _names.function_name);
    -- 0021: `_functions_only` rewrites the functions of an existing trigger, table untouched
    if not _functions_only then
      execute _trigger;
    end if;
  end loop;
end
$$;

ALTER FUNCTION supaqueue._install_table_trigger_objects(_id uuid, _functions_only boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue._jobs_matching(_queue uuid, _states supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue._jobs_matching(_queue uuid, _states supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text) OWNER TO postgres;

CREATE FUNCTION supaqueue._key_bucket(_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
  select pg_catalog.hashtext(_key) & 63
$$;

ALTER FUNCTION supaqueue._key_bucket(_key text) OWNER TO postgres;

CREATE FUNCTION supaqueue._key_insert_lock(_queue uuid, _key text) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext(_queue::text),
                                              supaqueue._key_bucket(_key))
$$;

ALTER FUNCTION supaqueue._key_insert_lock(_queue uuid, _key text) OWNER TO postgres;

CREATE FUNCTION supaqueue._key_ready(_queue uuid, _key text, _run_at timestamp with time zone) RETURNS void
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

ALTER FUNCTION supaqueue._key_ready(_queue uuid, _key text, _run_at timestamp with time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue._key_wakes(_queue uuid) RETURNS integer
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

ALTER FUNCTION supaqueue._key_wakes(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._lease_deadline(_from timestamp with time zone, _timeout_ms integer, _grace_ms integer) RETURNS timestamp with time zone
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
  select _from + make_interval(secs => (_timeout_ms::bigint + _grace_ms) / 1000.0)
$$;

ALTER FUNCTION supaqueue._lease_deadline(_from timestamp with time zone, _timeout_ms integer, _grace_ms integer) OWNER TO postgres;

CREATE FUNCTION supaqueue._next_keyed_job(_q supaqueue.queue, _chain_worker uuid, INOUT _since_serve text[], OUT _job uuid) RETURNS record
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

ALTER FUNCTION supaqueue._next_keyed_job(_q supaqueue.queue, _chain_worker uuid, INOUT _since_serve text[], OUT _job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._prune_batch(_queue uuid, _limit integer, _after_at timestamp with time zone, _after_id uuid, OUT deleted integer, OUT last_at timestamp with time zone, OUT last_id uuid) RETURNS record
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

ALTER FUNCTION supaqueue._prune_batch(_queue uuid, _limit integer, _after_at timestamp with time zone, _after_id uuid, OUT deleted integer, OUT last_at timestamp with time zone, OUT last_id uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._purgeable_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.id from supaqueue.job j
   where j.queue = _queue and j.status = any (_statuses) and j.finished_at is not null
     and j.finished_at < coalesce(_older_than, 'infinity')
     and not exists (
       select 1 from supaqueue.job_dependency d
         join supaqueue.job dj on dj.id = d.job
        where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
$$;

ALTER FUNCTION supaqueue._purgeable_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue._queue_by_name(_queue text, _caller text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  _id uuid;
  _like text;
  _names text;
begin
  if _queue is null then
    raise exception '%: _queue must not be null (give the queue''s name)', _caller
      using errcode = '22004';
  end if;
  select q.id into _id from supaqueue.queue q where q.name = _queue for key share;
  if found then
    return _id;
  end if;
  if _queue ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select q.id into _id from supaqueue.queue q where q.id = _queue::uuid for key share;
    if found then
      return _id;
    end if;
    -- as the id form says it (23503), so callers that passed ids as text see no change
    raise exception '%: there is no queue with id %', _caller, _queue using errcode = '23503';
  end if;
  select min(q.name) into _like from supaqueue.queue q where lower(q.name) = lower(_queue);
  select string_agg(n, ', ' order by n) into _names
    from (select q.name as n from supaqueue.queue q order by q.name limit 20) s;
  raise exception '%: there is no queue named %', _caller, quote_literal(_queue)
    using errcode = 'SQ020',
          hint = case
            when _like is not null then format('Names are case-sensitive: did you mean %L?', _like)
            when _names is null then 'There are no queues: declare one in the stack and run pulumi up.'
            else format('The queues are: %s%s. A queue removed from the stack is gone with its name.',
                        _names,
                        case when (select count(*) from supaqueue.queue) > 20 then ', …' else '' end)
          end;
end
$_$;

ALTER FUNCTION supaqueue._queue_by_name(_queue text, _caller text) OWNER TO postgres;

CREATE FUNCTION supaqueue._record_action(_job uuid, _action text) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  insert into supaqueue.job_operator_action (job, action, after_attempt)
    select _job, _action, (select max(h.id) from supaqueue.job_attempt h where h.job = _job)
$$;

ALTER FUNCTION supaqueue._record_action(_job uuid, _action text) OWNER TO postgres;

CREATE FUNCTION supaqueue._release_held_for(_leases uuid[]) RETURNS uuid[]
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

ALTER FUNCTION supaqueue._release_held_for(_leases uuid[]) OWNER TO postgres;

CREATE FUNCTION supaqueue._release_held_workers() RETURNS integer
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

ALTER FUNCTION supaqueue._release_held_workers() OWNER TO postgres;

CREATE FUNCTION supaqueue._remove_table_trigger_objects(_id uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  _t supaqueue.table_trigger;
  _part text;
  _names record;
begin
  select * into _t from supaqueue.table_trigger where id = _id;
  if not found then
    return;
  end if;
  foreach _part in array supaqueue._table_trigger_parts(array['INSERT', 'UPDATE', 'DELETE']) loop
    _names := supaqueue._table_trigger_names(_t.name, _part);
    if exists (select 1 from pg_catalog.pg_trigger
                where tgname = _names.trigger_name and not tgisinternal
                  and tgrelid = pg_catalog.to_regclass(
                    pg_catalog.format('%I.%I', _t.table_schema, _t.table_name))) then
      execute pg_catalog.format('drop trigger %I on %I.%I', _names.trigger_name,
                                _t.table_schema, _t.table_name);
    end if;
    if pg_catalog.to_regprocedure(pg_catalog.format('supaqueue.%I()', _names.function_name))
       is not null then
      execute pg_catalog.format('drop function supaqueue.%I()', _names.function_name);
    end if;
  end loop;
  delete from supaqueue.table_trigger_buffer where trigger = _id;
end
$$;

ALTER FUNCTION supaqueue._remove_table_trigger_objects(_id uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._retry_after_delayed(_queue uuid, _keys text[], _queue_hold boolean) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _by_key boolean := (select q.hold_on_retry_after = 'key' from supaqueue.queue q
                       where q.id = _queue);
begin
  return query
    select j.id from supaqueue.job j
     where j.queue = _queue and j.status = 'pending' and j.pending_dependencies = 0
       and j.run_at > now() and j.last_status_code in (429, 503)
       and (j.key = any (_keys) or (_queue_hold and (j.key is null or not _by_key)))
       and exists (
         select 1
           from (select a.status_code, a.retry_after_seconds, a.ended_at
                   from supaqueue.job_attempt a where a.job = j.id
                  order by a.id desc limit 1) last
          where last.status_code in (429, 503) and last.retry_after_seconds > 0
            and j.run_at <= last.ended_at
                             + make_interval(secs => last.retry_after_seconds::double precision));
end
$$;

ALTER FUNCTION supaqueue._retry_after_delayed(_queue uuid, _keys text[], _queue_hold boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue._retry_job(_job uuid, _strict boolean) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _j supaqueue.job;
  _blocker uuid;
  _holder uuid;
begin
  select * into _j from supaqueue.job where id = _job for update;
  if not found then
    raise exception 'supaqueue.retry_job: there is no job with id %', _job using errcode = 'SQ005';
  end if;
  if _j.status not in ('failed', 'cancelled') then
    return false;
  end if;
  select d.depends_on into _blocker from supaqueue.job_dependency d
    join supaqueue.job dj on dj.id = d.depends_on
   where d.job = _job and dj.status in ('failed', 'cancelled') limit 1;
  if found then
    if not _strict then
      return false;
    end if;
    raise exception 'supaqueue.retry_job: job % depends on job %, which did not succeed', _job,
      _blocker using errcode = 'SQ006',
      hint = format('Retry job %s instead: its cancelled dependents come back with it.', _blocker);
  end if;
  if _j.dedup_key is not null then
    select id into _holder from supaqueue.job
     where queue = _j.queue and dedup_key = _j.dedup_key and status in ('pending', 'in_progress');
    if found then
      if not _strict then
        return false;
      end if;
      raise exception 'supaqueue.retry_job: job %''s dedup key is held by unfinished job %',
        _job, _holder using errcode = 'SQ007';
    end if;
  end if;
  update supaqueue.job
    set status = 'pending', finished_at = null, updated_at = now(), run_at = now(), attempts = 0,
        result = null, cancelled_by_operator = false,
        pending_dependencies = (
          select count(*) from supaqueue.job_dependency d
            join supaqueue.job dj on dj.id = d.depends_on
           where d.job = _job and dj.status <> 'success')
    where id = _job;
  perform supaqueue._revive_dependents(_job);
  return true;
end
$$;

ALTER FUNCTION supaqueue._retry_job(_job uuid, _strict boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue._revive_dependents(_job uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _frontier uuid[] := array[_job];
  _total integer := 0;
begin
  loop
    with revived as (
      update supaqueue.job j
        set status = 'pending', finished_at = null, updated_at = now(), run_at = now(),
            attempts = 0, result = null, last_error = null, last_status_code = null,
            pending_dependencies = (
              select count(*) from supaqueue.job_dependency d
                join supaqueue.job dj on dj.id = d.depends_on
               where d.job = j.id and dj.status <> 'success')
        where j.status = 'cancelled' and not j.cancelled_by_operator
          and exists (select 1 from supaqueue.job_dependency d
                       where d.job = j.id and d.depends_on = any (_frontier))
          and not exists (select 1 from supaqueue.job_dependency d
                            join supaqueue.job dj on dj.id = d.depends_on
                           where d.job = j.id and dj.status in ('failed', 'cancelled'))
        returning j.id
    )
    select coalesce(array_agg(id), '{}') into _frontier from revived;
    exit when cardinality(_frontier) = 0;
    _total := _total + cardinality(_frontier);
  end loop;
  return _total;
end
$$;

ALTER FUNCTION supaqueue._revive_dependents(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue._table_trigger_names(_name text, _part text, OUT trigger_name text, OUT function_name text) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  trigger_name := 'supaqueue_' || _name || '_' || _part;
  function_name := 'tg_hook_' || _name || '_' || _part;
  if pg_catalog.octet_length(function_name) > 63 or pg_catalog.octet_length(trigger_name) > 63 then
    raise exception 'name: % is too long for a trigger name', pg_catalog.quote_literal(_name)
      using errcode = '22023';
  end if;
end
$$;

ALTER FUNCTION supaqueue._table_trigger_names(_name text, _part text, OUT trigger_name text, OUT function_name text) OWNER TO postgres;

CREATE FUNCTION supaqueue._table_trigger_parts(_events text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select array(select p from pg_catalog.unnest(array['insert', 'update', 'update_flush', 'delete'])
                 with ordinality as k(p, n)
                where pg_catalog.upper(pg_catalog.split_part(p, '_', 1)) = any (_events)
                order by n)
$$;

ALTER FUNCTION supaqueue._table_trigger_parts(_events text[]) OWNER TO postgres;

CREATE FUNCTION supaqueue._utc_offset(_at timestamp with time zone, _tz text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select (_at at time zone _tz) - (_at at time zone 'UTC')
$$;

ALTER FUNCTION supaqueue._utc_offset(_at timestamp with time zone, _tz text) OWNER TO postgres;

CREATE FUNCTION supaqueue.active_key_count(_queue uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select count(*) from (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and (k.due_at is not null or k.held_until > now())
    union
    select w.key from supaqueue.worker w where w.queue = _queue and w.key is not null
  ) a
$$;

ALTER FUNCTION supaqueue.active_key_count(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.apply_privileges() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
    grant insert (queue, payload, priority, run_at, dedup_key, key) on supaqueue.job to service_role;
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

ALTER FUNCTION supaqueue.apply_privileges() OWNER TO postgres;

CREATE FUNCTION supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) RETURNS double precision
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select least(
    _q.backoff_max_ms::double precision,
    least(_q.backoff_base_ms * power(2::double precision, least(greatest(_attempts - 1, 0), 60)),
          _q.backoff_max_ms::double precision)
      * (1 + _q.backoff_jitter * (2 * random() - 1)))
$$;

ALTER FUNCTION supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.cancel_job(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _cj supaqueue.current_job;
  _j supaqueue.job;
begin
  -- Locks are taken in the order a report takes them (lease, then job), so a cancel and a report
  -- never deadlock. The rare case that needs the other order retries in a subtransaction, which
  -- lets go of the job's lock in between.
  for _try in 1..200 loop
    begin
      -- 1. Claim the lease as a report does; waits for a report in flight, which then wins.
      delete from supaqueue.current_job where job = _job returning * into _cj;
      if found then
        perform supaqueue.dispatch(supaqueue._cancel_attempt(_cj));  -- a worker is free
        return true;
      end if;
      select * into _j from supaqueue.job where id = _job for update;
      if not found then
        raise exception 'supaqueue.cancel_job: there is no job with id %', _job
          using errcode = 'SQ005';
      end if;
      if _j.status = 'pending' then
        update supaqueue.job
          set status = 'cancelled', finished_at = now(), updated_at = now(),
              cancelled_by_operator = true, last_error = 'cancelled by the operator'
          where id = _job;
        perform supaqueue._cancel_dependents(
          _job, format('cancelled: job %s it depends on was cancelled by the operator', _job));
        return true;
      end if;
      if _j.status <> 'in_progress' then
        return false;
      end if;
      -- 2. Dispatched after step 1 looked: its lease is there now, unless a report holds it.
      delete from supaqueue.current_job
        where id in (select c.id from supaqueue.current_job c where c.job = _job
                     for update skip locked)
        returning * into _cj;
      if found then
        perform supaqueue.dispatch(supaqueue._cancel_attempt(_cj));
        return true;
      end if;
      -- A report holds the lease and waits for the job row we hold: give it way and look again.
      raise exception 'retry' using errcode = 'SQ099';
    exception when sqlstate 'SQ099' then
      perform pg_catalog.pg_sleep(0.01);
    end;
  end loop;
  raise exception 'supaqueue.cancel_job: job % kept changing state; try again', _job
    using errcode = '40001';
end
$$;

ALTER FUNCTION supaqueue.cancel_job(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.cancel_jobs(_queue uuid, _statuses supaqueue.job_status[] DEFAULT ARRAY['pending'::supaqueue.job_status], _error_contains text DEFAULT NULL::text, _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.cancel_jobs(_queue uuid, _statuses supaqueue.job_status[], _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.chain_budget(OUT max_jobs integer, OUT max_seconds integer) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select coalesce(max(s.value::integer) filter (where s.key = 'chain_max_jobs'), 50),
         coalesce(max(s.value::integer) filter (where s.key = 'chain_max_seconds'), 60)
    into max_jobs, max_seconds
    from supaqueue.settings s
   where s.key in ('chain_max_jobs', 'chain_max_seconds');
end
$$;

ALTER FUNCTION supaqueue.chain_budget(OUT max_jobs integer, OUT max_seconds integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.claim_batch(_batch uuid) RETURNS jsonb
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

ALTER FUNCTION supaqueue.claim_batch(_batch uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.claim_current_job(cur_job_id uuid, _attempt integer DEFAULT NULL::integer) RETURNS jsonb
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

ALTER FUNCTION supaqueue.claim_current_job(cur_job_id uuid, _attempt integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_drift(_pg_cron_version text DEFAULT NULL::text) RETURNS text[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.cron_drift(_pg_cron_version text) OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_job_names() RETURNS text[]
    LANGUAGE sql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select array(select c.jobname from supaqueue.cron_jobs_for('0') c order by 1)
$$;

ALTER FUNCTION supaqueue.cron_job_names() OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_jobs_for(_pg_cron_version text) RETURNS TABLE(jobname text, schedule text, command text)
    LANGUAGE sql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select j.jobname, j.schedule, j.command
  from (select pg_catalog.string_to_array(pg_catalog.split_part(_pg_cron_version, '-', 1), '.')
                 ::integer[] >= array[1, 5] as seconds) v,
  lateral (values
    ('supaqueue-tick',
     case when v.seconds then '1 seconds' else '* * * * *' end,
     case when v.seconds then 'select supaqueue.tick()' else 'call supaqueue.tick_loop()' end),
    ('supaqueue-cron-history', '*/10 * * * *', 'select supaqueue.prune_cron_history()'),
    -- Issue 26 item 4: retention in small batches, out of the tick (supaqueue.prune_history)
    ('supaqueue-retention',
     case when v.seconds then '10 seconds' else '* * * * *' end,
     'call supaqueue.prune_history()')
  ) j (jobname, schedule, command)
$$;

ALTER FUNCTION supaqueue.cron_jobs_for(_pg_cron_version text) OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_next(_cron text, _after timestamp with time zone DEFAULT now(), _timezone text DEFAULT 'UTC'::text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._check_timezone(_timezone);
  return supaqueue._cron_next(supaqueue.cron_parse(_cron), _after, _timezone);
end
$$;

ALTER FUNCTION supaqueue.cron_next(_cron text, _after timestamp with time zone, _timezone text) OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_next_runs(_cron text, _timezone text DEFAULT 'UTC'::text, _count integer DEFAULT 3, _after timestamp with time zone DEFAULT now()) RETURNS timestamp with time zone[]
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  _spec supaqueue.cron_spec;
  _runs timestamptz[] := '{}';
  _t timestamptz := _after;
begin
  perform supaqueue._check_timezone(_timezone);
  _spec := supaqueue.cron_parse(_cron);
  for _i in 1..least(greatest(_count, 1), 100) loop
    _t := supaqueue._cron_next(_spec, _t, _timezone);
    if _t is null then
      if _i = 1 then
        raise exception 'cron: % never runs (no matching date within 5 years, e.g. February 30)',
          pg_catalog.quote_literal(_cron) using errcode = '22023';
      end if;
      exit;
    end if;
    _runs := _runs || _t;
  end loop;
  return _runs;
end
$$;

ALTER FUNCTION supaqueue.cron_next_runs(_cron text, _timezone text, _count integer, _after timestamp with time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue.cron_parse(_cron text) RETURNS supaqueue.cron_spec
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  _text text := pg_catalog.btrim(coalesce(_cron, ''));
  _fields text[];
  _seconds text[];
  _spec supaqueue.cron_spec;
begin
  _seconds := pg_catalog.regexp_match(_text, '^([0-9]{1,4})\s*seconds?$', 'i');
  if _seconds is not null then
    if _seconds[1]::integer not between 1 and 59 then
      raise exception 'cron: % must be between 1 and 59 seconds (pg_cron''s limit); '
        'use a five-field schedule for longer periods', pg_catalog.quote_literal(_text)
        using errcode = '22023';
    end if;
    _spec.seconds := _seconds[1]::integer;
    return _spec;
  end if;
  _text := case pg_catalog.lower(_text)
    when '@yearly' then '0 0 1 1 *'
    when '@annually' then '0 0 1 1 *'
    when '@monthly' then '0 0 1 * *'
    when '@weekly' then '0 0 * * 0'
    when '@daily' then '0 0 * * *'
    when '@midnight' then '0 0 * * *'
    when '@hourly' then '0 * * * *'
    else _text end;
  if _text like '@%' then
    raise exception 'cron: % is not supported (known: @yearly, @annually, @monthly, @weekly, '
      '@daily, @midnight, @hourly)', pg_catalog.quote_literal(_text) using errcode = '22023';
  end if;
  _fields := pg_catalog.regexp_split_to_array(_text, '\s+');
  if _text = '' or pg_catalog.cardinality(_fields) <> 5 then
    raise exception 'cron: % must have 5 fields (minute hour day-of-month month day-of-week) '
      'or be ''<n> seconds''', pg_catalog.quote_literal(_text) using errcode = '22023';
  end if;
  _spec.minutes := supaqueue._cron_field(_fields[1], 'minute', 0, 59);
  _spec.hours := supaqueue._cron_field(_fields[2], 'hour', 0, 23);
  _spec.days := supaqueue._cron_field(_fields[3], 'day-of-month', 1, 31);
  _spec.months := supaqueue._cron_field(_fields[4], 'month', 1, 12,
    array['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']);
  _spec.weekdays := array(
    select distinct w % 7 from pg_catalog.unnest(supaqueue._cron_field(_fields[5], 'day-of-week',
      0, 7, array['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'])) w order by 1);
  _spec.minute_star := _fields[1] like '*%';
  _spec.hour_star := _fields[2] like '*%';
  _spec.day_star := _fields[3] like '*%';
  _spec.weekday_star := _fields[5] like '*%';
  return _spec;
end
$_$;

ALTER FUNCTION supaqueue.cron_parse(_cron text) OWNER TO postgres;

CREATE FUNCTION supaqueue.dispatch(_queue uuid) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue._dispatch(_queue, null);
end
$$;

ALTER FUNCTION supaqueue.dispatch(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.drop_queue(_queue uuid, _discard_unfinished boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _name text;
  _unfinished bigint;
  _referrers text;
begin
  -- FOR UPDATE also blocks new jobs (their foreign-key check) until this transaction ends.
  select name into _name from supaqueue.queue where id = _queue for update;
  if not found then
    return false;
  end if;
  -- Named as another queue's dead-letter queue: refused before anything is discarded, in words
  -- (the foreign key would refuse the delete at the end, naming only its constraint).
  select string_agg(format('"%s"', q.name), ', ' order by q.name) into _referrers
    from supaqueue.queue q where q.dead_letter_queue = _queue and q.id <> _queue;
  if _referrers is not null then
    raise exception 'queue "%" is the dead-letter queue of queue(s) %: it cannot be dropped while they name it',
                    _name, _referrers
      using errcode = '23503', constraint = 'queue_dead_letter_queue_fkey',
            hint = 'Remove dead_letter_queue from those queues first (in Pulumi: delete it from '
                   'their declaration and run pulumi up), then drop this one.';
  end if;
  _unfinished := supaqueue.unfinished_job_count(_queue);
  if _unfinished > 0 and not coalesce(_discard_unfinished, false) then
    raise exception 'queue "%" (%) still has % unfinished job(s)', _name, _queue, _unfinished
      using errcode = 'SQ001',
            hint = 'Let them finish, or drop the queue with _discard_unfinished => true '
                   '(in Pulumi: discard_unfinished_on_delete: true) to discard them.';
  end if;
  -- The leases first, then the jobs: the order of a report (its lease, then its job), so that a
  -- report still ending one of them is waited for instead of deadlocking with this drop.
  -- (From the leases' side: they are few, the queue's finished jobs may be many.)
  perform 1 from supaqueue.current_job c join supaqueue.job j on j.id = c.job
   where j.queue = _queue
     for update of c;
  -- Wait for enqueues that hold one of these jobs FOR SHARE (a new dependent elsewhere), so that
  -- the pass below sees their edges; later ones find the jobs gone and fail.
  perform 1 from supaqueue.job where queue = _queue and status in ('pending', 'in_progress')
    for update;
  -- One pass over the dependency graph for all discarded jobs at once.
  with recursive dependents (job) as (
    select d.job from supaqueue.job_dependency d
      join supaqueue.job j on j.id = d.depends_on
     where j.queue = _queue and j.status in ('pending', 'in_progress')
    union
    select d.job from supaqueue.job_dependency d join dependents x on d.depends_on = x.job
  )
  update supaqueue.job j
    set status = 'cancelled', finished_at = now(), updated_at = now(),
        last_error = format('cancelled: a job it depends on was discarded with queue %s', _name)
    from dependents x
    where j.id = x.job and j.status = 'pending' and j.queue <> _queue;
  delete from supaqueue.current_job where job in (select id from supaqueue.job where queue = _queue);
  delete from supaqueue.job where queue = _queue;
  delete from supaqueue.queue where id = _queue;
  return true;
end
$$;

ALTER FUNCTION supaqueue.drop_queue(_queue uuid, _discard_unfinished boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.drop_table_trigger(_id uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._remove_table_trigger_objects(_id);
  delete from supaqueue.table_trigger where id = _id;
  return found;
end
$$;

ALTER FUNCTION supaqueue.drop_table_trigger(_id uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.end_current_job(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer DEFAULT NULL::integer, _response_excerpt text DEFAULT NULL::text, _error text DEFAULT NULL::text, _retry_after_seconds numeric DEFAULT NULL::numeric, _result jsonb DEFAULT NULL::jsonb, _duration_ms integer DEFAULT NULL::integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return (supaqueue.report_and_claim(cur_job_id, _is_complete, _is_successful, _status_code,
                                     _response_excerpt, _error, _retry_after_seconds, _result,
                                     _duration_ms) ->> 'current')::boolean;
end
$$;

ALTER FUNCTION supaqueue.end_current_job(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.enqueue(_queue text, _payload jsonb DEFAULT '{}'::jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_key text DEFAULT NULL::text, _depends_on uuid[] DEFAULT NULL::uuid[], _key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue.enqueue(supaqueue._queue_by_name(_queue, 'supaqueue.enqueue'), _payload,
                           _run_at, _priority, _dedup_key, _depends_on, _key);
end
$$;

ALTER FUNCTION supaqueue.enqueue(_queue text, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) OWNER TO postgres;

CREATE FUNCTION supaqueue.enqueue(_queue uuid, _payload jsonb DEFAULT '{}'::jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_key text DEFAULT NULL::text, _depends_on uuid[] DEFAULT NULL::uuid[], _key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _deps uuid[];
  _found integer := 0;
  _waiting integer := 0;
  _doomed boolean := false;
  _id uuid;
  _left integer;
begin
  if _queue is null then
    raise exception 'supaqueue.enqueue: _queue must not be null' using errcode = '22004';
  end if;
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.enqueue: there is no queue with id %', _queue using errcode = '23503';
  end if;

  _deps := array(select distinct d from unnest(coalesce(_depends_on, '{}'::uuid[])) d
                 where d is not null);
  if cardinality(_deps) > 0 then
    -- FOR SHARE: a dependency cannot finish between this count and the edges below.
    select count(*), count(*) filter (where s.status <> 'success'),
           coalesce(bool_or(s.status in ('failed', 'cancelled')), false)
      into _found, _waiting, _doomed
      from (select j.status from supaqueue.job j where j.id = any (_deps) for share) s;
    if _found < cardinality(_deps) then
      raise exception 'supaqueue.enqueue: % of the jobs in _depends_on do not exist',
        cardinality(_deps) - _found using errcode = '23503';
    end if;
  end if;

  loop
    -- One extra pending dependency holds the job back until its edges exist (see below).
    insert into supaqueue.job (queue, payload, run_at, priority, dedup_key, pending_dependencies,
                               status, finished_at, last_error, key)
      values (_queue, coalesce(_payload, '{}'::jsonb), coalesce(_run_at, now()),
              coalesce(_priority, 0), _dedup_key,
              case when cardinality(_deps) > 0 and not _doomed then _waiting + 1 else 0 end,
              case when _doomed then 'cancelled'::supaqueue.job_status else 'pending' end,
              case when _doomed then now() end,
              case when _doomed then 'a job it depends on failed or was cancelled' end,
              _key)
      on conflict (queue, dedup_key)
        where dedup_key is not null and status in ('pending', 'in_progress')
        do nothing
      returning id into _id;
    exit when _id is not null;
    select id into _id from supaqueue.job
      where queue = _queue and dedup_key = _dedup_key and status in ('pending', 'in_progress');
    if found then
      return _id;
    end if;
    -- the holder of the key finished in between: try again
  end loop;

  if cardinality(_deps) > 0 then
    insert into supaqueue.job_dependency (job, depends_on) select _id, d from unnest(_deps) d;
    if not _doomed then
      update supaqueue.job set pending_dependencies = pending_dependencies - 1
        where id = _id returning pending_dependencies into _left;
      if _left = 0 then
        perform supaqueue.dispatch(_queue);
      end if;
    end if;
  end if;
  return _id;
end
$$;

ALTER FUNCTION supaqueue.enqueue(_queue uuid, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) OWNER TO postgres;

CREATE FUNCTION supaqueue.enqueue_batch(_queue text, _payloads jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_keys text[] DEFAULT NULL::text[], _depends_on uuid[] DEFAULT NULL::uuid[], _keys text[] DEFAULT NULL::text[]) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _q uuid := supaqueue._queue_by_name(_queue, 'supaqueue.enqueue_batch');
  _n integer;
  _ids uuid[];
  _deps uuid[];
  _found integer := 0;
  _waiting integer := 0;
  _doomed boolean := false;
  _new uuid[];
  _out uuid[];
  _ord integer;
begin
  if _payloads is null or jsonb_typeof(_payloads) <> 'array' then
    raise exception 'supaqueue.enqueue_batch: _payloads must be a JSON array of payloads (one per '
                    'job), not %', coalesce(jsonb_typeof(_payloads), 'null')
      using errcode = '22023';
  end if;
  _n := jsonb_array_length(_payloads);
  if _dedup_keys is not null
     and (array_ndims(_dedup_keys) > 1 or coalesce(array_lower(_dedup_keys, 1), 1) <> 1
          or cardinality(_dedup_keys) <> _n) then
    raise exception 'supaqueue.enqueue_batch: _dedup_keys has % keys for % payloads',
      cardinality(_dedup_keys), _n
      using errcode = '22023', hint = 'Give one key per payload, null where a job has none.';
  end if;
  if _keys is not null
     and (array_ndims(_keys) > 1 or coalesce(array_lower(_keys, 1), 1) <> 1
          or cardinality(_keys) <> _n) then
    raise exception 'supaqueue.enqueue_batch: _keys has % keys for % payloads',
      cardinality(_keys), _n
      using errcode = '22023', hint = 'Give one key per payload, null where a job has none.';
  end if;
  if _n = 0 then
    return '{}'::uuid[];
  end if;

  -- as in enqueue(uuid, …)
  _deps := array(select distinct d from unnest(coalesce(_depends_on, '{}'::uuid[])) d
                 where d is not null);
  if cardinality(_deps) > 0 then
    select count(*), count(*) filter (where s.status <> 'success'),
           coalesce(bool_or(s.status in ('failed', 'cancelled')), false)
      into _found, _waiting, _doomed
      from (select j.status from supaqueue.job j where j.id = any (_deps) for share) s;
    if _found < cardinality(_deps) then
      raise exception 'supaqueue.enqueue_batch: % of the jobs in _depends_on do not exist',
        cardinality(_deps) - _found using errcode = '23503';
    end if;
  end if;

  -- The ids are chosen first so that each job's id is known by its position.
  _ids := array(select gen_random_uuid() from generate_series(1, _n));
  with ins as (
    insert into supaqueue.job (id, queue, payload, run_at, priority, dedup_key,
                               pending_dependencies, status, finished_at, last_error, key)
      select u.id, _q, e.value, coalesce(_run_at, now()), coalesce(_priority, 0),
             _dedup_keys[e.ord::integer],
             case when cardinality(_deps) > 0 and not _doomed then _waiting + 1 else 0 end,
             case when _doomed then 'cancelled'::supaqueue.job_status else 'pending' end,
             case when _doomed then now() end,
             case when _doomed then 'a job it depends on failed or was cancelled' end,
             _keys[e.ord::integer]
        from jsonb_array_elements(_payloads) with ordinality e(value, ord)
        join unnest(_ids) with ordinality u(id, ord) on u.ord = e.ord
       order by e.ord
      on conflict (queue, dedup_key)
        where dedup_key is not null and status in ('pending', 'in_progress')
        do nothing
      returning id)
  select coalesce(array_agg(id), '{}'::uuid[]) into _new from ins;

  if cardinality(_new) = _n then
    _out := _ids;
  else
    -- Some keys were held: each position gets the job inserted, else the unfinished job holding
    -- its key (one inserted by an earlier element of the batch is visible to this statement).
    select array_agg(coalesce(i.id, h.id) order by u.ord) into _out
      from unnest(_ids) with ordinality u(id, ord)
      left join unnest(_new) i(id) on i.id = u.id
      left join lateral (
        select x.id from supaqueue.job x
         where i.id is null and x.queue = _q and x.dedup_key = _dedup_keys[u.ord::integer]
           and x.status in ('pending', 'in_progress')
         limit 1) h on true;
  end if;

  if cardinality(_deps) > 0 and cardinality(_new) > 0 then
    insert into supaqueue.job_dependency (job, depends_on)
      select n, d from unnest(_new) n cross join unnest(_deps) d;
    if not _doomed then
      update supaqueue.job set pending_dependencies = pending_dependencies - 1
        where id = any (_new);
      if _waiting = 0 then
        perform supaqueue.dispatch(_q);
      end if;
    end if;
  end if;

  -- A key's holder that finished between the insert and the read above (rare): that position goes
  -- through enqueue(uuid, …), which retries until it inserts or finds the holder.
  for _ord in select o from generate_subscripts(_out, 1) o where _out[o] is null loop
    _out[_ord] := supaqueue.enqueue(_q, _payloads -> (_ord - 1), _run_at, _priority,
                                    _dedup_keys[_ord], _depends_on, _keys[_ord]);
  end loop;
  return _out;
end
$$;

ALTER FUNCTION supaqueue.enqueue_batch(_queue text, _payloads jsonb, _run_at timestamp with time zone, _priority integer, _dedup_keys text[], _depends_on uuid[], _keys text[]) OWNER TO postgres;

CREATE FUNCTION supaqueue.enqueue_due_schedules() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _s supaqueue.schedule;
  _spec supaqueue.cron_spec;
  _slot timestamptz;
  _now timestamptz := now();
  _enqueued integer := 0;
begin
  for _s in
    select * from supaqueue.schedule where next_run_at <= _now
      order by next_run_at limit 1000 for update skip locked
  loop
    -- one broken schedule must not stop the others or the tick
    begin
      _spec := supaqueue.cron_parse(_s.cron);
      _slot := supaqueue._cron_latest_slot(_spec, _s.timezone, _s.next_run_at, _now);
      insert into supaqueue.job (queue, payload, run_at, dedup_key, source, source_name)
        values (_s.queue, _s.payload, _slot,
                'schedule:' || _s.name || ':'
                || pg_catalog.to_char(_slot at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'schedule', _s.name)
        on conflict (queue, dedup_key)
          where dedup_key is not null and status in ('pending', 'in_progress')
          do nothing;
      update supaqueue.schedule
         set last_slot = _slot,
             next_run_at = coalesce(supaqueue._cron_next(_spec, _slot, _s.timezone), 'infinity')
       where id = _s.id;
      _enqueued := _enqueued + 1;
    exception when others then
      raise warning 'supaqueue: schedule % could not enqueue: %', _s.name, sqlerrm;
    end;
  end loop;
  return _enqueued;
end
$$;

ALTER FUNCTION supaqueue.enqueue_due_schedules() OWNER TO postgres;

CREATE FUNCTION supaqueue.external_dependents() RETURNS TABLE(object_type text, object_identity text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with recursive reached(classid, objid, objsubid) as (
    select 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, n.oid, 0
    from pg_catalog.pg_namespace n where n.nspname = 'supaqueue'
    union
    select x.classid, x.objid, x.objsubid
    from reached r
    cross join lateral (
      select d.classid, d.objid, d.objsubid
      from pg_catalog.pg_depend d
      where d.refclassid = r.classid and d.refobjid = r.objid
        and (r.objsubid = 0 or d.refobjsubid = r.objsubid)
        and d.deptype in ('n', 'a', 'i')
      union all
      select d.refclassid, d.refobjid, 0
      from pg_catalog.pg_depend d
      where d.classid = r.classid and d.objid = r.objid and d.objsubid = r.objsubid
        and d.deptype = 'i'
    ) x
  ),
  placed as (
    select r.*, coalesce(
      (select c.relnamespace from pg_catalog.pg_class c
        where r.classid = 'pg_catalog.pg_class'::pg_catalog.regclass and c.oid = r.objid),
      (select t.typnamespace from pg_catalog.pg_type t
        where r.classid = 'pg_catalog.pg_type'::pg_catalog.regclass and t.oid = r.objid),
      (select p.pronamespace from pg_catalog.pg_proc p
        where r.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass and p.oid = r.objid),
      (select c.connamespace from pg_catalog.pg_constraint c
        where r.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass and c.oid = r.objid),
      (select c.relnamespace from pg_catalog.pg_rewrite w
         join pg_catalog.pg_class c on c.oid = w.ev_class
        where r.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass and w.oid = r.objid),
      (select c.relnamespace from pg_catalog.pg_attrdef a
         join pg_catalog.pg_class c on c.oid = a.adrelid
        where r.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass and a.oid = r.objid),
      (select c.relnamespace from pg_catalog.pg_policy p
         join pg_catalog.pg_class c on c.oid = p.polrelid
        where r.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass and p.oid = r.objid),
      (select c.relnamespace from pg_catalog.pg_publication_rel p
         join pg_catalog.pg_class c on c.oid = p.prrelid
        where r.classid = 'pg_catalog.pg_publication_rel'::pg_catalog.regclass
          and p.oid = r.objid),
      -- a trigger belongs to its table, unless a user's function is what it runs; supaqueue's
      -- own table triggers (sql/*_hooks.sql: 'supaqueue_<name>_<part>' running its
      -- supaqueue.tg_hook_<name>_<part>) belong to supaqueue and go with it
      (select case when f.pronamespace = c.relnamespace then c.relnamespace
                   when g.tgname = 'supaqueue_' || pg_catalog.substr(f.proname, 9)
                    and f.proname like 'tg\_hook\_%'
                    and f.pronamespace = (select n.oid from pg_catalog.pg_namespace n
                                           where n.nspname = 'supaqueue')
                   then f.pronamespace end
         from pg_catalog.pg_trigger g
         join pg_catalog.pg_class c on c.oid = g.tgrelid
         join pg_catalog.pg_proc f on f.oid = g.tgfoid
        where r.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass and g.oid = r.objid),
      (select n.oid from pg_catalog.pg_namespace n
        where r.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass and n.oid = r.objid)
    ) as namespace
    from reached r
  )
  select o.type, o.identity
  from placed p
  cross join lateral pg_catalog.pg_identify_object(p.classid, p.objid, p.objsubid) o
  where coalesce(p.namespace, 0) not in (
      select n.oid from pg_catalog.pg_namespace n where n.nspname in ('supaqueue', 'pg_toast')
    )
    -- a part (a view's rule, an array type, a foreign key's triggers) is named by its whole
    and not exists (
      select 1 from pg_catalog.pg_depend d
      join reached w on w.classid = d.refclassid and w.objid = d.refobjid and w.objsubid = 0
      where d.classid = p.classid and d.objid = p.objid and d.objsubid = p.objsubid
        and d.deptype = 'i'
    )
    -- a column of an object that goes as a whole is named by the whole
    and not (p.objsubid <> 0 and exists (
      select 1 from reached w where w.classid = p.classid and w.objid = p.objid and w.objsubid = 0
    ))
  order by 1, 2
$$;

ALTER FUNCTION supaqueue.external_dependents() OWNER TO postgres;

CREATE FUNCTION supaqueue.get_job(_id uuid, OUT id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select j.id, q.name, j.status::text, j.attempts, q.max_attempts, j.result, j.last_status_code,
         j.last_error, j.run_at, j.created_at, j.updated_at, j.finished_at
    into id, queue, status, attempts, max_attempts, result, last_status_code, last_error, run_at,
         created_at, updated_at, finished_at
    from supaqueue.job j join supaqueue.queue q on q.id = j.queue
   where j.id = _id;
  if not found then
    raise exception 'supaqueue.get_job: there is no job with id %', coalesce(_id::text, 'null')
      using errcode = 'SQ005',
            hint = 'A finished job is removed after its queue''s retention_seconds.';
  end if;
end
$$;

ALTER FUNCTION supaqueue.get_job(_id uuid, OUT id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) OWNER TO postgres;

CREATE FUNCTION supaqueue.job_detail(_job uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select jsonb_build_object(
    'id', j.id, 'queue', j.queue, 'queue_name', q.name, 'status', j.status,
    'payload', j.payload, 'result', j.result, 'attempts', j.attempts,
    'max_attempts', q.max_attempts, 'priority', j.priority, 'run_at', j.run_at,
    'dedup_key', j.dedup_key, 'pending_dependencies', j.pending_dependencies,
    'last_status_code', j.last_status_code, 'last_error', j.last_error,
    'cancelled_by_operator', j.cancelled_by_operator,
    'created_at', j.created_at, 'updated_at', j.updated_at, 'finished_at', j.finished_at,
    'lease', (select jsonb_build_object('id', c.id, 'worker', c.worker, 'started_at', c.started_at,
                                        'claimed_at', c.claimed_at,
                                        'lease_expires_at', c.lease_expires_at)
                from supaqueue.current_job c where c.job = j.id),
    'attempt_history', coalesce((
      select jsonb_agg(jsonb_build_object(
               'attempt', h.attempt, 'outcome', h.outcome, 'status_code', h.status_code,
               'started_at', h.started_at, 'ended_at', h.ended_at, 'duration_ms', h.duration_ms,
               'error', h.error, 'response_excerpt', h.response_excerpt) order by h.id)
        from supaqueue.job_attempt h where h.job = j.id), '[]'::jsonb),
    'depends_on', coalesce((
      select jsonb_agg(jsonb_build_object('id', dj.id, 'status', dj.status, 'queue_name', dq.name)
                       order by dj.created_at)
        from supaqueue.job_dependency d
        join supaqueue.job dj on dj.id = d.depends_on
        join supaqueue.queue dq on dq.id = dj.queue
       where d.job = j.id), '[]'::jsonb),
    'dependents', coalesce((
      select jsonb_agg(jsonb_build_object('id', dj.id, 'status', dj.status, 'queue_name', dq.name)
                       order by dj.created_at)
        from supaqueue.job_dependency d
        join supaqueue.job dj on dj.id = d.job
        join supaqueue.queue dq on dq.id = dj.queue
       where d.depends_on = j.id), '[]'::jsonb))
  from supaqueue.job j join supaqueue.queue q on q.id = j.queue
  where j.id = _job
$$;

ALTER FUNCTION supaqueue.job_detail(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.job_ids_with_prefix(_prefix text, _limit integer DEFAULT 10) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

ALTER FUNCTION supaqueue.job_ids_with_prefix(_prefix text, _limit integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.job_runs(_job uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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

ALTER FUNCTION supaqueue.job_runs(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.lift_hold(_queue uuid, _key text DEFAULT NULL::text, _all_keys boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _name text;
  _lifted_queue boolean := false;
  _lifted_keys text[] := '{}';
  _made_due integer := 0;
  _dispatched integer;
begin
  if _key is not null and _all_keys then
    raise exception 'supaqueue.lift_hold: give one key or _all_keys, not both'
      using errcode = '22023';
  end if;
  select q.name into _name from supaqueue.queue q where q.id = _queue;
  if not found then
    raise exception 'supaqueue.lift_hold: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _key is null and not coalesce(_all_keys, false) then
    -- a row past its time holds nothing (the tick deletes it): it goes too, but is not counted
    with gone as (
      delete from supaqueue.queue_hold h where h.queue = _queue returning h.held_until
    )
    select coalesce(bool_or(g.held_until > clock_timestamp()), false) into _lifted_queue
      from gone g;
  else
    with lifted as (
      update supaqueue.queue_key k
         set held_until = null, hold_reason = null,
             due_at = case when k.due_at > clock_timestamp() then clock_timestamp() else k.due_at end
       where k.queue = _queue and (_all_keys or k.key = _key)
         and k.held_until > clock_timestamp()
      returning k.key
    )
    select coalesce(array_agg(l.key), '{}') into _lifted_keys from lifted l;
  end if;
  if _lifted_queue or cardinality(_lifted_keys) > 0 then
    -- run_at named: a keyed job's key becomes due with it (_450_job_key_ready); still pending
    -- and delayed, checked again as each row is locked (a dispatch or run-now may come first)
    with due as (
      update supaqueue.job j
         set run_at = now(), updated_at = now()
       where j.id in (select supaqueue._retry_after_delayed(_queue, _lifted_keys, _lifted_queue))
         and j.status = 'pending' and j.run_at > now()
      returning 1
    )
    select count(*) into _made_due from due;
  end if;
  _dispatched := case when _lifted_queue or cardinality(_lifted_keys) > 0
                      then supaqueue.dispatch(_queue) else 0 end;
  return jsonb_build_object(
    'queue', _queue, 'name', _name, 'key', _key, 'all_keys', coalesce(_all_keys, false),
    'lifted', cardinality(_lifted_keys) + _lifted_queue::integer,
    'lifted_queue', _lifted_queue, 'lifted_keys', cardinality(_lifted_keys),
    -- what still holds: the queue's hold (when keys were lifted), other keys
    'held_until', (select h.held_until from supaqueue.queue_hold h
                    where h.queue = _queue and h.held_until > clock_timestamp()),
    'held_keys', (select count(*) from supaqueue.queue_key k
                   where k.queue = _queue and k.held_until > clock_timestamp()),
    'made_due', _made_due,
    'dispatched', _dispatched);
end
$$;

ALTER FUNCTION supaqueue.lift_hold(_queue uuid, _key text, _all_keys boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.list_jobs(_queue uuid DEFAULT NULL::uuid, _statuses supaqueue.job_status[] DEFAULT NULL::supaqueue.job_status[], _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _error_contains text DEFAULT NULL::text, _before_created timestamp with time zone DEFAULT NULL::timestamp with time zone, _before_id uuid DEFAULT NULL::uuid, _limit integer DEFAULT 50) RETURNS TABLE(id uuid, queue uuid, queue_name text, status supaqueue.job_status, attempts integer, priority integer, run_at timestamp with time zone, created_at timestamp with time zone, finished_at timestamp with time zone, pending_dependencies integer, last_status_code integer, last_error text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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

ALTER FUNCTION supaqueue.list_jobs(_queue uuid, _statuses supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text, _before_created timestamp with time zone, _before_id uuid, _limit integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.max_dedup_key_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1024 $$;

ALTER FUNCTION supaqueue.max_dedup_key_bytes() OWNER TO postgres;

CREATE FUNCTION supaqueue.max_dependency_results_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 16777216 $$;

ALTER FUNCTION supaqueue.max_dependency_results_bytes() OWNER TO postgres;

CREATE FUNCTION supaqueue.max_hold_seconds() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 3600 $$;

ALTER FUNCTION supaqueue.max_hold_seconds() OWNER TO postgres;

CREATE FUNCTION supaqueue.max_payload_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1048576 $$;

ALTER FUNCTION supaqueue.max_payload_bytes() OWNER TO postgres;

CREATE FUNCTION supaqueue.max_result_bytes() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$ select 1048576 $$;

ALTER FUNCTION supaqueue.max_result_bytes() OWNER TO postgres;

CREATE FUNCTION supaqueue.metrics_between(_after timestamp with time zone, _until timestamp with time zone, _bounds_ms double precision[]) RETURNS TABLE(queue uuid, name text, succeeded bigint, failed bigint, cancelled bigint, attempts bigint, attempt_ms_sum double precision, attempt_buckets bigint[])
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select q.id, q.name, f.succeeded, f.failed, f.cancelled, a.attempts, a.ms_sum,
         array(select (select count(*) from supaqueue.job_attempt h
                        where h.queue = q.id and h.ended_at > _after and h.ended_at <= _until
                          and h.duration_ms <= u.b)
                 from pg_catalog.unnest(_bounds_ms) with ordinality as u(b, n) order by u.n)
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed,
             count(*) filter (where j.status = 'cancelled') as cancelled
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null
         and j.finished_at > _after and j.finished_at <= _until) f
    cross join lateral (
      select count(*) as attempts, coalesce(sum(h.duration_ms), 0)::double precision as ms_sum
        from supaqueue.job_attempt h
       where h.queue = q.id and h.ended_at > _after and h.ended_at <= _until
         and h.duration_ms is not null) a
   order by q.name
$$;

ALTER FUNCTION supaqueue.metrics_between(_after timestamp with time zone, _until timestamp with time zone, _bounds_ms double precision[]) OWNER TO postgres;

CREATE FUNCTION supaqueue.owner_only_routines() RETURNS text[]
    LANGUAGE sql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select array[
    'apply_privileges', 'owner_only_routines', 'uninstall',
    -- pg_cron runs these; the Pulumi program changes queues and the schedule
    'tick_loop', 'dispatch', 'set_worker_count', 'drop_queue',
    'cron_jobs_for', 'cron_drift', 'reconcile_cron', 'prune_cron_history', 'cron_job_names',
    'prune_history']
$$;

ALTER FUNCTION supaqueue.owner_only_routines() OWNER TO postgres;

CREATE FUNCTION supaqueue.pause_queue(_queue uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _q supaqueue.queue;
begin
  update supaqueue.queue set operator_paused_at = coalesce(operator_paused_at, now())
    where id = _queue returning * into _q;
  if not found then
    raise exception 'supaqueue.pause_queue: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  return jsonb_build_object('queue', _q.id, 'name', _q.name, 'paused_by_stack', _q.paused,
                            'paused_by_operator_since', _q.operator_paused_at);
end
$$;

ALTER FUNCTION supaqueue.pause_queue(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.prune_cron_history(_keep interval DEFAULT '01:00:00'::interval) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.prune_cron_history(_keep interval) OWNER TO postgres;

CREATE PROCEDURE supaqueue.prune_history(IN _seconds numeric DEFAULT 50, IN _batch_ms numeric DEFAULT 50, INOUT _pruned bigint DEFAULT NULL::bigint)
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

ALTER PROCEDURE supaqueue.prune_history(IN _seconds numeric, IN _batch_ms numeric, INOUT _pruned bigint) OWNER TO postgres;

CREATE FUNCTION supaqueue.purge_jobs(_queue uuid, _statuses supaqueue.job_status[] DEFAULT ARRAY['success'::supaqueue.job_status, 'failed'::supaqueue.job_status, 'cancelled'::supaqueue.job_status], _older_than timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _n bigint;
begin
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.purge_jobs: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  if _statuses is null or cardinality(_statuses) = 0
     or _statuses && array['pending', 'in_progress']::supaqueue.job_status[] then
    raise exception 'supaqueue.purge_jobs: only finished jobs (success, failed, cancelled) can be purged, got %',
      coalesce(_statuses::text, 'null') using errcode = '22023';
  end if;
  if _dry_run then
    select count(*) into _n from supaqueue._purgeable_jobs(_queue, _statuses, _older_than);
    return _n;
  end if;
  -- finished_at and status are checked again on the deleted row itself: a job retried while
  -- this waited for its lock is pending again and is kept
  delete from supaqueue.job j
    using supaqueue._purgeable_jobs(_queue, _statuses, _older_than) p (id)
    where j.id = p.id and j.finished_at is not null and j.status = any (_statuses);
  get diagnostics _n = row_count;
  return _n;
end
$$;

ALTER FUNCTION supaqueue.purge_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone, _dry_run boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.queue_figures(_window interval DEFAULT '01:00:00'::interval) RETURNS TABLE(queue uuid, name text, paused_by_stack boolean, paused_by_operator_since timestamp with time zone, workers integer, busy_workers integer, rate_limit_per_second double precision, pending bigint, ready bigint, in_progress bigint, oldest_pending_age_seconds double precision, succeeded bigint, failed bigint, attempts bigint, failed_attempts bigint, succeeded_per_minute double precision, failed_per_minute double precision, attempt_p50_ms double precision, attempt_p95_ms double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select q.id, q.name, q.paused, q.operator_paused_at,
         w.workers, w.busy, q.rate_limit_per_second,
         u.pending, u.ready, u.in_progress,
         extract(epoch from now() - u.oldest_pending)::double precision,
         f.succeeded, f.failed, a.attempts, a.failures,
         f.succeeded / greatest(extract(epoch from _window) / 60, 1e-9),
         f.failed / greatest(extract(epoch from _window) / 60, 1e-9),
         a.p50, a.p95
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where not wk.retiring)::integer as workers,
             count(*) filter (where wk.locked)::integer as busy
        from supaqueue.worker wk where wk.queue = q.id) w
    cross join lateral (
      select count(*) filter (where j.status = 'pending') as pending,
             count(*) filter (where j.status = 'in_progress') as in_progress,
             min(j.created_at) filter (where j.status = 'pending') as oldest_pending,
             -- job_ready_idx and job_key_ready_idx (0026) hold exactly the pending jobs without
             -- unfinished dependencies, without and with a key
             (select count(*) from supaqueue.job r
               where r.queue = q.id and r.status = 'pending' and r.pending_dependencies = 0
                 and r.key is null and r.run_at <= now())
             + (select count(*) from supaqueue.job r
                 where r.queue = q.id and r.status = 'pending' and r.pending_dependencies = 0
                   and r.key is not null and r.run_at <= now()) as ready
        from supaqueue.job j
       where j.queue = q.id and j.status in ('pending', 'in_progress')) u
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null and j.finished_at > now() - _window) f
    cross join lateral (
      select count(*) as attempts,
             count(*) filter (where h.outcome <> 'success') as failures,
             percentile_cont(0.5) within group (order by h.duration_ms) as p50,
             percentile_cont(0.95) within group (order by h.duration_ms) as p95
        from supaqueue.job_attempt h
       where h.queue = q.id and h.ended_at > now() - _window) a
   order by q.name
$$;

ALTER FUNCTION supaqueue.queue_figures(_window interval) OWNER TO postgres;

CREATE FUNCTION supaqueue.queue_keys(_queue uuid, _limit integer DEFAULT 20, _ready_cap integer DEFAULT 1000) RETURNS TABLE(key text, ready bigint, ready_capped boolean, running bigint, next_turn_at timestamp with time zone, held_until timestamp with time zone, hold_reason text, active_keys bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
#variable_conflict use_column
declare
  _active bigint;
begin
  if _limit is null or _limit < 1 or _limit > 100 then
    raise exception 'supaqueue.queue_keys: _limit % is out of range: give 1 to 100 keys', _limit
      using errcode = '22023';
  end if;
  if _ready_cap is null or _ready_cap < 1 or _ready_cap > 100000 then
    raise exception 'supaqueue.queue_keys: _ready_cap % is out of range: give 1 to 100000', _ready_cap
      using errcode = '22023';
  end if;
  if not exists (select 1 from supaqueue.queue q where q.id = _queue) then
    raise exception 'supaqueue.queue_keys: there is no queue with id %', _queue using errcode = 'SQ005';
  end if;
  _active := supaqueue.active_key_count(_queue);
  return query
  with busy as (
    select w.key from supaqueue.worker w
     where w.queue = _queue and w.key is not null
     group by w.key order by count(*) desc, w.key limit _limit
  ), held as (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and k.held_until > now()
     order by k.held_until desc limit _limit
  ), due as (
    select k.key from supaqueue.queue_key k
     where k.queue = _queue and k.due_at is not null
     order by k.due_at limit _limit
  ), candidate as (
    select b.key from busy b union select h.key from held h union select d.key from due d
  )
  select c.key, least(r.n, _ready_cap)::bigint, r.n > _ready_cap, b.n,
         qk.due_at, case when qk.held_until > now() then qk.held_until end,
         case when qk.held_until > now() then qk.hold_reason end, _active
    from candidate c
    left join supaqueue.queue_key qk on qk.queue = _queue and qk.key = c.key
    cross join lateral (
      select count(*) as n from (
        select 1 from supaqueue.job j
         where j.queue = _queue and j.key = c.key and j.key is not null
           and j.status = 'pending' and j.pending_dependencies = 0 and j.run_at <= now()
         limit _ready_cap + 1) x
    ) r
    cross join lateral (
      select count(*) as n from supaqueue.worker w where w.queue = _queue and w.key = c.key
    ) b
   order by b.n desc, r.n desc, c.key
   limit _limit;
end
$$;

ALTER FUNCTION supaqueue.queue_keys(_queue uuid, _limit integer, _ready_cap integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.queue_rates(_window interval DEFAULT '00:01:00'::interval) RETURNS TABLE(queue uuid, succeeded bigint, failed bigint, succeeded_per_minute double precision, failed_per_minute double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select q.id, f.succeeded, f.failed,
         f.succeeded / greatest(extract(epoch from _window) / 60, 1e-9),
         f.failed / greatest(extract(epoch from _window) / 60, 1e-9)
    from supaqueue.queue q
    cross join lateral (
      select count(*) filter (where j.status = 'success') as succeeded,
             count(*) filter (where j.status = 'failed') as failed
        from supaqueue.job j
       where j.queue = q.id and j.finished_at is not null and j.finished_at > now() - _window) f
   order by q.name
$$;

ALTER FUNCTION supaqueue.queue_rates(_window interval) OWNER TO postgres;

CREATE FUNCTION supaqueue.queue_series(_window interval DEFAULT '01:00:00'::interval, _bucket_seconds integer DEFAULT 60) RETURNS TABLE(queue uuid, bucket timestamp with time zone, succeeded bigint, failed bigint, cancelled bigint, failed_attempts bigint, depth bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
declare
  _step interval := make_interval(secs => greatest(coalesce(_bucket_seconds, 60), 1));
  _start timestamptz := now() - _window;
  _q uuid;
begin
  -- per queue, so that each part is one range of its indexes
  for _q in select q.id from supaqueue.queue q order by q.id loop
    return query
      with finished as (
        select j.created_at, j.finished_at, j.status from supaqueue.job j
         where j.queue = _q and j.finished_at is not null and j.finished_at > _start
      ), changes as (
        select pg_catalog.date_bin(_step, e.at, 'epoch'::timestamptz) as bucket,
               sum(e.delta) as delta
          from (
            select greatest(j.created_at, _start) as at, 1 as delta from supaqueue.job j
             where j.queue = _q and j.status in ('pending', 'in_progress')
            union all
            select v.at, v.delta from finished f
              cross join lateral (values (greatest(f.created_at, _start), 1),
                                         (f.finished_at, -1)) v (at, delta)
          ) e
         group by 1
      ), ended as (
        select pg_catalog.date_bin(_step, f.finished_at, 'epoch'::timestamptz) as bucket,
               count(*) filter (where f.status = 'success') as succeeded,
               count(*) filter (where f.status = 'failed') as failed,
               count(*) filter (where f.status = 'cancelled') as cancelled
          from finished f group by 1
      ), tries as (
        select pg_catalog.date_bin(_step, h.ended_at, 'epoch'::timestamptz) as bucket,
               count(*) as failed_attempts
          from supaqueue.job_attempt h
         where h.queue = _q and h.ended_at > _start and h.outcome <> 'success'
         group by 1
      )
      select _q, b.bucket, coalesce(e.succeeded, 0), coalesce(e.failed, 0),
             coalesce(e.cancelled, 0), coalesce(t.failed_attempts, 0),
             (sum(coalesce(c.delta, 0)) over (order by b.bucket))::bigint
        from generate_series(pg_catalog.date_bin(_step, _start, 'epoch'::timestamptz),
                             pg_catalog.date_bin(_step, now(), 'epoch'::timestamptz),
                             _step) b (bucket)
        left join changes c on c.bucket = b.bucket
        left join ended e on e.bucket = b.bucket
        left join tries t on t.bucket = b.bucket
       order by b.bucket;
  end loop;
end
$$;

ALTER FUNCTION supaqueue.queue_series(_window interval, _bucket_seconds integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.reconcile_cron() RETURNS text[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.reconcile_cron() OWNER TO postgres;

CREATE FUNCTION supaqueue.refuse_current_job(cur_job_id uuid, _reason text) RETURNS boolean
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

ALTER FUNCTION supaqueue.refuse_current_job(cur_job_id uuid, _reason text) OWNER TO postgres;

CREATE FUNCTION supaqueue.refuse_job_value(_constraint text, _message text, _hint text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  raise exception '%', _message
    using errcode = 'check_violation', constraint = _constraint, table = 'job',
          schema = 'supaqueue', hint = _hint;
end
$$;

ALTER FUNCTION supaqueue.refuse_job_value(_constraint text, _message text, _hint text) OWNER TO postgres;

CREATE FUNCTION supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer DEFAULT NULL::integer, _response_excerpt text DEFAULT NULL::text, _error text DEFAULT NULL::text, _retry_after_seconds numeric DEFAULT NULL::numeric, _result jsonb DEFAULT NULL::jsonb, _duration_ms integer DEFAULT NULL::integer, _chain_jobs integer DEFAULT NULL::integer, _chain_elapsed_ms bigint DEFAULT NULL::bigint) RETURNS jsonb
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

ALTER FUNCTION supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _chain_jobs integer, _chain_elapsed_ms bigint) OWNER TO postgres;

CREATE FUNCTION supaqueue.report_batch(_outcomes jsonb) RETURNS jsonb
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

ALTER FUNCTION supaqueue.report_batch(_outcomes jsonb) OWNER TO postgres;

CREATE FUNCTION supaqueue.resume_queue(_queue uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _q supaqueue.queue;
begin
  update supaqueue.queue set operator_paused_at = null where id = _queue returning * into _q;
  if not found then
    raise exception 'supaqueue.resume_queue: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  -- the queue's update trigger has dispatched it already, unless the stack declares it paused
  return jsonb_build_object('queue', _q.id, 'name', _q.name, 'paused_by_stack', _q.paused,
                            'paused_by_operator_since', null);
end
$$;

ALTER FUNCTION supaqueue.resume_queue(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.retry_after_delayed(_queue uuid, _key text DEFAULT NULL::text, _all_keys boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _whole boolean := _key is null and not coalesce(_all_keys, false);
begin
  if _key is not null and _all_keys then
    raise exception 'supaqueue.retry_after_delayed: give one key or _all_keys, not both'
      using errcode = '22023';
  end if;
  if not exists (select 1 from supaqueue.queue q where q.id = _queue) then
    raise exception 'supaqueue.retry_after_delayed: there is no queue with id %', _queue
      using errcode = 'SQ005';
  end if;
  return (select count(*) from supaqueue._retry_after_delayed(
    _queue,
    case when _whole then '{}'::text[]
         else array(select k.key from supaqueue.queue_key k
                     where k.queue = _queue and (_all_keys or k.key = _key)
                       and k.held_until > clock_timestamp()) end,
    _whole and exists (select 1 from supaqueue.queue_hold h
                        where h.queue = _queue and h.held_until > clock_timestamp())));
end
$$;

ALTER FUNCTION supaqueue.retry_after_delayed(_queue uuid, _key text, _all_keys boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.retry_failed_jobs(_queue uuid, _since timestamp with time zone DEFAULT NULL::timestamp with time zone, _error_contains text DEFAULT NULL::text, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.retry_failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text, _dry_run boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.retry_job(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  if not supaqueue._retry_job(_job, true) then
    return false;
  end if;
  perform supaqueue._record_action(_job, 'retry_job');
  perform supaqueue.dispatch(j.queue) from supaqueue.job j where j.id = _job;
  return true;
end
$$;

ALTER FUNCTION supaqueue.retry_job(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.retry_jobs(_queue uuid, _error_contains text DEFAULT NULL::text, _created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, _created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, _dry_run boolean DEFAULT false) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.retry_jobs(_queue uuid, _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) OWNER TO postgres;

CREATE FUNCTION supaqueue.run_job_now(_job uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.run_job_now(_job uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.run_schedule_now(_schedule uuid) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _s supaqueue.schedule;
  _job uuid;
begin
  select * into _s from supaqueue.schedule where id = _schedule;
  if not found then
    raise exception 'there is no schedule %', _schedule using errcode = 'SQ005';
  end if;
  insert into supaqueue.job (queue, payload, dedup_key, source, source_name)
    values (_s.queue, _s.payload,
            'schedule:' || _s.name || ':now:'
            || pg_catalog.to_char(pg_catalog.clock_timestamp() at time zone 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'schedule', _s.name)
    returning id into _job;
  return _job;
end
$$;

ALTER FUNCTION supaqueue.run_schedule_now(_schedule uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.schedule_overview() RETURNS TABLE(id uuid, name text, queue uuid, queue_name text, cron text, timezone text, next_run_at timestamp with time zone, last_slot timestamp with time zone, last_job uuid, last_job_status supaqueue.job_status, last_job_created_at timestamp with time zone, jobs_last_day bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select s.id, s.name, s.queue, q.name, s.cron, s.timezone, s.next_run_at, s.last_slot,
         l.id, l.status, l.created_at,
         (select count(*) from supaqueue.job c
           where c.source = 'schedule' and c.source_name = s.name
             and c.created_at > now() - interval '1 day')
    from supaqueue.schedule s
    join supaqueue.queue q on q.id = s.queue
    left join lateral (
      select j.id, j.status, j.created_at from supaqueue.job j
       where j.source = 'schedule' and j.source_name = s.name
       order by j.created_at desc, j.id desc limit 1) l on true
   order by s.name
$$;

ALTER FUNCTION supaqueue.schedule_overview() OWNER TO postgres;

CREATE FUNCTION supaqueue.set_table_trigger(_id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[], _condition text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  _events_sorted text[];
begin
  if pg_catalog.to_regclass(pg_catalog.format('%I.%I', _table_schema, _table_name)) is null then
    raise exception 'table: %.% does not exist', _table_schema, _table_name
      using errcode = '42P01';
  end if;
  _events_sorted := array(select e from pg_catalog.unnest(array['INSERT', 'UPDATE', 'DELETE'])
                           with ordinality as k(e, n)
                           where e = any (_events) order by n);
  perform supaqueue._check_table_trigger_condition(_table_schema, _table_name, _events_sorted,
                                                   _condition);
  if _id is null then
    insert into supaqueue.table_trigger (name, queue, table_schema, table_name, events, condition)
      values (_name, _queue, _table_schema, _table_name, _events_sorted, _condition)
      returning id into _id;
  else
    perform supaqueue._remove_table_trigger_objects(_id);
    update supaqueue.table_trigger
       set name = _name, queue = _queue, table_schema = _table_schema, table_name = _table_name,
           events = _events_sorted, condition = _condition, updated_at = now()
     where id = _id;
    if not found then
      raise exception 'table trigger % (%) does not exist', _name, _id using errcode = 'P0002';
    end if;
  end if;
  perform supaqueue._install_table_trigger_objects(_id);
  return _id;
end
$$;

ALTER FUNCTION supaqueue.set_table_trigger(_id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[], _condition text) OWNER TO postgres;

CREATE FUNCTION supaqueue.set_worker_count(_queue uuid, _count integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _active integer;
  _n integer;
begin
  if _count is null or _count < 0 then
    raise exception 'supaqueue.set_worker_count: worker count must be 0 or more, got %', _count
      using errcode = '22023';
  end if;
  -- serialises concurrent resizes of one queue
  perform 1 from supaqueue.queue where id = _queue for no key update;
  if not found then
    raise exception 'supaqueue.set_worker_count: there is no queue with id %', _queue
      using errcode = '23503';
  end if;
  select count(*) into _active from supaqueue.worker where queue = _queue and not retiring;

  if _count > _active then
    update supaqueue.worker set retiring = false
      where id in (select id from supaqueue.worker where queue = _queue and retiring
                   limit _count - _active);
    get diagnostics _n = row_count;
    insert into supaqueue.worker (queue)
      select _queue from generate_series(1, _count - _active - _n);
  elsif _count < _active then
    delete from supaqueue.worker
      where id in (select id from supaqueue.worker
                    where queue = _queue and not locked and not retiring
                    limit _active - _count for update skip locked);
    get diagnostics _n = row_count;
    if _active - _count - _n > 0 then
      update supaqueue.worker set retiring = true
        where id in (select id from supaqueue.worker where queue = _queue and not retiring
                     order by locked desc limit _active - _count - _n for update);
      -- a worker that was free after all (its dispatcher rolled back) can go now
      delete from supaqueue.worker where queue = _queue and retiring and not locked;
    end if;
  end if;
  return _count;
end
$$;

ALTER FUNCTION supaqueue.set_worker_count(_queue uuid, _count integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.source_jobs(_source text, _name text, _limit integer DEFAULT 50) RETURNS TABLE(id uuid, queue_name text, status supaqueue.job_status, attempts integer, run_at timestamp with time zone, created_at timestamp with time zone, finished_at timestamp with time zone, dedup_key text, last_error text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
begin
  if _source is null or _source not in ('trigger', 'schedule') then
    raise exception 'source must be trigger or schedule, not %', coalesce(_source, 'null')
      using errcode = '22023';
  end if;
  return query
    select j.id, q.name, j.status, j.attempts, j.run_at, j.created_at, j.finished_at,
           j.dedup_key, j.last_error
      from supaqueue.job j join supaqueue.queue q on q.id = j.queue
     where j.source = _source and j.source_name = _name
     order by j.created_at desc, j.id desc
     limit least(greatest(coalesce(_limit, 50), 1), 1000);
end
$$;

ALTER FUNCTION supaqueue.source_jobs(_source text, _name text, _limit integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__dispatch_after_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

ALTER FUNCTION supaqueue.tg__dispatch_after_insert() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__job_dead_letter() RETURNS trigger
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

ALTER FUNCTION supaqueue.tg__job_dead_letter() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__job_key_ready() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._key_ready(new.queue, new.key, new.run_at);
  return null;
end
$$;

ALTER FUNCTION supaqueue.tg__job_key_ready() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__job_last_response() RETURNS trigger
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

ALTER FUNCTION supaqueue.tg__job_last_response() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__job_payload_limit() RETURNS trigger
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

ALTER FUNCTION supaqueue.tg__job_payload_limit() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__queue_dead_letter_no_loop() RETURNS trigger
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

ALTER FUNCTION supaqueue.tg__queue_dead_letter_no_loop() OWNER TO postgres;

CREATE FUNCTION supaqueue.tg__queue_updated() RETURNS trigger
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

ALTER FUNCTION supaqueue.tg__queue_updated() OWNER TO postgres;

CREATE FUNCTION supaqueue.tick() RETURNS jsonb
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

ALTER FUNCTION supaqueue.tick() OWNER TO postgres;

CREATE PROCEDURE supaqueue.tick_loop(IN _seconds integer DEFAULT 59)
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

ALTER PROCEDURE supaqueue.tick_loop(IN _seconds integer) OWNER TO postgres;

CREATE FUNCTION supaqueue.trigger_overview() RETURNS TABLE(id uuid, name text, queue uuid, queue_name text, table_schema text, table_name text, events text[], condition text, last_job uuid, last_job_status supaqueue.job_status, last_job_created_at timestamp with time zone, jobs_last_day bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
  select t.id, t.name, t.queue, q.name, t.table_schema, t.table_name, t.events, t.condition,
         l.id, l.status, l.created_at,
         (select count(*) from supaqueue.job c
           where c.source = 'trigger' and c.source_name = t.name
             and c.created_at > now() - interval '1 day')
    from supaqueue.table_trigger t
    join supaqueue.queue q on q.id = t.queue
    left join lateral (
      select j.id, j.status, j.created_at from supaqueue.job j
       where j.source = 'trigger' and j.source_name = t.name
       order by j.created_at desc, j.id desc limit 1) l on true
   order by t.name
$$;

ALTER FUNCTION supaqueue.trigger_overview() OWNER TO postgres;

CREATE FUNCTION supaqueue.unfinished_job_count(_queue uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select count(*) from supaqueue.job
   where queue = _queue and status in ('pending', 'in_progress')
$$;

ALTER FUNCTION supaqueue.unfinished_job_count(_queue uuid) OWNER TO postgres;

CREATE FUNCTION supaqueue.uninstall() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION supaqueue.uninstall() OWNER TO postgres;

CREATE FUNCTION supaqueue_api.enqueue(queue text, payload jsonb DEFAULT '{}'::jsonb, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT 0, dedup_key text DEFAULT NULL::text, depends_on uuid[] DEFAULT NULL::uuid[], key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue.enqueue(supaqueue._api_queue(queue, 'supaqueue_api.enqueue'),
                           coalesce(payload, 'null'::jsonb), run_at, priority, dedup_key,
                           depends_on, key);
end
$$;

ALTER FUNCTION supaqueue_api.enqueue(queue text, payload jsonb, run_at timestamp with time zone, priority integer, dedup_key text, depends_on uuid[], key text) OWNER TO postgres;

CREATE FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT 0, dedup_keys text[] DEFAULT NULL::text[], depends_on uuid[] DEFAULT NULL::uuid[], keys text[] DEFAULT NULL::text[]) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._api_queue(queue, 'supaqueue_api.enqueue_batch');
  return supaqueue.enqueue_batch(queue, payloads, run_at, priority, dedup_keys, depends_on, keys);
end
$$;

ALTER FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone, priority integer, dedup_keys text[], depends_on uuid[], keys text[]) OWNER TO postgres;

CREATE FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) RETURNS record
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

ALTER FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) OWNER TO postgres;

CREATE TABLE supaqueue.dispatch_hold (
    id boolean DEFAULT true NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    reason text NOT NULL,
    returned bigint DEFAULT 0 NOT NULL,
    probe_lease uuid,
    probed_at timestamp with time zone,
    probe_request bigint,
    CONSTRAINT dispatch_hold_id_check CHECK (id)
);

ALTER TABLE supaqueue.dispatch_hold OWNER TO postgres;

CREATE TABLE supaqueue.installation_owner (
    singleton boolean DEFAULT true NOT NULL,
    stack text NOT NULL,
    stack_id text,
    claimed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT installation_owner_singleton_check CHECK (singleton),
    CONSTRAINT installation_owner_stack_check CHECK ((stack <> ''::text)),
    CONSTRAINT installation_owner_stack_id_check CHECK ((stack_id <> ''::text))
);

ALTER TABLE supaqueue.installation_owner OWNER TO postgres;

CREATE TABLE supaqueue.job (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    queue uuid NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    status supaqueue.job_status DEFAULT 'pending'::supaqueue.job_status NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    dedup_key text,
    pending_dependencies integer DEFAULT 0 NOT NULL,
    result jsonb,
    last_status_code integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    cancelled_by_operator boolean DEFAULT false NOT NULL,
    last_response_excerpt text,
    source text DEFAULT
CASE
    WHEN (COALESCE(current_setting('request.method'::text, true), ''::text) <> ''::text) THEN 'api'::text
    ELSE 'sql'::text
END NOT NULL,
    source_name text,
    key text,
    CONSTRAINT job_dedup_key_size CHECK (((dedup_key IS NULL) OR (octet_length(dedup_key) <= supaqueue.max_dedup_key_bytes()) OR supaqueue.refuse_job_value('job_dedup_key_size'::text, format('dedup_key: %s bytes, over the limit of %s bytes (supaqueue.max_dedup_key_bytes()); use a shorter key'::text, octet_length(dedup_key), supaqueue.max_dedup_key_bytes()), 'a long natural key can be hashed: md5(<key>) is 32 characters'::text))),
    CONSTRAINT job_finished_at_iff_final CHECK (((status = ANY (ARRAY['success'::supaqueue.job_status, 'failed'::supaqueue.job_status, 'cancelled'::supaqueue.job_status])) = (finished_at IS NOT NULL))),
    CONSTRAINT job_key_size CHECK (((key IS NULL) OR (octet_length(key) <= 1024) OR supaqueue.refuse_job_value('job_key_size'::text, format('key: %s bytes, over the limit of 1024 bytes; use a shorter key'::text, octet_length(key)), 'a long natural key can be hashed: md5(<key>) is 32 characters'::text))),
    CONSTRAINT job_pending_dependencies_non_negative CHECK ((pending_dependencies >= 0)),
    CONSTRAINT job_run_at_readable CHECK ((((run_at >= '0001-01-01 00:00:00+00'::timestamp with time zone) AND (run_at < '10000-01-01 00:00:00+00'::timestamp with time zone)) OR supaqueue.refuse_job_value('job_run_at_readable'::text, format('run_at: %s is outside the times a job can have; give a time between 0001-01-01 and 9999-12-31 UTC, or none to run it now'::text, run_at), 'supaqueue.enqueue(..., _run_at => now() + interval ''1 hour'') delays a job by an hour'::text)))
);

ALTER TABLE supaqueue.job OWNER TO postgres;

CREATE TABLE supaqueue.job_attempt (
    id bigint NOT NULL,
    job uuid NOT NULL,
    queue uuid NOT NULL,
    attempt integer NOT NULL,
    worker uuid,
    started_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone DEFAULT now() NOT NULL,
    outcome text NOT NULL,
    status_code integer,
    error text,
    duration_ms integer,
    response_excerpt text,
    retry_after_seconds numeric
);

ALTER TABLE supaqueue.job_attempt OWNER TO postgres;

ALTER TABLE supaqueue.job_attempt ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME supaqueue.job_attempt_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE supaqueue.job_dependency (
    job uuid NOT NULL,
    depends_on uuid NOT NULL,
    CONSTRAINT job_dependency_not_self CHECK ((job <> depends_on))
);

ALTER TABLE supaqueue.job_dependency OWNER TO postgres;

CREATE TABLE supaqueue.job_operator_action (
    id bigint NOT NULL,
    job uuid NOT NULL,
    action text NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    after_attempt bigint,
    by text DEFAULT ((SESSION_USER)::text || COALESCE((' via '::text || NULLIF(current_setting('application_name'::text, true), ''::text)), ''::text)) NOT NULL,
    CONSTRAINT job_operator_action_known CHECK ((action = ANY (ARRAY['retry_job'::text, 'retry_failed_jobs'::text, 'retry_jobs'::text, 'run_job_now'::text])))
);

ALTER TABLE supaqueue.job_operator_action OWNER TO postgres;

ALTER TABLE supaqueue.job_operator_action ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME supaqueue.job_operator_action_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE supaqueue.migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE supaqueue.migrations OWNER TO postgres;

CREATE TABLE supaqueue.queue_bucket (
    queue uuid NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamp with time zone NOT NULL
);

ALTER TABLE supaqueue.queue_bucket OWNER TO postgres;

CREATE TABLE supaqueue.queue_hold (
    queue uuid NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    held_until timestamp with time zone NOT NULL,
    reason text NOT NULL
);

ALTER TABLE supaqueue.queue_hold OWNER TO postgres;

CREATE TABLE supaqueue.queue_key (
    queue uuid NOT NULL,
    key text NOT NULL,
    due_at timestamp with time zone,
    served_at timestamp with time zone,
    tokens double precision,
    refilled_at timestamp with time zone,
    held_until timestamp with time zone,
    hold_reason text
);

ALTER TABLE supaqueue.queue_key OWNER TO postgres;

CREATE TABLE supaqueue.queue_key_wake (
    id bigint NOT NULL,
    queue uuid NOT NULL,
    key text NOT NULL,
    run_at timestamp with time zone NOT NULL
);

ALTER TABLE supaqueue.queue_key_wake OWNER TO postgres;

ALTER TABLE supaqueue.queue_key_wake ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME supaqueue.queue_key_wake_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE supaqueue.worker (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    queue uuid NOT NULL,
    locked boolean DEFAULT false NOT NULL,
    retiring boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    held_until timestamp with time zone,
    key text,
    held_for uuid
);

ALTER TABLE supaqueue.worker OWNER TO postgres;

CREATE VIEW supaqueue.queue_stats AS
 SELECT q.id AS queue,
    q.name,
    q.paused,
    COALESCE(c.pending, (0)::bigint) AS pending,
    COALESCE(c.in_progress, (0)::bigint) AS in_progress,
    COALESCE(c.success, (0)::bigint) AS success,
    COALESCE(c.failed, (0)::bigint) AS failed,
    COALESCE(c.cancelled, (0)::bigint) AS cancelled,
    (now() - ( SELECT min(j.created_at) AS min
           FROM supaqueue.job j
          WHERE ((j.queue = q.id) AND (j.status = 'pending'::supaqueue.job_status)))) AS oldest_pending_age,
    ( SELECT count(*) AS count
           FROM supaqueue.worker w
          WHERE ((w.queue = q.id) AND (NOT w.retiring))) AS workers,
    ( SELECT count(*) AS count
           FROM supaqueue.worker w
          WHERE ((w.queue = q.id) AND w.locked)) AS busy_workers,
    COALESCE(a.attempts, (0)::bigint) AS attempts_last_minute,
    COALESCE(a.failures, (0)::bigint) AS failures_last_minute,
    q.operator_paused_at AS paused_by_operator_since,
    qh.held_until,
    qh.hold_reason,
    ( SELECT count(*) AS count
           FROM supaqueue.queue_key k
          WHERE ((k.queue = q.id) AND (k.held_until > now()))) AS held_keys
   FROM (((supaqueue.queue q
     LEFT JOIN LATERAL ( SELECT count(*) FILTER (WHERE (j.status = 'pending'::supaqueue.job_status)) AS pending,
            count(*) FILTER (WHERE (j.status = 'in_progress'::supaqueue.job_status)) AS in_progress,
            count(*) FILTER (WHERE (j.status = 'success'::supaqueue.job_status)) AS success,
            count(*) FILTER (WHERE (j.status = 'failed'::supaqueue.job_status)) AS failed,
            count(*) FILTER (WHERE (j.status = 'cancelled'::supaqueue.job_status)) AS cancelled
           FROM supaqueue.job j
          WHERE (j.queue = q.id)) c ON (true))
     LEFT JOIN LATERAL ( SELECT count(*) AS attempts,
            count(*) FILTER (WHERE (h.outcome <> 'success'::text)) AS failures
           FROM supaqueue.job_attempt h
          WHERE ((h.queue = q.id) AND (h.ended_at > (now() - '00:01:00'::interval)))) a ON (true))
     LEFT JOIN LATERAL ( SELECT qhr.held_until,
            qhr.reason AS hold_reason
           FROM supaqueue.queue_hold qhr
          WHERE ((qhr.queue = q.id) AND (qhr.held_until > now()))) qh ON (true));

ALTER TABLE supaqueue.queue_stats OWNER TO postgres;

CREATE TABLE supaqueue.repeatable_migrations (
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE supaqueue.repeatable_migrations OWNER TO postgres;

CREATE TABLE supaqueue.schedule (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    queue uuid NOT NULL,
    cron text NOT NULL,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    next_run_at timestamp with time zone NOT NULL,
    last_slot timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schedule_name_is_slug CHECK ((name ~ '^[A-Za-z][A-Za-z0-9_-]*$'::text))
);

ALTER TABLE supaqueue.schedule OWNER TO postgres;

CREATE TABLE supaqueue.settings (
    key text NOT NULL,
    value text NOT NULL,
    CONSTRAINT settings_chain_max_jobs_valid CHECK (((key <> 'chain_max_jobs'::text) OR ((value ~ '^[0-9]{1,4}$'::text) AND ((value)::integer <= 1000)))),
    CONSTRAINT settings_chain_max_seconds_valid CHECK (((key <> 'chain_max_seconds'::text) OR ((value ~ '^[0-9]{1,3}$'::text) AND (((value)::integer >= 1) AND ((value)::integer <= 120)))))
);

ALTER TABLE supaqueue.settings OWNER TO postgres;

CREATE TABLE supaqueue.table_trigger (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    queue uuid NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    events text[] NOT NULL,
    condition text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT table_trigger_events_known CHECK ((((cardinality(events) >= 1) AND (cardinality(events) <= 3)) AND (events <@ ARRAY['INSERT'::text, 'UPDATE'::text, 'DELETE'::text]))),
    CONSTRAINT table_trigger_name_is_slug CHECK ((name ~ '^[A-Za-z][A-Za-z0-9_-]*$'::text))
);

ALTER TABLE supaqueue.table_trigger OWNER TO postgres;

CREATE UNLOGGED TABLE supaqueue.table_trigger_buffer (
    trigger uuid NOT NULL,
    record jsonb,
    old_record jsonb
);

ALTER TABLE supaqueue.table_trigger_buffer OWNER TO postgres;

ALTER TABLE ONLY supaqueue.current_job
    ADD CONSTRAINT current_job_job_key UNIQUE (job);

ALTER TABLE ONLY supaqueue.current_job
    ADD CONSTRAINT current_job_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.current_job
    ADD CONSTRAINT current_job_worker_key UNIQUE (worker);

ALTER TABLE ONLY supaqueue.dispatch_hold
    ADD CONSTRAINT dispatch_hold_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.installation_owner
    ADD CONSTRAINT installation_owner_pkey PRIMARY KEY (singleton);

ALTER TABLE supaqueue.job_attempt
    ADD CONSTRAINT job_attempt_outcome_known CHECK ((outcome = ANY (ARRAY['success'::text, 'failure'::text, 'lease_expired'::text, 'cancelled'::text]))) NOT VALID;

ALTER TABLE ONLY supaqueue.job_attempt
    ADD CONSTRAINT job_attempt_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.job_dependency
    ADD CONSTRAINT job_dependency_pkey PRIMARY KEY (job, depends_on);

ALTER TABLE ONLY supaqueue.job_operator_action
    ADD CONSTRAINT job_operator_action_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.job
    ADD CONSTRAINT job_pkey PRIMARY KEY (id);

ALTER TABLE supaqueue.job
    ADD CONSTRAINT job_source_known CHECK ((source = ANY (ARRAY['sql'::text, 'api'::text, 'trigger'::text, 'schedule'::text, 'dead_letter'::text]))) NOT VALID;

ALTER TABLE ONLY supaqueue.migrations
    ADD CONSTRAINT migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY supaqueue.queue_bucket
    ADD CONSTRAINT queue_bucket_pkey PRIMARY KEY (queue);

ALTER TABLE ONLY supaqueue.queue_hold
    ADD CONSTRAINT queue_hold_pkey PRIMARY KEY (queue);

ALTER TABLE ONLY supaqueue.queue_key
    ADD CONSTRAINT queue_key_pkey PRIMARY KEY (queue, key);

ALTER TABLE ONLY supaqueue.queue_key_wake
    ADD CONSTRAINT queue_key_wake_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.queue
    ADD CONSTRAINT queue_name_key UNIQUE (name);

ALTER TABLE ONLY supaqueue.queue
    ADD CONSTRAINT queue_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.repeatable_migrations
    ADD CONSTRAINT repeatable_migrations_pkey PRIMARY KEY (name);

ALTER TABLE ONLY supaqueue.schedule
    ADD CONSTRAINT schedule_name_key UNIQUE (name);

ALTER TABLE ONLY supaqueue.schedule
    ADD CONSTRAINT schedule_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY supaqueue.table_trigger
    ADD CONSTRAINT table_trigger_name_key UNIQUE (name);

ALTER TABLE ONLY supaqueue.table_trigger
    ADD CONSTRAINT table_trigger_pkey PRIMARY KEY (id);

ALTER TABLE ONLY supaqueue.worker
    ADD CONSTRAINT worker_pkey PRIMARY KEY (id);

CREATE INDEX current_job_batch_idx ON supaqueue.current_job USING btree (batch) WHERE (batch IS NOT NULL);

CREATE INDEX current_job_lease_idx ON supaqueue.current_job USING btree (lease_expires_at);

CREATE INDEX job_attempt_job_idx ON supaqueue.job_attempt USING btree (job);

CREATE INDEX job_attempt_queue_ended_idx ON supaqueue.job_attempt USING btree (queue, ended_at);

CREATE UNIQUE INDEX job_dedup_key_idx ON supaqueue.job USING btree (queue, dedup_key) WHERE ((dedup_key IS NOT NULL) AND (status = ANY (ARRAY['pending'::supaqueue.job_status, 'in_progress'::supaqueue.job_status])));

CREATE INDEX job_dependency_depends_on_idx ON supaqueue.job_dependency USING btree (depends_on);

CREATE INDEX job_error_search_idx ON supaqueue.job USING gin ((((COALESCE(last_error, ''::text) || ' '::text) || COALESCE(last_response_excerpt, ''::text))) extensions.gin_trgm_ops) WHERE ((last_error IS NOT NULL) OR (last_response_excerpt IS NOT NULL));

CREATE INDEX job_finished_idx ON supaqueue.job USING btree (queue, finished_at) WHERE (finished_at IS NOT NULL);

CREATE INDEX job_key_ready_idx ON supaqueue.job USING btree (queue, key, priority DESC, run_at, id) WHERE ((status = 'pending'::supaqueue.job_status) AND (pending_dependencies = 0) AND (key IS NOT NULL));

CREATE INDEX job_operator_action_job_idx ON supaqueue.job_operator_action USING btree (job);

CREATE INDEX job_queue_status_created_idx ON supaqueue.job USING btree (queue, status, created_at DESC, id DESC);

CREATE INDEX job_ready_idx ON supaqueue.job USING btree (queue, priority DESC, run_at, id) WHERE ((status = 'pending'::supaqueue.job_status) AND (pending_dependencies = 0) AND (key IS NULL));

CREATE INDEX job_source_idx ON supaqueue.job USING btree (source, source_name, created_at DESC, id DESC) WHERE (source = ANY (ARRAY['trigger'::text, 'schedule'::text]));

CREATE INDEX queue_key_due_idx ON supaqueue.queue_key USING btree (queue, due_at) WHERE (due_at IS NOT NULL);

CREATE INDEX queue_key_idle_idx ON supaqueue.queue_key USING btree (served_at) WHERE (due_at IS NULL);

CREATE INDEX queue_key_wake_queue_idx ON supaqueue.queue_key_wake USING btree (queue, id);

CREATE INDEX schedule_next_run_at_idx ON supaqueue.schedule USING btree (next_run_at);

CREATE INDEX worker_free_idx ON supaqueue.worker USING btree (queue) WHERE ((NOT locked) AND (NOT retiring));

CREATE UNIQUE INDEX worker_held_for_idx ON supaqueue.worker USING btree (held_for) WHERE (held_for IS NOT NULL);

CREATE INDEX worker_held_until_idx ON supaqueue.worker USING btree (held_until) WHERE (held_until IS NOT NULL);

CREATE INDEX worker_key_idx ON supaqueue.worker USING btree (queue, key) WHERE (key IS NOT NULL);

CREATE TRIGGER _100_queue_dead_letter_no_loop BEFORE INSERT OR UPDATE OF dead_letter_queue ON supaqueue.queue FOR EACH ROW WHEN ((new.dead_letter_queue IS NOT NULL)) EXECUTE FUNCTION supaqueue.tg__queue_dead_letter_no_loop();

CREATE TRIGGER _300_job_last_response BEFORE UPDATE OF status ON supaqueue.job FOR EACH ROW WHEN (((old.status = 'in_progress'::supaqueue.job_status) AND ((new.status = ANY (ARRAY['pending'::supaqueue.job_status, 'failed'::supaqueue.job_status])) OR ((new.status = 'success'::supaqueue.job_status) AND (old.last_response_excerpt IS NOT NULL))))) EXECUTE FUNCTION supaqueue.tg__job_last_response();

CREATE TRIGGER _400_job_payload_limit AFTER INSERT ON supaqueue.job REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__job_payload_limit();

CREATE TRIGGER _450_job_key_ready AFTER UPDATE OF pending_dependencies, run_at ON supaqueue.job FOR EACH ROW WHEN (((new.key IS NOT NULL) AND (new.status = 'pending'::supaqueue.job_status) AND (new.pending_dependencies = 0) AND ((old.status <> 'pending'::supaqueue.job_status) OR (old.pending_dependencies <> 0) OR (new.run_at < old.run_at)))) EXECUTE FUNCTION supaqueue.tg__job_key_ready();

CREATE TRIGGER _500_dispatch_after_insert AFTER INSERT ON supaqueue.job REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__dispatch_after_insert();

CREATE TRIGGER _500_dispatch_after_insert AFTER INSERT ON supaqueue.worker REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__dispatch_after_insert();

CREATE TRIGGER _500_dispatch_after_update AFTER UPDATE ON supaqueue.queue REFERENCING OLD TABLE AS old_queues NEW TABLE AS new_queues FOR EACH STATEMENT EXECUTE FUNCTION supaqueue.tg__queue_updated();

CREATE TRIGGER _600_job_dead_letter AFTER UPDATE OF status ON supaqueue.job FOR EACH ROW WHEN (((new.status = 'failed'::supaqueue.job_status) AND (old.status <> 'failed'::supaqueue.job_status))) EXECUTE FUNCTION supaqueue.tg__job_dead_letter();

ALTER TABLE ONLY supaqueue.current_job
    ADD CONSTRAINT current_job_job_fkey FOREIGN KEY (job) REFERENCES supaqueue.job(id);

ALTER TABLE ONLY supaqueue.current_job
    ADD CONSTRAINT current_job_worker_fkey FOREIGN KEY (worker) REFERENCES supaqueue.worker(id);

ALTER TABLE ONLY supaqueue.job_attempt
    ADD CONSTRAINT job_attempt_job_fkey FOREIGN KEY (job) REFERENCES supaqueue.job(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.job_dependency
    ADD CONSTRAINT job_dependency_depends_on_fkey FOREIGN KEY (depends_on) REFERENCES supaqueue.job(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.job_dependency
    ADD CONSTRAINT job_dependency_job_fkey FOREIGN KEY (job) REFERENCES supaqueue.job(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.job_operator_action
    ADD CONSTRAINT job_operator_action_job_fkey FOREIGN KEY (job) REFERENCES supaqueue.job(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.job
    ADD CONSTRAINT job_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id);

ALTER TABLE ONLY supaqueue.queue_bucket
    ADD CONSTRAINT queue_bucket_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.queue
    ADD CONSTRAINT queue_dead_letter_queue_fkey FOREIGN KEY (dead_letter_queue) REFERENCES supaqueue.queue(id);

ALTER TABLE ONLY supaqueue.queue_hold
    ADD CONSTRAINT queue_hold_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.queue_key
    ADD CONSTRAINT queue_key_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.queue_key_wake
    ADD CONSTRAINT queue_key_wake_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id) ON DELETE CASCADE;

ALTER TABLE ONLY supaqueue.schedule
    ADD CONSTRAINT schedule_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id);

ALTER TABLE ONLY supaqueue.table_trigger
    ADD CONSTRAINT table_trigger_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id);

ALTER TABLE ONLY supaqueue.worker
    ADD CONSTRAINT worker_queue_fkey FOREIGN KEY (queue) REFERENCES supaqueue.queue(id) ON DELETE CASCADE;

GRANT USAGE ON SCHEMA supaqueue TO service_role;

GRANT USAGE ON SCHEMA supaqueue_api TO anon;
GRANT USAGE ON SCHEMA supaqueue_api TO authenticated;
GRANT USAGE ON SCHEMA supaqueue_api TO service_role;

REVOKE ALL ON FUNCTION supaqueue._api_caller_role() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._api_check(_roles text[], _name text, _caller text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._api_queue(_name text, _caller text) FROM PUBLIC;

GRANT SELECT ON TABLE supaqueue.current_job TO service_role;

REVOKE ALL ON FUNCTION supaqueue._cancel_attempt(_cj supaqueue.current_job) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cancel_dependents(_job uuid, _reason text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.default_non_retryable_statuses() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.default_non_retryable_statuses() TO service_role;

GRANT SELECT ON TABLE supaqueue.queue TO service_role;

REVOKE ALL ON FUNCTION supaqueue._chain_own_key_job(_q supaqueue.queue, _chain_worker uuid, _since_serve text[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._check_table_trigger_condition(_table_schema text, _table_name text, _events text[], _condition text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._check_timezone(_tz text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._claim_document(_cj supaqueue.current_job) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._claimed_job(_cj supaqueue.current_job) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._claimed_jobs(_cjs supaqueue.current_job[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._contains_pattern(_text text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cron_day_matches(_spec supaqueue.cron_spec, _t timestamp without time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cron_field(_field text, _what text, _low integer, _high integer, _names text[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cron_latest_slot(_spec supaqueue.cron_spec, _tz text, _from timestamp with time zone, _now timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cron_next(_spec supaqueue.cron_spec, _after timestamp with time zone, _tz text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._cron_next_wall(_spec supaqueue.cron_spec, _after timestamp without time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._dispatch(_queue uuid, _chain_worker uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._end_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _keep_worker boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._finish_attempt(_cj supaqueue.current_job, _outcome text, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._free_worker(_worker uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._hold_missing_dispatcher() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._hold_on_retry_after(_queue uuid, _mode text, _job uuid, _key text, _status_code integer, _retry_after_seconds numeric) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._hold_worker(_cj supaqueue.current_job) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._install_table_trigger_objects(_id uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._install_table_trigger_objects(_id uuid, _functions_only boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._jobs_matching(_queue uuid, _states supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._key_bucket(_key text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._key_insert_lock(_queue uuid, _key text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._key_ready(_queue uuid, _key text, _run_at timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._key_wakes(_queue uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._lease_deadline(_from timestamp with time zone, _timeout_ms integer, _grace_ms integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._next_keyed_job(_q supaqueue.queue, _chain_worker uuid, INOUT _since_serve text[], OUT _job uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._prune_batch(_queue uuid, _limit integer, _after_at timestamp with time zone, _after_id uuid, OUT deleted integer, OUT last_at timestamp with time zone, OUT last_id uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._purgeable_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._queue_by_name(_queue text, _caller text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._record_action(_job uuid, _action text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._release_held_for(_leases uuid[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._release_held_workers() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._remove_table_trigger_objects(_id uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._retry_after_delayed(_queue uuid, _keys text[], _queue_hold boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._retry_job(_job uuid, _strict boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._revive_dependents(_job uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._table_trigger_names(_name text, _part text, OUT trigger_name text, OUT function_name text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._table_trigger_parts(_events text[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue._utc_offset(_at timestamp with time zone, _tz text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.active_key_count(_queue uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.active_key_count(_queue uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.apply_privileges() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.backoff_ms(_q supaqueue.queue, _attempts integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.cancel_job(_job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.cancel_job(_job uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.cancel_jobs(_queue uuid, _statuses supaqueue.job_status[], _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.cancel_jobs(_queue uuid, _statuses supaqueue.job_status[], _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.chain_budget(OUT max_jobs integer, OUT max_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.chain_budget(OUT max_jobs integer, OUT max_seconds integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.claim_batch(_batch uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.claim_batch(_batch uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.claim_current_job(cur_job_id uuid, _attempt integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.claim_current_job(cur_job_id uuid, _attempt integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.cron_drift(_pg_cron_version text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.cron_job_names() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.cron_jobs_for(_pg_cron_version text) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.cron_next(_cron text, _after timestamp with time zone, _timezone text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.cron_next(_cron text, _after timestamp with time zone, _timezone text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.cron_next_runs(_cron text, _timezone text, _count integer, _after timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.cron_next_runs(_cron text, _timezone text, _count integer, _after timestamp with time zone) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.cron_parse(_cron text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.cron_parse(_cron text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.dispatch(_queue uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.drop_queue(_queue uuid, _discard_unfinished boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.drop_table_trigger(_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.drop_table_trigger(_id uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.end_current_job(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.end_current_job(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.enqueue(_queue text, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.enqueue(_queue text, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.enqueue(_queue uuid, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.enqueue(_queue uuid, _payload jsonb, _run_at timestamp with time zone, _priority integer, _dedup_key text, _depends_on uuid[], _key text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.enqueue_batch(_queue text, _payloads jsonb, _run_at timestamp with time zone, _priority integer, _dedup_keys text[], _depends_on uuid[], _keys text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.enqueue_batch(_queue text, _payloads jsonb, _run_at timestamp with time zone, _priority integer, _dedup_keys text[], _depends_on uuid[], _keys text[]) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.enqueue_due_schedules() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.enqueue_due_schedules() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.external_dependents() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.external_dependents() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.get_job(_id uuid, OUT id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.get_job(_id uuid, OUT id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.job_detail(_job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.job_detail(_job uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.job_ids_with_prefix(_prefix text, _limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.job_ids_with_prefix(_prefix text, _limit integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.job_runs(_job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.job_runs(_job uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.lift_hold(_queue uuid, _key text, _all_keys boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.lift_hold(_queue uuid, _key text, _all_keys boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.list_jobs(_queue uuid, _statuses supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text, _before_created timestamp with time zone, _before_id uuid, _limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.list_jobs(_queue uuid, _statuses supaqueue.job_status[], _created_after timestamp with time zone, _created_before timestamp with time zone, _error_contains text, _before_created timestamp with time zone, _before_id uuid, _limit integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.max_dedup_key_bytes() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.max_dedup_key_bytes() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.max_dependency_results_bytes() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.max_dependency_results_bytes() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.max_hold_seconds() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.max_hold_seconds() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.max_payload_bytes() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.max_payload_bytes() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.max_result_bytes() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.max_result_bytes() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.metrics_between(_after timestamp with time zone, _until timestamp with time zone, _bounds_ms double precision[]) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.metrics_between(_after timestamp with time zone, _until timestamp with time zone, _bounds_ms double precision[]) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.owner_only_routines() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.pause_queue(_queue uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.pause_queue(_queue uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.prune_cron_history(_keep interval) FROM PUBLIC;

REVOKE ALL ON PROCEDURE supaqueue.prune_history(IN _seconds numeric, IN _batch_ms numeric, INOUT _pruned bigint) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.purge_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone, _dry_run boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.purge_jobs(_queue uuid, _statuses supaqueue.job_status[], _older_than timestamp with time zone, _dry_run boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.queue_figures(_window interval) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.queue_figures(_window interval) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.queue_keys(_queue uuid, _limit integer, _ready_cap integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.queue_keys(_queue uuid, _limit integer, _ready_cap integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.queue_rates(_window interval) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.queue_rates(_window interval) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.queue_series(_window interval, _bucket_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.queue_series(_window interval, _bucket_seconds integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.reconcile_cron() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.refuse_current_job(cur_job_id uuid, _reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.refuse_current_job(cur_job_id uuid, _reason text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.refuse_job_value(_constraint text, _message text, _hint text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.refuse_job_value(_constraint text, _message text, _hint text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _chain_jobs integer, _chain_elapsed_ms bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.report_and_claim(cur_job_id uuid, _is_complete boolean, _is_successful boolean, _status_code integer, _response_excerpt text, _error text, _retry_after_seconds numeric, _result jsonb, _duration_ms integer, _chain_jobs integer, _chain_elapsed_ms bigint) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.report_batch(_outcomes jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.report_batch(_outcomes jsonb) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.resume_queue(_queue uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.resume_queue(_queue uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.retry_after_delayed(_queue uuid, _key text, _all_keys boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.retry_after_delayed(_queue uuid, _key text, _all_keys boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.retry_failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text, _dry_run boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.retry_failed_jobs(_queue uuid, _since timestamp with time zone, _error_contains text, _dry_run boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.retry_job(_job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.retry_job(_job uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.retry_jobs(_queue uuid, _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.retry_jobs(_queue uuid, _error_contains text, _created_after timestamp with time zone, _created_before timestamp with time zone, _dry_run boolean) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.run_job_now(_job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.run_job_now(_job uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.run_schedule_now(_schedule uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.run_schedule_now(_schedule uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.schedule_overview() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.schedule_overview() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.set_table_trigger(_id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[], _condition text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.set_table_trigger(_id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[], _condition text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.set_worker_count(_queue uuid, _count integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.source_jobs(_source text, _name text, _limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.source_jobs(_source text, _name text, _limit integer) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.tg__dispatch_after_insert() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__job_dead_letter() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__job_key_ready() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__job_last_response() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__job_payload_limit() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__queue_dead_letter_no_loop() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tg__queue_updated() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.tick() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.tick() TO service_role;

REVOKE ALL ON PROCEDURE supaqueue.tick_loop(IN _seconds integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue.trigger_overview() FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.trigger_overview() TO service_role;

REVOKE ALL ON FUNCTION supaqueue.unfinished_job_count(_queue uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue.unfinished_job_count(_queue uuid) TO service_role;

REVOKE ALL ON FUNCTION supaqueue.uninstall() FROM PUBLIC;

REVOKE ALL ON FUNCTION supaqueue_api.enqueue(queue text, payload jsonb, run_at timestamp with time zone, priority integer, dedup_key text, depends_on uuid[], key text) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue_api.enqueue(queue text, payload jsonb, run_at timestamp with time zone, priority integer, dedup_key text, depends_on uuid[], key text) TO anon;
GRANT ALL ON FUNCTION supaqueue_api.enqueue(queue text, payload jsonb, run_at timestamp with time zone, priority integer, dedup_key text, depends_on uuid[], key text) TO authenticated;
GRANT ALL ON FUNCTION supaqueue_api.enqueue(queue text, payload jsonb, run_at timestamp with time zone, priority integer, dedup_key text, depends_on uuid[], key text) TO service_role;

REVOKE ALL ON FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone, priority integer, dedup_keys text[], depends_on uuid[], keys text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone, priority integer, dedup_keys text[], depends_on uuid[], keys text[]) TO anon;
GRANT ALL ON FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone, priority integer, dedup_keys text[], depends_on uuid[], keys text[]) TO authenticated;
GRANT ALL ON FUNCTION supaqueue_api.enqueue_batch(queue text, payloads jsonb, run_at timestamp with time zone, priority integer, dedup_keys text[], depends_on uuid[], keys text[]) TO service_role;

REVOKE ALL ON FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) TO anon;
GRANT ALL ON FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) TO authenticated;
GRANT ALL ON FUNCTION supaqueue_api.get_job(id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) TO service_role;

GRANT SELECT ON TABLE supaqueue.dispatch_hold TO service_role;

GRANT SELECT ON TABLE supaqueue.installation_owner TO service_role;

GRANT SELECT ON TABLE supaqueue.job TO service_role;

GRANT INSERT(queue) ON TABLE supaqueue.job TO service_role;

GRANT INSERT(payload) ON TABLE supaqueue.job TO service_role;

GRANT INSERT(priority) ON TABLE supaqueue.job TO service_role;

GRANT INSERT(run_at) ON TABLE supaqueue.job TO service_role;

GRANT INSERT(dedup_key) ON TABLE supaqueue.job TO service_role;

GRANT INSERT(key) ON TABLE supaqueue.job TO service_role;

GRANT SELECT ON TABLE supaqueue.job_attempt TO service_role;

GRANT SELECT ON TABLE supaqueue.job_dependency TO service_role;

GRANT SELECT ON TABLE supaqueue.job_operator_action TO service_role;

GRANT SELECT ON TABLE supaqueue.migrations TO service_role;

GRANT SELECT ON TABLE supaqueue.queue_bucket TO service_role;

GRANT SELECT ON TABLE supaqueue.queue_hold TO service_role;

GRANT SELECT ON TABLE supaqueue.queue_key TO service_role;

GRANT SELECT ON TABLE supaqueue.queue_key_wake TO service_role;

GRANT SELECT ON TABLE supaqueue.worker TO service_role;

GRANT SELECT ON TABLE supaqueue.queue_stats TO service_role;

GRANT SELECT ON TABLE supaqueue.repeatable_migrations TO service_role;

GRANT SELECT ON TABLE supaqueue.schedule TO service_role;

GRANT SELECT ON TABLE supaqueue.settings TO service_role;

GRANT SELECT ON TABLE supaqueue.table_trigger TO service_role;

GRANT SELECT ON TABLE supaqueue.table_trigger_buffer TO service_role;
