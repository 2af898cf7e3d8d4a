-- supaqueue functions/80_table_triggers.sql: Table triggers: jobs from INSERT/UPDATE/DELETE on a
-- user's table.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- 2 ---------------------------------------------------------------------------------------------
-- Refuses (22023 `when: …`) a table trigger condition that is not exactly one SQL expression over
-- the row, for each event, before anything is recorded or made: (a) planned as the WHERE of one
-- SELECT opened as a cursor (a string of several statements is refused before any of them runs,
-- and it is never fetched); (b) made the WHEN of a row trigger on the table in a subtransaction
-- that is always rolled back: PostgreSQL parses `WHEN (...)` as exactly one expression, so a
-- condition that closes the parenthesis early, or comments out what follows (`true) --`), fails
-- there, as do subqueries. The condition is then used exactly as checked: inside `(...)`, as
-- the WHERE of the INSERT/DELETE trigger functions and the WHEN of the UPDATE trigger.
-- SECURITY INVOKER, as set_table_trigger: the caller must be allowed to create triggers there.
CREATE OR REPLACE FUNCTION supaqueue._check_table_trigger_condition(_table_schema text, _table_name text, _events text[], _condition text) RETURNS void
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

CREATE OR REPLACE FUNCTION supaqueue._install_table_trigger_objects(_id uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._install_table_trigger_objects(_id, false);
end
$$;

CREATE OR REPLACE FUNCTION supaqueue._install_table_trigger_objects(_id uuid, _functions_only boolean) RETURNS void
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

-- Drops what trigger _id owns on its table (as recorded), never the table or anything else.
CREATE OR REPLACE FUNCTION supaqueue._remove_table_trigger_objects(_id uuid) RETURNS void
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

-- Names of what a table trigger owns for one part ('insert', 'update', 'update_flush',
-- 'delete'). PostgreSQL would silently cut a name longer than 63 bytes (and so could mix two
-- triggers up): refuse instead.
CREATE OR REPLACE FUNCTION supaqueue._table_trigger_names(_name text, _part text, OUT trigger_name text, OUT function_name text) RETURNS record
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

-- The parts events need: UPDATE is two triggers (capture each row, then enqueue them all).
CREATE OR REPLACE FUNCTION supaqueue._table_trigger_parts(_events text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select array(select p from pg_catalog.unnest(array['insert', 'update', 'update_flush', 'delete'])
                 with ordinality as k(p, n)
                where pg_catalog.upper(pg_catalog.split_part(p, '_', 1)) = any (_events)
                order by n)
$$;

-- Removes table trigger _id: its triggers and functions, then its row. False if there is none.
CREATE OR REPLACE FUNCTION supaqueue.drop_table_trigger(_id uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform supaqueue._remove_table_trigger_objects(_id);
  delete from supaqueue.table_trigger where id = _id;
  return found;
end
$$;

-- Creates or changes a table trigger. The condition is checked (above) before anything is
-- recorded or made, so no input can add a statement to the SECURITY DEFINER trigger functions.
CREATE OR REPLACE FUNCTION supaqueue.set_table_trigger(_id uuid, _name text, _queue uuid, _table_schema text, _table_name text, _events text[], _condition text DEFAULT NULL::text) RETURNS uuid
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
