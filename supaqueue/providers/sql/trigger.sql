-- Statements of the table trigger provider (sql/*_hooks.sql: supaqueue.table_trigger,
-- set_table_trigger, drop_table_trigger).

-- name: table_info
select c.relkind::text as kind,
       pg_catalog.has_table_privilege(c.oid, 'TRIGGER') as may_trigger,
       pg_catalog.pg_get_userbyid(c.relowner) as owner,
       current_user as role
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relname = %(table)s;

-- name: condition_check
-- Planned, never run (LIMIT 0), under the empty search_path the trigger function has. The
-- provider composes the FROM list (identifiers quoted) and the condition (the stack's own SQL:
-- the statement is prepared, so a second statement fails). The same checks as
-- supaqueue._check_table_trigger_condition (sql/*_bad_values.sql).
select 1 from {from} where ({condition})::boolean limit 0;

-- name: condition_when_check
-- The condition as the WHEN of a row trigger for the event, in a transaction always rolled back:
-- PostgreSQL parses WHEN (...) as exactly one expression (a condition that closes the
-- parenthesis early or comments out the rest fails) and refuses subqueries there. One line, as
-- the engine writes it: a `--` in the condition must comment out the `)` after it here too.
create trigger supaqueue_when_check after {event} on {table} for each row when ({condition}) execute function pg_catalog.suppress_redundant_updates_trigger();

-- name: local_search_path
select pg_catalog.set_config('search_path', '', true),
       pg_catalog.set_config('statement_timeout', '10s', true),
       pg_catalog.set_config('lock_timeout', '10s', true);

-- name: set_trigger
select supaqueue.set_table_trigger(
  %(id)s::uuid, %(name)s, %(queue_id)s::uuid, %(schema)s, %(table)s, %(events)s::text[],
  %(when)s
)::text;

-- name: read_trigger
select t.name, t.queue::text as queue_id, t.table_schema, t.table_name, t.events, t.condition,
       -- events whose triggers are all there (UPDATE has two: `_update` and `_update_flush`)
       array(select e from pg_catalog.unnest(t.events) e
              where not exists (
                select 1 from pg_catalog.unnest(supaqueue._table_trigger_parts(array[e])) p
                 where not exists (
                   select 1 from pg_catalog.pg_trigger g
                    where not g.tgisinternal
                      and g.tgname = 'supaqueue_' || t.name || '_' || p
                      and g.tgrelid = pg_catalog.to_regclass(
                        pg_catalog.format('%%I.%%I', t.table_schema, t.table_name))))) as installed
from supaqueue.table_trigger t
where t.id = %(id)s::uuid;

-- name: renamed_to
-- The table now holding the table triggers of the named trigger (found by their functions), when
-- its recorded table was renamed; and the recorded name quoted, to rename it back.
select g.tgrelid::pg_catalog.regclass::text, pg_catalog.quote_ident(%(table)s)
from pg_catalog.pg_trigger g
where not g.tgisinternal
  and g.tgfoid in (
    select pg_catalog.to_regprocedure(pg_catalog.format(
             'supaqueue.%%I()', (supaqueue._table_trigger_names(%(name)s, p)).function_name))
    from pg_catalog.unnest(array['insert', 'update', 'update_flush', 'delete']) p)
limit 1;

-- name: find_trigger_by_name
select id::text from supaqueue.table_trigger where name = %(name)s;

-- name: registry_exists
select pg_catalog.to_regclass('supaqueue.table_trigger') is not null;

-- name: drop_trigger
select supaqueue.drop_table_trigger(%(id)s::uuid);
