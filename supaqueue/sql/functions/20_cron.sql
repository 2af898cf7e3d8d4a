-- supaqueue functions/20_cron.sql: Schedules: the cron evaluator (pure), supaqueue's own pg_cron
-- jobs, due schedules.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- Validates a time zone name (IANA, as in pg_timezone_names); raises 22023 'timezone: ...'.
CREATE OR REPLACE FUNCTION supaqueue._check_timezone(_tz text) RETURNS void
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

CREATE OR REPLACE FUNCTION supaqueue._cron_day_matches(_spec supaqueue.cron_spec, _t timestamp without time zone) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select case when _spec.day_star or _spec.weekday_star
              then day_ok and weekday_ok
              else day_ok or weekday_ok end
    from (select pg_catalog.date_part('day', _t)::integer = any (_spec.days) as day_ok,
                 pg_catalog.date_part('dow', _t)::integer = any (_spec.weekdays) as weekday_ok) d
$$;

-- One field: the sorted values it allows. _names[i] stands for _low + i - 1.
CREATE OR REPLACE FUNCTION supaqueue._cron_field(_field text, _what text, _low integer, _high integer, _names text[] DEFAULT NULL::text[]) RETURNS integer[]
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

-- The latest slot in [_from, _now] (_from: a slot). After downtime only this one is enqueued.
-- Looks back over growing windows so that a dense schedule needs few steps.
CREATE OR REPLACE FUNCTION supaqueue._cron_latest_slot(_spec supaqueue.cron_spec, _tz text, _from timestamp with time zone, _now timestamp with time zone) RETURNS timestamp with time zone
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

-- The first slot strictly after _after (null: none within 5 years). See the header for DST.
CREATE OR REPLACE FUNCTION supaqueue._cron_next(_spec supaqueue.cron_spec, _after timestamp with time zone, _tz text) RETURNS timestamp with time zone
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

-- The first wall-clock minute after _after that the five fields match (calendar arithmetic,
-- no time zone); null when there is none within 5 years (e.g. '0 0 30 2 *').
CREATE OR REPLACE FUNCTION supaqueue._cron_next_wall(_spec supaqueue.cron_spec, _after timestamp without time zone) RETURNS timestamp without time zone
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

-- UTC offset of zone _tz at instant _at.
CREATE OR REPLACE FUNCTION supaqueue._utc_offset(_at timestamp with time zone, _tz text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select (_at at time zone _tz) - (_at at time zone 'UTC')
$$;

-- How supaqueue's cron jobs differ from what the installed pg_cron (or _pg_cron_version) needs,
-- one line each; empty when they match or pg_cron is not in this database.
CREATE OR REPLACE FUNCTION supaqueue.cron_drift(_pg_cron_version text DEFAULT NULL::text) RETURNS text[]
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

-- The names of supaqueue's own cron jobs, exactly (uninstall unschedules these and no other).
-- Derived from cron_jobs_for, the one authority for the names.
CREATE OR REPLACE FUNCTION supaqueue.cron_job_names() RETURNS text[]
    LANGUAGE sql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select array(select c.jobname from supaqueue.cron_jobs_for('0') c order by 1)
$$;

-- 2 ---------------------------------------------------------------------------------------------
-- supaqueue's pg_cron jobs for a pg_cron version: pg_cron >= 1.5 (Supabase ships 1.6) runs the
-- tick every second itself; older ones only once a minute, so that job runs the looping call.
-- The run history job keeps pg_cron's job_run_details bounded (pg_cron never prunes it); the
-- retention job deletes finished jobs past their queue's retention_seconds.
CREATE OR REPLACE FUNCTION supaqueue.cron_jobs_for(_pg_cron_version text) RETURNS TABLE(jobname text, schedule text, command text)
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

-- The first slot of a schedule after _after.
CREATE OR REPLACE FUNCTION supaqueue.cron_next(_cron text, _after timestamp with time zone DEFAULT now(), _timezone text DEFAULT 'UTC'::text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._check_timezone(_timezone);
  return supaqueue._cron_next(supaqueue.cron_parse(_cron), _after, _timezone);
end
$$;

-- The next _count slots after _after; raises 22023 ('cron: ...' / 'timezone: ...') when the
-- schedule is invalid or never runs. What the provider shows at preview and checks on create.
CREATE OR REPLACE FUNCTION supaqueue.cron_next_runs(_cron text, _timezone text DEFAULT 'UTC'::text, _count integer DEFAULT 3, _after timestamp with time zone DEFAULT now()) RETURNS timestamp with time zone[]
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

-- Parses a schedule; raises SQLSTATE 22023 with a message starting 'cron:' when it is invalid.
CREATE OR REPLACE FUNCTION supaqueue.cron_parse(_cron text) RETURNS supaqueue.cron_spec
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

-- Each due schedule (FOR UPDATE SKIP LOCKED) gets one job for its latest slot <= now(),
-- deduplicated by `schedule:<name>:<slot>` and naming its schedule as its source; then next_run_at
-- moves on.
CREATE OR REPLACE FUNCTION supaqueue.enqueue_due_schedules() RETURNS integer
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

-- Deletes the run history of supaqueue's own cron jobs older than _keep (never another job's).
-- Needs only what the platform grants `postgres`: SELECT on cron.job, DELETE on job_run_details.
-- A run still 'running' a day past _keep was cut off by a crash.
CREATE OR REPLACE FUNCTION supaqueue.prune_cron_history(_keep interval DEFAULT '01:00:00'::interval) RETURNS bigint
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

-- Makes supaqueue's cron jobs what the installed pg_cron needs (cron.schedule replaces a job of
-- the same name). Returns the drift it repaired. Run by this migration and by every `pulumi up`.
CREATE OR REPLACE FUNCTION supaqueue.reconcile_cron() RETURNS text[]
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

-- Run a schedule now, once, besides its slots (which stay as they are). The job's dedup key
-- says it was an operator's run: `schedule:<name>:now:<UTC time>`. SQ005: no such schedule.
CREATE OR REPLACE FUNCTION supaqueue.run_schedule_now(_schedule uuid) RETURNS uuid
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

-- Every schedule: its next slot, the last slot it enqueued, its newest job and how many jobs it
-- made in the last day (job_source_idx: one short range per schedule).
CREATE OR REPLACE FUNCTION supaqueue.schedule_overview() RETURNS TABLE(id uuid, name text, queue uuid, queue_name text, cron text, timezone text, next_run_at timestamp with time zone, last_slot timestamp with time zone, last_job uuid, last_job_status supaqueue.job_status, last_job_created_at timestamp with time zone, jobs_last_day bigint)
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
