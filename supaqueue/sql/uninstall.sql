-- Removes supaqueue: refuses while objects outside the schema depend on it (listing them) unless
-- the session allows dropping them (`set supaqueue.drop_dependents = on` before running this);
-- then unschedules supaqueue's own pg_cron jobs by exact name (deleting their run history) and
-- drops the schema.
-- The same as supaqueue.uninstall() (sql/0007_ownership.sql), for databases where that function
-- is missing or older; the dependency query below is a copy of supaqueue.external_dependents()
-- as sql/functions/90_installation.sql defines it
-- (tests/engine/test_uninstall.py keeps the two equal). Not a migration (the runner only loads
-- NNNN_<name>.sql). The Vault secret is the provider's.
create or replace function pg_temp.supaqueue_external_dependents()
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

do $$
declare
  _found text;
  _count integer;
  -- the jobs of supaqueue.cron_job_names(); before it existed there was only this one
  _jobs text[] := array['supaqueue-tick'];
begin
  if coalesce(current_setting('supaqueue.drop_dependents', true), '') not in ('on', 'true') then
    select string_agg(d.object_type || ' ' || d.object_identity, '; '), count(*)
      into _found, _count
      from pg_temp.supaqueue_external_dependents() d;
    if _count > 0 then
      raise exception 'supaqueue was not removed: % object(s) outside the schema supaqueue depend '
                      'on it and would be dropped with it: %', _count, _found
        using errcode = 'SQ002',
              hint = 'drop or change them first (e.g. drop the view, change the column''s type, '
                     'drop the foreign key); or, to drop them with supaqueue, '
                     'set supaqueue.drop_dependents = on in this session';
    end if;
  end if;
  if pg_catalog.to_regprocedure('supaqueue.cron_job_names()') is not null then
    execute 'select supaqueue.cron_job_names()' into _jobs;
  end if;
  if pg_catalog.to_regclass('cron.job') is not null then
    -- their run history too: pg_cron keeps it after unschedule, and nothing would prune it
    if pg_catalog.to_regclass('cron.job_run_details') is not null
       and pg_catalog.has_table_privilege('cron.job_run_details', 'DELETE') then
      delete from cron.job_run_details d
       where d.jobid in (select j.jobid from cron.job j
                          where j.jobname = any (_jobs)
                            and j.database = pg_catalog.current_database());
    end if;
    perform cron.unschedule(j.jobid) from cron.job j
      where j.jobname = any (_jobs) and j.database = pg_catalog.current_database();
  end if;
  -- in this block, so that a refusal above (psql goes on after an error) drops nothing. A tick
  -- running now may deadlock with the drop: if Postgres ends the drop, try again.
  for _try in 1..5 loop
    begin
      drop schema if exists supaqueue_api cascade;
      drop schema if exists supaqueue cascade;
      exit;
    exception when deadlock_detected then
      if _try = 5 then
        raise;
      end if;
      perform pg_catalog.pg_sleep(0.2 * _try);
    end;
  end loop;
end
$$;

drop function pg_temp.supaqueue_external_dependents();
