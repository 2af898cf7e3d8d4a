-- supaqueue 0021: where each job came from (a trigger, a schedule, the Data API or SQL), the
-- operator's view of schedules and triggers (next/last run, the jobs each made, run a schedule
-- now), true per-minute rates, and the figures `supaqueue metrics` exports.

-- Where a job came from. `sql` for a plain INSERT or `enqueue()` over a database connection;
-- `api` when the statement runs inside a Data API (PostgREST) request, which sets
-- `request.method` for its transaction; the trigger and schedule code paths set theirs.
-- Added with a constant default first (no table rewrite), then the expression for new rows.
alter table supaqueue.job add column source text not null default 'sql';
alter table supaqueue.job add column source_name text;
alter table supaqueue.job alter column source set default (
  case when coalesce(pg_catalog.current_setting('request.method', true), '') <> '' then 'api'
       else 'sql' end);
alter table supaqueue.job add constraint job_source_known
  check (source in ('sql', 'api', 'trigger', 'schedule')) not valid;
alter table supaqueue.job validate constraint job_source_known;
-- The jobs each schedule or trigger made, newest first; plain SQL and API jobs are not indexed
-- (most inserts maintain no extra entry).
create index job_source_idx on supaqueue.job (source, source_name, created_at desc, id desc)
  where source in ('trigger', 'schedule');

-- = 0012's enqueue_due_schedules, the job naming its schedule.
create or replace function supaqueue.enqueue_due_schedules() returns integer
language plpgsql security definer set search_path = '' as $$
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

-- = 0012's _install_table_trigger_objects, the job naming its trigger, and a mode that only
-- rewrites the trigger functions (used below for the triggers installed before this migration:
-- their tables are not touched, so no privilege on them is needed).
create or replace function supaqueue._install_table_trigger_objects(_id uuid,
                                                                    _functions_only boolean)
returns void language plpgsql set search_path = '' as $$
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

create or replace function supaqueue._install_table_trigger_objects(_id uuid) returns void
language plpgsql set search_path = '' as $$
begin
  perform supaqueue._install_table_trigger_objects(_id, false);
end
$$;

do $$
declare
  _id uuid;
begin
  for _id in select id from supaqueue.table_trigger order by name loop
    perform supaqueue._install_table_trigger_objects(_id, true);
  end loop;
end
$$;

-- Run a schedule now, once, besides its slots (which stay as they are). The job's dedup key
-- says it was an operator's run: `schedule:<name>:now:<UTC time>`. SQ005: no such schedule.
create function supaqueue.run_schedule_now(_schedule uuid) returns uuid
language plpgsql security definer set search_path = '' as $$
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
create function supaqueue.schedule_overview()
returns table (id uuid, name text, queue uuid, queue_name text, cron text, timezone text,
               next_run_at timestamptz, last_slot timestamptz, last_job uuid,
               last_job_status supaqueue.job_status, last_job_created_at timestamptz,
               jobs_last_day bigint)
language sql stable security definer set search_path = '' set jit = off as $$
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

-- Every table trigger: its table and events, its newest job and its jobs of the last day.
create function supaqueue.trigger_overview()
returns table (id uuid, name text, queue uuid, queue_name text, table_schema text,
               table_name text, events text[], condition text, last_job uuid,
               last_job_status supaqueue.job_status, last_job_created_at timestamptz,
               jobs_last_day bigint)
language sql stable security definer set search_path = '' set jit = off as $$
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

-- The jobs one schedule or trigger made, newest first (at most 1000).
create function supaqueue.source_jobs(_source text, _name text, _limit integer default 50)
returns table (id uuid, queue_name text, status supaqueue.job_status, attempts integer,
               run_at timestamptz, created_at timestamptz, finished_at timestamptz,
               dedup_key text, last_error text)
language plpgsql stable security definer set search_path = '' set jit = off as $$
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

-- Jobs finished per queue over a short window (default the last minute): the console's "ok/min"
-- and "failed/min" (queue_figures' per-minute figures are averages over its whole window).
-- job_finished_idx: one range per queue.
create function supaqueue.queue_rates(_window interval default interval '1 minute')
returns table (queue uuid, succeeded bigint, failed bigint, succeeded_per_minute double precision,
               failed_per_minute double precision)
language sql stable security definer set search_path = '' set jit = off as $$
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

-- For `supaqueue metrics` (a Prometheus exporter that keeps its own running totals): what
-- finished in (_after, _until] per queue, and the attempts that ended then, counted into the
-- histogram buckets `_bounds_ms` (upper bounds, ascending; cumulative as Prometheus wants);
-- attempts without a duration (none is recorded for a lease expiry) are not in the histogram.
create function supaqueue.metrics_between(_after timestamptz, _until timestamptz,
                                          _bounds_ms double precision[])
returns table (queue uuid, name text, succeeded bigint, failed bigint, cancelled bigint,
               attempts bigint, attempt_ms_sum double precision, attempt_buckets bigint[])
language sql stable security definer set search_path = '' set jit = off as $$
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

select supaqueue.apply_privileges();
