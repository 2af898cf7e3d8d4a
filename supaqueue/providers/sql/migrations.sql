-- Statements of the migrations provider (the runner itself is supaqueue/migrations.py; the
-- uninstall steps are supaqueue.uninstall(), or sql/uninstall.sql where it is missing).

-- name: ledger
select version, name, checksum
from supaqueue.migrations
order by version;

-- name: ledger_exists
select to_regclass('supaqueue.migrations') is not null;

-- name: repeatable_ledger
select name, checksum
from supaqueue.repeatable_migrations
order by name;

-- name: repeatable_ledger_exists
select to_regclass('supaqueue.repeatable_migrations') is not null;

-- name: uninstall_function_exists
-- the guarded uninstall() came with external_dependents() (0007); older ones: sql/uninstall.sql
select to_regprocedure('supaqueue.uninstall()') is not null
  and to_regprocedure('supaqueue.external_dependents()') is not null;

-- name: allow_dropping_dependents
select set_config('supaqueue.drop_dependents', case when %(on)s then 'on' else 'off' end, true);

-- name: uninstall
select supaqueue.uninstall();
