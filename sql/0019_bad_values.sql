-- supaqueue 0019: bad values are refused where they enter, naming the field (issue 21 item 4).
-- A job's run_at must be a time clients can read (years 1..9999 UTC: beyond, `supaqueue jobs`
-- and the dashboard failed on the row), and its dedup key must fit the unique index
-- (Postgres's raw "index row requires N bytes" otherwise), both as named constraints on
-- supaqueue.job, so enqueue() and a plain INSERT are refused alike. A table trigger's condition
-- must be exactly one SQL expression, checked as the triggers will use it, so no input can add
-- a statement to the SECURITY DEFINER functions set_table_trigger creates. Uninstall also
-- removes the run history of supaqueue's own cron jobs (pg_cron keeps it past unschedule).

-- 1 ---------------------------------------------------------------------------------------------
-- The largest dedup key, in bytes of its text (the one authority; constraint job_dedup_key_size).
-- A btree entry holds at most ~2,700 bytes (a third of a page) with the queue id; 1 KiB leaves
-- room and is far above any natural key (schedules use 'schedule:<name ≤ 40>:<slot>').
create function supaqueue.max_dedup_key_bytes() returns integer
language sql immutable parallel safe
set search_path = ''
as $$ select 1024 $$;

-- Raised by a job constraint instead of its bare "violates check constraint": the message names
-- the field and what to do, never echoes the row (a payload or a key of a megabyte). Called only
-- when the constraint's own test failed (the OR before it is evaluated first), so it costs
-- nothing on a good row. Not internal (no `_`): service_role's INSERT needs EXECUTE on it.
create function supaqueue.refuse_job_value(_constraint text, _message text, _hint text)
returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
  raise exception '%', _message
    using errcode = 'check_violation', constraint = _constraint, table = 'job',
          schema = 'supaqueue', hint = _hint;
end
$$;

-- Rows enqueued before these limits are brought within them first, so that both constraints
-- hold for every row: a NOT VALID constraint would still refuse each later UPDATE of such a row
-- (its dispatch, its end), and so stall its queue. Neither change alters what the job does: a
-- run_at beyond the range moves to its end (±infinity to years 1 / 9999: the same order, still
-- first or never), and a longer dedup key becomes its hash (a key that long can no longer be
-- enqueued, so no new job could have matched it anyway).
update supaqueue.job
   set run_at = greatest(least(run_at, '9999-12-31 23:59:59.999999+00'), '0001-01-01 00:00:00+00'),
       dedup_key = case when pg_catalog.octet_length(dedup_key) > supaqueue.max_dedup_key_bytes()
                        then 'md5:' || pg_catalog.md5(dedup_key) else dedup_key end
 where run_at < '0001-01-01 00:00:00+00' or run_at >= '10000-01-01 00:00:00+00'
    or pg_catalog.octet_length(dedup_key) > supaqueue.max_dedup_key_bytes();

alter table supaqueue.job
  add constraint job_run_at_readable check (
    (run_at >= '0001-01-01 00:00:00+00' and run_at < '10000-01-01 00:00:00+00')
    or supaqueue.refuse_job_value(
      'job_run_at_readable',
      pg_catalog.format('run_at: %s is outside the times a job can have; give a time between '
                        '0001-01-01 and 9999-12-31 UTC, or none to run it now', run_at),
      'supaqueue.enqueue(..., _run_at => now() + interval ''1 hour'') delays a job by an hour')),
  add constraint job_dedup_key_size check (
    dedup_key is null
    or pg_catalog.octet_length(dedup_key) <= supaqueue.max_dedup_key_bytes()
    or supaqueue.refuse_job_value(
      'job_dedup_key_size',
      pg_catalog.format('dedup_key: %s bytes, over the limit of %s bytes '
                        '(supaqueue.max_dedup_key_bytes()); use a shorter key',
                        pg_catalog.octet_length(dedup_key), supaqueue.max_dedup_key_bytes()),
      'a long natural key can be hashed: md5(<key>) is 32 characters'));

-- 2 ---------------------------------------------------------------------------------------------
-- = 0012's _install_table_trigger_objects with the condition checked as one expression before
-- anything is made: (a) planned as the WHERE of one SELECT, opened as a cursor (which refuses a
-- string of several statements before running any); (b) as the WHEN of a row trigger for each
-- event, made in a subtransaction that is always rolled back (PostgreSQL parses WHEN (...) as
-- exactly one expression, so a condition that closes the parenthesis or comments out the rest
-- fails, and refuses subqueries). The condition is then used between newlines, as checked.
create or replace function supaqueue._install_table_trigger_objects(_id uuid) returns void
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
  _cond text;
  _probe refcursor;
  -- format() pattern of a Database Webhook payload: type, record, old_record
  _payload constant text :=
    'pg_catalog.jsonb_build_object(''type'', %L, ''table'', TG_TABLE_NAME, '
    '''schema'', TG_TABLE_SCHEMA, ''record'', %s, ''old_record'', %s)';
begin
  select * into _t from supaqueue.table_trigger where id = _id;
  -- between newlines: a trailing `--` comment cannot swallow what follows it
  _cond := chr(10) || _t.condition || chr(10);
  if _t.condition is not null then
    foreach _event in array _t.events loop
      begin
        -- (a) the condition as the trigger will evaluate it: rows of this table as NEW and/or OLD
        open _probe for execute pg_catalog.format('select 1 from %s where (%s)::boolean limit 0',
          case _event
            when 'INSERT' then pg_catalog.format('%I.%I as new', _t.table_schema, _t.table_name)
            when 'DELETE' then pg_catalog.format('%I.%I as old', _t.table_schema, _t.table_name)
            else pg_catalog.format('%I.%I as new, %I.%I as old', _t.table_schema,
                                   _t.table_name, _t.table_schema, _t.table_name) end,
          _cond);
        close _probe;
        -- (b) one expression, a row condition: made, then always rolled back (SQ0WP)
        begin
          execute pg_catalog.format(
            'create trigger supaqueue_when_check after %s on %I.%I for each row when (%s) '
            'execute function pg_catalog.suppress_redundant_updates_trigger()',
            _event, _t.table_schema, _t.table_name, _cond);
          raise exception using errcode = 'SQ0WP';
        exception when sqlstate 'SQ0WP' then
          null;
        end;
      exception when others then
        raise exception 'when: % is not a valid condition for % on %.% (one SQL expression over '
                        'the row, as in a trigger''s WHEN: no subqueries, no second statement): %',
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
                    else pg_catalog.format(' where (%s)', _cond) end;
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
             else pg_catalog.format(' when (%s)', _cond) end,
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

-- 3 ---------------------------------------------------------------------------------------------
-- = 0007's uninstall() plus one step: the run history of supaqueue's cron jobs in this database
-- goes with them (pg_cron keeps job_run_details after unschedule, and prune_cron_history keys on
-- jobs still scheduled, so a later install would never prune it). Skipped where the role may not
-- delete there (the platform grants `postgres` DELETE on it).
-- sql/uninstall.sql does the same where this function is missing. Owner only (see 0005).
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
  drop schema supaqueue cascade;
end
$$;

select supaqueue.apply_privileges();
