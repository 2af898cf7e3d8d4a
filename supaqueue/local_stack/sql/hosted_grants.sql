-- What hosted Supabase grants `postgres` in a database (docs/reference/supabase-platform.md,
-- "Roles"): its extensions are created by the superuser (on Supabase supautils does it for
-- `postgres`) and then granted. Run by the admin role in each bootstrapped database, after the
-- extensions or their stand-ins exist. Idempotent.
do $$
begin
  execute format('grant all on database %I to postgres', current_database());
end
$$;

grant all on schema public to postgres with grant option;
grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to postgres with grant option;
grant usage on schema extensions to anon, authenticated, service_role;

do $$
begin
  -- pg_cron (database `cron.database_name` only): use it, read the jobs (the functions write
  -- them), read and prune the run history.
  if to_regnamespace('cron') is not null then
    grant usage on schema cron to postgres with grant option;
    grant execute on all functions in schema cron to postgres with grant option;
    revoke all on table cron.job from postgres;
    grant select on table cron.job to postgres with grant option;
    revoke all on table cron.job_run_details from postgres;
    grant select, delete on table cron.job_run_details to postgres with grant option;
  end if;

  -- Vault: read and delete; write through the functions only. As Supabase's after-create script
  -- for supabase_vault (supabase/postgres, ansible/files/postgresql_extension_custom_scripts/
  -- supabase_vault/after-create.sql): postgres with grant option, service_role without.
  if to_regnamespace('vault') is not null then
    grant usage on schema vault to postgres with grant option;
    grant usage on schema vault to service_role;
    grant select, delete on table vault.secrets, vault.decrypted_secrets
      to postgres with grant option;
    grant select, delete on table vault.secrets, vault.decrypted_secrets to service_role;
    grant execute on function
        vault.create_secret(text, text, text, uuid),
        vault.update_secret(uuid, text, text, text, uuid)
      to postgres with grant option;
    grant execute on function
        vault.create_secret(text, text, text, uuid),
        vault.update_secret(uuid, text, text, text, uuid)
      to service_role;
    -- The real extension's view decrypted_secrets calls this function with the reader's rights:
    -- without EXECUTE on it, reading the view fails ("permission denied for function
    -- _crypto_aead_det_decrypt"). The stand-in's view calls vault._decrypt (granted in vault.sql).
    if to_regprocedure('vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea)')
       is not null then
      grant execute on function
          vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea)
        to postgres with grant option;
      grant execute on function
          vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea)
        to service_role;
    end if;
  end if;

  -- pg_net: PUBLIC may use the schema, its tables and the request functions.
  if to_regnamespace('net') is not null then
    grant usage on schema net to public;
    grant all on all tables in schema net to postgres with grant option;
    grant execute on function
        net.http_get(text, jsonb, jsonb, integer),
        net.http_post(text, jsonb, jsonb, jsonb, integer),
        net.http_delete(text, jsonb, jsonb, integer, jsonb)
      to public;
  end if;
end
$$;
