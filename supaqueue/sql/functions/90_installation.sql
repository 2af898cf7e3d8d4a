-- supaqueue functions/90_installation.sql: The installation: ownership of objects, privileges,
-- uninstall.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- The one authority for privileges (docs/architecture.md, "Privileges"); run last by
-- 99_privileges.sql.
CREATE OR REPLACE FUNCTION supaqueue.apply_privileges() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _role text;
  _routine regprocedure;
begin
  revoke all on schema supaqueue from public;
  revoke all on all tables in schema supaqueue from public;
  revoke all on all sequences in schema supaqueue from public;
  revoke all on all routines in schema supaqueue from public;
  foreach _role in array array['anon', 'authenticated'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = _role) then
      execute format('revoke all on schema supaqueue from %I', _role);
      execute format('revoke all on all tables in schema supaqueue from %I', _role);
      execute format('revoke all on all sequences in schema supaqueue from %I', _role);
      execute format('revoke all on all routines in schema supaqueue from %I', _role);
    end if;
  end loop;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    revoke all on all tables in schema supaqueue from service_role;
    revoke all on all sequences in schema supaqueue from service_role;
    revoke all on all routines in schema supaqueue from service_role;
    grant usage on schema supaqueue to service_role;
    -- Reading is harmless; enqueueing by INSERT names only these columns (docs/architecture.md).
    grant select on all tables in schema supaqueue to service_role;
    grant insert (queue, payload, priority, run_at, dedup_key, key) on supaqueue.job to service_role;
    -- Every routine but the internal ones (named `_…`, trigger functions) and the owner's (the
    -- Pulumi program's): those take the engine's rows as given, or change what a stack owns.
    for _routine in
      select p.oid::regprocedure from pg_catalog.pg_proc p
        where p.pronamespace = 'supaqueue'::regnamespace
          and p.proname not like '\_%'
          and p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
          and p.proname <> all (supaqueue.owner_only_routines())
    loop
      execute format('grant execute on routine %s to service_role', _routine);
    end loop;
  end if;
end
$$;

-- What outside the schema `drop schema supaqueue cascade` would drop (pg_depend, catalog reads
-- only); supaqueue's own table triggers are supaqueue's, not the user's (uninstall drops them with
-- the schema; the user's table stays). sql/uninstall.sql carries a copy (a test keeps them equal).
CREATE OR REPLACE FUNCTION supaqueue.external_dependents() RETURNS TABLE(object_type text, object_identity text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

-- 1 ---------------------------------------------------------------------------------------------
-- Routines only the owner (the Pulumi program's role, `postgres`) may run. service_role may run
-- every other routine whose name does not start with '_'. A new owner-only routine goes here.
CREATE OR REPLACE FUNCTION supaqueue.owner_only_routines() RETURNS text[]
    LANGUAGE sql IMMUTABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select array[
    'apply_privileges', 'owner_only_routines', 'uninstall',
    -- pg_cron runs these; the Pulumi program changes queues and the schedule
    'tick_loop', 'dispatch', 'set_worker_count', 'drop_queue',
    'cron_jobs_for', 'cron_drift', 'reconcile_cron', 'prune_cron_history', 'cron_job_names',
    'prune_history']
$$;

-- Removes supaqueue (owner only): refuses while external_dependents() is not empty unless
-- supaqueue.drop_dependents = on; unschedules cron_job_names(); drops supaqueue_api (its wrappers
-- call into supaqueue) and the schema, trying again when a running tick deadlocks with it.
CREATE OR REPLACE FUNCTION supaqueue.uninstall() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
  -- A tick running now holds locks the drop needs and may then want one the drop took first:
  -- Postgres ends one of the two (deadlock). If it is the drop, the tick finishes; try again.
  for _try in 1..5 loop
    begin
      drop schema if exists supaqueue_api cascade;
      drop schema supaqueue cascade;
      return;
    exception when deadlock_detected then
      if _try = 5 then
        raise;
      end if;
      perform pg_catalog.pg_sleep(0.2 * _try);
    end;
  end loop;
end
$$;
