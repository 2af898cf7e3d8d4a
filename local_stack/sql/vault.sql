-- Stand-in for Supabase Vault (supabase_vault 0.3.1): same table, view, functions and grants.
-- Secrets are encrypted at rest with pgcrypto (schema `extensions`). The key is not in the database:
-- the server gets only the path of a key file, as the setting `vault.key_file` in its config file.
-- Idempotent: safe to run again on every bootstrap.

create schema if not exists vault;

create table if not exists vault.secrets (
    id uuid primary key default gen_random_uuid(),
    name text,
    description text not null default '',
    secret text not null,
    key_id uuid,
    nonce bytea default extensions.gen_random_bytes(16),
    created_at timestamptz not null default current_timestamp,
    updated_at timestamptz not null default current_timestamp
);

create unique index if not exists secrets_name_idx on vault.secrets (name) where name is not null;

-- Read from the config file itself (pg_file_settings), not current_setting(): a session could SET
-- or pass its own path for a custom setting.
create or replace function vault._key()
    returns text
    language plpgsql
    stable
    security definer
    set search_path = ''
as $$
declare
    key_file text;
    key text;
begin
    select f.setting into key_file
    from pg_catalog.pg_file_settings f
    where f.name = 'vault.key_file' and f.error is null
    order by f.seqno desc
    limit 1;
    if key_file is null or key_file = '' then
        raise exception 'vault key is not configured'
            using hint = 'set vault.key_file = <path> in the server config (local_stack.postgres.Cluster does)';
    end if;
    key := pg_catalog.btrim(pg_catalog.pg_read_file(key_file), E' \n\r\t');
    if pg_catalog.length(key) < 32 then
        raise exception 'vault key file is too short';
    end if;
    return key;
end
$$;

-- The passphrase binds each ciphertext to its row (id) and nonce, like the upstream AEAD does.
create or replace function vault._encrypt(plain text, secret_id uuid, nonce bytea)
    returns text
    language sql
    volatile
    security definer
    set search_path = ''
as $$
    select pg_catalog.encode(
        extensions.pgp_sym_encrypt(
            plain,
            vault._key() || ':' || secret_id::text || ':' || pg_catalog.encode(nonce, 'hex'),
            'cipher-algo=aes256'),
        'base64')
$$;

create or replace function vault._decrypt(ciphertext text, secret_id uuid, nonce bytea)
    returns text
    language sql
    stable
    security definer
    set search_path = ''
as $$
    select extensions.pgp_sym_decrypt(
        pg_catalog.decode(ciphertext, 'base64'),
        vault._key() || ':' || secret_id::text || ':' || pg_catalog.encode(nonce, 'hex'))
$$;

create or replace view vault.decrypted_secrets as
select
    s.id,
    s.name,
    s.description,
    s.secret,
    vault._decrypt(s.secret, s.id, s.nonce) as decrypted_secret,
    s.key_id,
    s.nonce,
    s.created_at,
    s.updated_at
from vault.secrets s;

create or replace function vault.create_secret(
    new_secret text,
    new_name text default null,
    new_description text default '',
    new_key_id uuid default null
)
    returns uuid
    language plpgsql
    security definer
    set search_path = ''
as $$
declare
    rec record;
begin
    -- Insert a placeholder first: the ciphertext is bound to the id the row gets.
    insert into vault.secrets (secret, name, description, key_id)
    values ('', new_name, coalesce(new_description, ''), new_key_id)
    returning id, nonce into rec;

    update vault.secrets s
    set secret = vault._encrypt(new_secret, rec.id, rec.nonce)
    where s.id = rec.id;

    return rec.id;
end
$$;

create or replace function vault.update_secret(
    secret_id uuid,
    new_secret text default null,
    new_name text default null,
    new_description text default null,
    new_key_id uuid default null
)
    returns void
    language plpgsql
    security definer
    set search_path = ''
as $$
begin
    update vault.secrets s
    set
        secret = case when new_secret is null then s.secret
                      else vault._encrypt(new_secret, s.id, s.nonce) end,
        name = coalesce(new_name, s.name),
        description = coalesce(new_description, s.description),
        key_id = coalesce(new_key_id, s.key_id),
        updated_at = now()
    where s.id = secret_id;
end
$$;

-- Grants as on Supabase: postgres and service_role only; writes go through the functions.
revoke all on schema vault from public;
grant usage on schema vault to postgres, service_role;

revoke all on vault.secrets, vault.decrypted_secrets from public;
grant select, delete on vault.secrets, vault.decrypted_secrets to postgres, service_role;

revoke all on function
    vault._key(),
    vault._encrypt(text, uuid, bytea),
    vault._decrypt(text, uuid, bytea),
    vault.create_secret(text, text, text, uuid),
    vault.update_secret(uuid, text, text, text, uuid)
    from public;
-- Functions in a view run with the caller's rights, so readers of the view need _decrypt.
grant execute on function vault._decrypt(text, uuid, bytea) to postgres, service_role;
grant execute on function
    vault.create_secret(text, text, text, uuid),
    vault.update_secret(uuid, text, text, text, uuid)
    to postgres, service_role;
