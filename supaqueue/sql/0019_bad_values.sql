-- supaqueue 0019: bad values are refused where they enter, naming the field (issue 21 item 4).
-- A job's run_at must be a time clients can read (years 1..9999 UTC: beyond, `supaqueue jobs`
-- and the dashboard failed on the row), and its dedup key must fit the unique index
-- (Postgres's raw "index row requires N bytes" otherwise), both as named constraints on
-- supaqueue.job, so enqueue() and a plain INSERT are refused alike. A table trigger's condition
-- must be exactly one SQL expression, checked as the triggers will use it, so no input can add
-- a statement to the SECURITY DEFINER functions set_table_trigger creates. Uninstall also
-- removes the run history of supaqueue's own cron jobs (pg_cron keeps it past unschedule), and
-- the history an earlier uninstall left behind is deleted here.

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
-- Refuses (22023 `when: …`) a table trigger condition that is not exactly one SQL expression over
-- the row, for each event, before anything is recorded or made: (a) planned as the WHERE of one
-- SELECT opened as a cursor (a string of several statements is refused before any of them runs,
-- and it is never fetched); (b) made the WHEN of a row trigger on the table in a subtransaction
-- that is always rolled back: PostgreSQL parses `WHEN (...)` as exactly one expression, so a
-- condition that closes the parenthesis early, or comments out what follows (`true) --`), fails
-- there, as do subqueries. The condition is then used exactly as checked: inside `(...)`, as
-- the WHERE of the INSERT/DELETE trigger functions and the WHEN of the UPDATE trigger.
-- SECURITY INVOKER, as set_table_trigger: the caller must be allowed to create triggers there.
create function supaqueue._check_table_trigger_condition(
  _table_schema text, _table_name text, _events text[], _condition text
) returns void
language plpgsql
set search_path = ''
as $$
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

-- = 0012's set_table_trigger plus one call: the condition is checked (above) before anything is
-- recorded or made, so no input can add a statement to the SECURITY DEFINER trigger functions.
create or replace function supaqueue.set_table_trigger(
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

-- Run history left behind by an earlier uninstall (before this one deleted it): rows of this
-- database and role whose job is no longer scheduled and whose command is exactly one of
-- supaqueue's (any pg_cron version's). Nothing prunes them otherwise.
do $$
begin
  if pg_catalog.to_regclass('cron.job_run_details') is not null
     and pg_catalog.to_regclass('cron.job') is not null
     and pg_catalog.has_table_privilege('cron.job_run_details', 'DELETE') then
    delete from cron.job_run_details d
     where d.database = pg_catalog.current_database() and d.username = current_user
       and not exists (select 1 from cron.job j where j.jobid = d.jobid)
       and d.command in (select c.command from supaqueue.cron_jobs_for('1.4') c
                         union select c.command from supaqueue.cron_jobs_for('1.6') c);
  end if;
end
$$;

select supaqueue.apply_privileges();
