-- Statements of supaqueue/providers/ownership.py: who owns the installation and each queue
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

-- name: schema_objects
-- Every object a user could have made in schema supaqueue, as (kind, name, identity): relations
-- (not indexes, nor sequences owned by a column: they go with their table), composite types,
-- routines, and other types (not array or multirange types: they go with their type).
select o.kind, o.name, o.identity
from (
  select case c.relkind when 'r' then 'table' when 'p' then 'table' when 'v' then 'view'
                        when 'm' then 'materialized view' when 'S' then 'sequence'
                        when 'f' then 'foreign table' else 'type' end as kind,
         c.relname::text as name,
         pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) as identity
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'supaqueue' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f', 'c')
    and not exists (
      select 1 from pg_catalog.pg_depend d
      where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.objid = c.oid
        and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.refobjsubid > 0
        and d.deptype in ('a', 'i'))
  union all
  select case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' else 'function' end,
         p.proname::text, p.oid::pg_catalog.regprocedure::text
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where n.nspname = 'supaqueue'
  union all
  select case t.typtype when 'd' then 'domain' else 'type' end, t.typname::text,
         pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
  from pg_catalog.pg_type t
  join pg_catalog.pg_namespace n on n.oid = t.typnamespace
  where n.nspname = 'supaqueue' and t.typrelid = 0 and t.typcategory <> 'A' and t.typtype <> 'm'
) o
order by o.kind, o.identity;
