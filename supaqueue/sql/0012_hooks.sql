-- supaqueue 0012: table events and schedules that enqueue jobs (declared by the Pulumi program).

-- Table-event triggers. Each row owns, on the user's table, its triggers (one per event, two for
-- UPDATE) and one function per trigger (in this schema). Nothing else of the user's table is
-- ever changed.
create table supaqueue.table_trigger (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  -- no cascade: a queue that a trigger feeds cannot be dropped from under it (the user's writes
  -- would fail); remove the trigger first
  queue uuid not null references supaqueue.queue (id),
  table_schema text not null,
  table_name text not null,
  events text[] not null,
  condition text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint table_trigger_name_key unique (name),
  constraint table_trigger_name_is_slug check (name ~ '^[A-Za-z][A-Za-z0-9_-]*$'),
  constraint table_trigger_events_known check (
    cardinality(events) between 1 and 3 and events <@ array['INSERT', 'UPDATE', 'DELETE'])
);

-- Schedules, evaluated by supaqueue.tick() (no pg_cron job of their own).
create table supaqueue.schedule (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  queue uuid not null references supaqueue.queue (id),
  cron text not null,
  timezone text not null default 'UTC',
  payload jsonb not null default '{}',
  -- the first slot not enqueued yet; the tick enqueues the latest slot <= now() once this is due
  next_run_at timestamptz not null,
  last_slot timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint schedule_name_key unique (name),
  constraint schedule_name_is_slug check (name ~ '^[A-Za-z][A-Za-z0-9_-]*$')
);
create index schedule_next_run_at_idx on supaqueue.schedule (next_run_at);

-- Rows an UPDATE trigger captured, until its statement-level part turns them into jobs at the end
-- of the same statement (see below). Unlogged: the rows never outlive their transaction.
create unlogged table supaqueue.table_trigger_buffer (
  trigger uuid not null,
  record jsonb,
  old_record jsonb
);

-- Names of what a table trigger owns for one part ('insert', 'update', 'update_flush',
-- 'delete'). PostgreSQL would silently cut a name longer than 63 bytes (and so could mix two
-- triggers up): refuse instead.
create function supaqueue._table_trigger_names(_name text, _part text, out trigger_name text,
                                               out function_name text)
language plpgsql immutable
set search_path = ''
as $$
begin
  trigger_name := 'supaqueue_' || _name || '_' || _part;
  function_name := 'tg_hook_' || _name || '_' || _part;
  if pg_catalog.octet_length(function_name) > 63 or pg_catalog.octet_length(trigger_name) > 63 then
    raise exception 'name: % is too long for a trigger name', pg_catalog.quote_literal(_name)
      using errcode = '22023';
  end if;
end
$$;

-- The parts events need: UPDATE is two triggers (capture each row, then enqueue them all).
create function supaqueue._table_trigger_parts(_events text[]) returns text[]
language sql immutable
set search_path = ''
as $$
  select array(select p from pg_catalog.unnest(array['insert', 'update', 'update_flush', 'delete'])
                 with ordinality as k(p, n)
                where pg_catalog.upper(pg_catalog.split_part(p, '_', 1)) = any (_events)
                order by n)
$$;

-- Drops what trigger _id owns on its table (as recorded), never the table or anything else.
create function supaqueue._remove_table_trigger_objects(_id uuid) returns void
language plpgsql
set search_path = ''
as $$
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

-- (Re)creates the triggers of row _id on its table, so that a bulk statement enqueues all its
-- jobs in one set-based INSERT. INSERT and DELETE: statement-level with a transition table.
-- UPDATE: a statement's old and new rows cannot be paired from its transition tables in general,
-- so a row-level trigger (the condition as its WHEN) captures each pair into
-- supaqueue.table_trigger_buffer, and a statement-level one moves them all into jobs.
-- The functions are SECURITY DEFINER (owned by the installer, the schema owner) with an empty
-- search_path, so that any role writing the table can enqueue without rights on supaqueue; the
-- condition is the stack's own SQL and runs under that same search_path.
-- SECURITY INVOKER itself: only a role that may create triggers on the table can install one.
create function supaqueue._install_table_trigger_objects(_id uuid) returns void
language plpgsql
set search_path = ''
as $$
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
        || 'begin insert into supaqueue.job (queue, payload) select '
        || pg_catalog.quote_literal(_t.queue) || '::uuid, '
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
        || ' returning b.record, b.old_record) insert into supaqueue.job (queue, payload) select '
        || pg_catalog.quote_literal(_t.queue) || '::uuid, '
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
    execute _trigger;
  end loop;
end
$$;

-- Creates (_id null) or changes table trigger _name; returns its id. Raises 23505 on
-- table_trigger_name_key when creating a name that exists.
create function supaqueue.set_table_trigger(
  _id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[],
  _condition text default null
) returns uuid
language plpgsql
set search_path = ''
as $$
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

-- Removes table trigger _id: its triggers and functions, then its row. False if there is none.
create function supaqueue.drop_table_trigger(_id uuid) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  perform supaqueue._remove_table_trigger_objects(_id);
  delete from supaqueue.table_trigger where id = _id;
  return found;
end
$$;

-- Enqueues one job per due schedule: for the latest slot <= now() (a schedule that missed slots,
-- e.g. during downtime, gets one job, for the latest missed slot). FOR UPDATE SKIP LOCKED and
-- next_run_at moving past the slot in the same transaction mean two ticks never enqueue the same
-- slot; the job's dedup key (schedule:<name>:<slot in UTC>) says which slot it is.
create function supaqueue.enqueue_due_schedules() returns integer
language plpgsql security definer
set search_path = ''
as $$
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
      insert into supaqueue.job (queue, payload, run_at, dedup_key)
        values (_s.queue, _s.payload, _slot,
                'schedule:' || _s.name || ':'
                || pg_catalog.to_char(_slot at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
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

-- = 0004's tick plus one call: enqueue_due_schedules() first.
create or replace function supaqueue.tick() returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  _cj supaqueue.current_job;
  _queues uuid[] := '{}';
  _queue uuid;
  _q record;
  _expired integer := 0;
  _dispatched integer := 0;
  _pruned integer := 0;
  _n integer;
begin
  perform supaqueue.enqueue_due_schedules();

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

  for _queue in
    select q.id from supaqueue.queue q
      where not q.paused
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

  for _q in select id, retention_seconds from supaqueue.queue where retention_seconds is not null
  loop
    -- A finished job is kept while a dependent still waits: its result goes into that dispatch.
    delete from supaqueue.job
      where id in (
        select j.id from supaqueue.job j
          where j.queue = _q.id and j.finished_at is not null
            and j.finished_at < now() - make_interval(secs => _q.retention_seconds)
            and not exists (
              select 1 from supaqueue.job_dependency d
                join supaqueue.job dj on dj.id = d.job
               where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
          order by j.finished_at
          limit 5000);
    get diagnostics _n = row_count;
    _pruned := _pruned + _n;
  end loop;

  return jsonb_build_object('expired', _expired, 'dispatched', _dispatched, 'pruned', _pruned);
end
$$;

-- = 0007's external_dependents() plus one rule: supaqueue's own table triggers are supaqueue's,
-- not the user's (uninstall drops them with the schema; the user's table stays).
-- sql/uninstall.sql carries a copy of this newest definition.
create or replace function supaqueue.external_dependents()
returns table (object_type text, object_identity text)
language sql stable security definer
set search_path = ''
as $$
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

select supaqueue.apply_privileges();
