-- supaqueue 0011: the schedule evaluator: pg_cron's five-field syntax and '<n> seconds'.
-- Functions only, and nothing here depends on another migration: the schedule provider also
-- runs this file inside a transaction it rolls back, to validate a schedule and show its next run
-- times at `pulumi preview` before supaqueue is installed (or upgraded).
--
-- Syntax (as pg_cron's parser, vixie cron's): minute hour day-of-month month day-of-week; each
-- field a list of `*`, `n`, `a-b`, `*/s` or `a-b/s` (`n/s` is an error, as in pg_cron); month
-- and weekday names (jan..dec, sun..sat); weekday 7 = Sunday; @yearly @annually @monthly @weekly
-- @daily @midnight @hourly. When both day fields are restricted (neither starts with `*`), a day
-- matches if EITHER matches, else both must (cron's rule). '<n> seconds' (1-59): every n seconds,
-- slots aligned to multiples of n seconds since the Unix epoch.
--
-- Time zones: fields match the wall clock of the schedule's zone. Across DST changes, as vixie
-- cron: a time the clock skips runs once, shifted by the jump (02:30 -> 03:30), unless the minute
-- or hour field starts with `*` (those follow the real clock and just have no run in the gap); a
-- time the clock repeats runs once (its first occurrence), unless the minute or hour field starts
-- with `*` (then in both occurrences).

create type supaqueue.cron_spec as (
  seconds integer,        -- '<n> seconds' schedules; null for five-field ones
  minutes integer[],
  hours integer[],
  days integer[],
  months integer[],
  weekdays integer[],     -- 0 = Sunday
  minute_star boolean,
  hour_star boolean,
  day_star boolean,
  weekday_star boolean
);

-- One field: the sorted values it allows. _names[i] stands for _low + i - 1.
create function supaqueue._cron_field(
  _field text, _what text, _low integer, _high integer, _names text[] default null
) returns integer[]
language plpgsql immutable
set search_path = ''
as $$
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
$$;

-- Parses a schedule; raises SQLSTATE 22023 with a message starting 'cron:' when it is invalid.
create function supaqueue.cron_parse(_cron text) returns supaqueue.cron_spec
language plpgsql immutable
set search_path = ''
as $$
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
$$;

create function supaqueue._cron_day_matches(_spec supaqueue.cron_spec, _t timestamp)
returns boolean
language sql immutable
set search_path = ''
as $$
  select case when _spec.day_star or _spec.weekday_star
              then day_ok and weekday_ok
              else day_ok or weekday_ok end
    from (select pg_catalog.date_part('day', _t)::integer = any (_spec.days) as day_ok,
                 pg_catalog.date_part('dow', _t)::integer = any (_spec.weekdays) as weekday_ok) d
$$;

-- The first wall-clock minute after _after that the five fields match (calendar arithmetic,
-- no time zone); null when there is none within 5 years (e.g. '0 0 30 2 *').
create function supaqueue._cron_next_wall(_spec supaqueue.cron_spec, _after timestamp)
returns timestamp
language plpgsql immutable
set search_path = ''
as $$
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
create function supaqueue._utc_offset(_at timestamptz, _tz text) returns interval
language sql stable
set search_path = ''
as $$
  select (_at at time zone _tz) - (_at at time zone 'UTC')
$$;

-- The first slot strictly after _after (null: none within 5 years). See the header for DST.
create function supaqueue._cron_next(_spec supaqueue.cron_spec, _after timestamptz, _tz text)
returns timestamptz
language plpgsql stable
set search_path = ''
as $$
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

-- Validates a time zone name (IANA, as in pg_timezone_names); raises 22023 'timezone: ...'.
create function supaqueue._check_timezone(_tz text) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if _tz is null or not exists (select 1 from pg_catalog.pg_timezone_names where name = _tz) then
    raise exception 'timezone: unknown time zone %, use an IANA name such as UTC or Europe/Paris',
      coalesce(pg_catalog.quote_literal(_tz), 'null') using errcode = '22023';
  end if;
end
$$;

-- The first slot of a schedule after _after.
create function supaqueue.cron_next(
  _cron text, _after timestamptz default now(), _timezone text default 'UTC'
) returns timestamptz
language plpgsql stable
set search_path = ''
as $$
begin
  perform supaqueue._check_timezone(_timezone);
  return supaqueue._cron_next(supaqueue.cron_parse(_cron), _after, _timezone);
end
$$;

-- The next _count slots after _after; raises 22023 ('cron: ...' / 'timezone: ...') when the
-- schedule is invalid or never runs. What the provider shows at preview and checks on create.
create function supaqueue.cron_next_runs(
  _cron text, _timezone text default 'UTC', _count integer default 3,
  _after timestamptz default now()
) returns timestamptz[]
language plpgsql stable
set search_path = ''
as $$
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

-- The latest slot in [_from, _now] (_from: a slot). After downtime only this one is enqueued.
-- Looks back over growing windows so that a dense schedule needs few steps.
create function supaqueue._cron_latest_slot(
  _spec supaqueue.cron_spec, _tz text, _from timestamptz, _now timestamptz
) returns timestamptz
language plpgsql stable
set search_path = ''
as $$
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
