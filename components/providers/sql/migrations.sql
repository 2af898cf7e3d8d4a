-- Statements of the migrations provider (the runner itself is components/migrations.py; the
-- uninstall steps are supaqueue.uninstall(), or sql/uninstall.sql where it is missing).

-- name: ledger
select version, name, checksum
from supaqueue.migrations
order by version;

-- name: ledger_exists
select to_regclass('supaqueue.migrations') is not null;

-- name: uninstall_function_exists
select to_regprocedure('supaqueue.uninstall()') is not null;

-- name: uninstall
select supaqueue.uninstall();
