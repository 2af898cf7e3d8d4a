-- The API roles of a Supabase database. Cluster-wide; run by the admin role. Idempotent.
-- NOLOGIN is enough: `authenticator` switches into them (no PostgREST runs here).
do $$
declare
  _role text;
  _attrs text;
begin
  for _role, _attrs in values
      ('anon', 'nologin noinherit'),
      ('authenticated', 'nologin noinherit'),
      ('service_role', 'nologin noinherit bypassrls'),
      ('authenticator', 'nologin noinherit')
  loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = _role) then
      execute format('create role %I %s', _role, _attrs);
    end if;
  end loop;
end
$$;

-- As on Supabase: the API roles are granted to authenticator, which switches into them.
grant anon, authenticated, service_role to authenticator;
