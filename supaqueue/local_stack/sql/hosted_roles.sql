-- `postgres` as hosted Supabase has it (docs/reference/supabase-platform.md, "Roles"): NOT a
-- superuser; the superuser is the admin role that runs this file. So a statement that needs a
-- superuser fails here as it would on Supabase. Cluster-wide; idempotent. The password is set by
-- local_stack/postgres.py (as a SCRAM verifier).
do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'postgres') then
    create role postgres;
  end if;
end
$$;

alter role postgres nosuperuser createdb createrole login replication bypassrls;
grant pg_read_all_data, pg_monitor, pg_signal_backend to postgres;
grant anon, authenticated, service_role to postgres;
