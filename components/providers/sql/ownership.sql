-- Statements of components/providers/ownership.py: who owns the installation and each queue
-- (sql/0007_ownership.sql).

-- name: installed
select to_regclass('supaqueue.migrations') is not null;

-- name: owner_table_exists
select to_regclass('supaqueue.installation_owner') is not null;

-- name: recorded_owner
select stack, stack_id from supaqueue.installation_owner;

-- name: lock_owner
select pg_advisory_xact_lock(hashtextextended('supaqueue.installation_owner', 0));

-- name: claim
insert into supaqueue.installation_owner as o (stack, stack_id)
values (%(stack)s, %(stack_id)s)
on conflict (singleton) do update
  set stack = excluded.stack, stack_id = excluded.stack_id, claimed_at = now()
  where o.stack_id = excluded.stack_id or (o.stack_id is null and o.stack = excluded.stack)
returning stack;

-- name: foreign_queues
select name, owner_stack
from supaqueue.queue
where owner_stack_id is not null and owner_stack_id is distinct from %(stack_id)s
order by name;

-- name: dependents_function_exists
select to_regprocedure('supaqueue.external_dependents()') is not null;

-- name: external_dependents
select object_type || ' ' || object_identity from supaqueue.external_dependents();

-- name: queue_by_name
select id::text, owner_stack, owner_stack_id, supaqueue.unfinished_job_count(id) as unfinished
from supaqueue.queue where name = %(name)s;

-- name: queue_table_exists
select to_regclass('supaqueue.queue') is not null;

-- name: queue_exists
select 1 from supaqueue.queue where id = %(id)s::uuid;

-- name: queue_owner
select owner_stack, owner_stack_id from supaqueue.queue where id = %(id)s::uuid for update;

-- name: schema_version
select max(version) from supaqueue.migrations;

-- name: vault_exists
select to_regclass('vault.decrypted_secrets') is not null;

-- name: vault_secret
select decrypted_secret from vault.decrypted_secrets where name = %(name)s;
