-- supaqueue 0005: privileges. Only postgres (the owner) and service_role may use the schema;
-- anon, authenticated and PUBLIC may not touch anything in it.

-- Per-schema default privileges cannot take away PUBLIC's global EXECUTE on new functions, so
-- every migration that creates objects ends with `select supaqueue.apply_privileges();`.
create function supaqueue.apply_privileges() returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  _role text;
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
    grant usage on schema supaqueue to service_role;
    grant select, insert, update, delete on all tables in schema supaqueue to service_role;
    grant usage, select on all sequences in schema supaqueue to service_role;
    grant execute on all routines in schema supaqueue to service_role;
    -- removing the installation is the owner's (the Pulumi program's) business only
    revoke execute on function supaqueue.uninstall() from service_role;
  end if;
end
$$;

select supaqueue.apply_privileges();
