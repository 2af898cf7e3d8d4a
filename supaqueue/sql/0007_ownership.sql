-- supaqueue 0007: who owns what, and an uninstall that takes nothing else with it.
--
-- An installation records the Pulumi stack that owns it, and each queue the stack that declared
-- it, so that one stack can never adopt, change or destroy what another stack made (see
-- docs/architecture.md, "Ownership"). Stack = '<project>/<stack>'; stack_id = a value unique to
-- that stack's Pulumi state (two checkouts both named `dev` differ in it).

create table supaqueue.installation_owner (
  singleton boolean primary key default true check (singleton),
  stack text not null check (stack <> ''),
  -- null: not claimed yet; the stack named `stack` claims it on its next `pulumi up` (hand-over)
  stack_id text check (stack_id <> ''),
  claimed_at timestamptz not null default now()
);

-- Null for queues made in SQL (and, until their stack's next `up`, before this migration).
alter table supaqueue.queue
  add column owner_stack text,
  add column owner_stack_id text;

-- The pg_cron jobs supaqueue schedules: uninstall removes these names exactly, nothing else.
-- Whoever schedules another job adds its name here.
create function supaqueue.cron_job_names() returns text[]
language sql immutable security definer
set search_path = ''
as $$ select array['supaqueue-tick'] $$;

-- Objects OUTSIDE the schema that `drop schema supaqueue cascade` would drop: user columns of
-- supaqueue types, foreign keys to supaqueue tables, views over them, functions and domains using
-- their types, policies and defaults calling supaqueue functions, and anything depending on those
-- in turn. Also triggers a user put on supaqueue's tables that call functions outside it.
-- Follows pg_depend as DROP ... CASCADE does: an object's dependents (of a column: that column's
-- only), and the owner of every internal part (a view of its rule). Catalog reads only, so it
-- works for a non-superuser owner (the `postgres` role on Supabase).
create function supaqueue.external_dependents()
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
      -- a trigger belongs to its table, unless a user's function is what it runs
      (select case when f.pronamespace = c.relnamespace then c.relnamespace end
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

-- Removes supaqueue: refuses (SQLSTATE SQ002, listing them) while objects outside the schema
-- depend on it, unless the session allows dropping them (`set supaqueue.drop_dependents = on`);
-- then unschedules supaqueue's own cron jobs by exact name and drops the schema.
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
    perform cron.unschedule(j.jobid) from cron.job j
      where j.jobname = any (supaqueue.cron_job_names()) and j.database = pg_catalog.current_database();
  end if;
  drop schema supaqueue cascade;
end
$$;

select supaqueue.apply_privileges();
