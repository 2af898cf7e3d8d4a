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

-- Where the key file is: only ever a value written in a server config file, never a session's.
-- `vault.key_file` is a custom (placeholder) setting, so any session can SET it, pass it as a
-- connection option, or get it from ALTER ROLE/DATABASE ... SET; and placeholders are hidden from
-- pg_settings, so their `source` cannot be checked. Hence:
-- * fast path: the value the local stack writes in `supaqueue.conf` (read from the data directory,
--   which sessions cannot write), used only when it is also the value in effect
--   (current_setting), which confirms that it was parsed the way the server parses it and that no
--   later config file (postgresql.auto.conf, ...) overrides it;
-- * otherwise (no such file or line, a value with quotes or backslashes, a session override, an
--   override in another config file): the config files themselves, via pg_file_settings, which
--   re-parses them all (~0.25 ms, hence the fast path).
-- A session can at most force the slow path; the path used always comes from a config file.
create or replace function vault._key()
    returns text
    language plpgsql
    stable
    security definer
    set search_path = ''
as $$
declare
    conf text;
    line text;
    key_file text;
    key text;
begin
    -- A relative path is read from the data directory; NULL if the file does not exist.
    conf := pg_catalog.pg_read_file('supaqueue.conf', 0, 65536, true);
    if pg_catalog.octet_length(conf) < 65536 then  -- read whole (else: slow path)
        -- The last line that sets it wins, as in the server.
        select r.m[1] into line
        from pg_catalog.regexp_matches(
            conf, '^[ \t]*vault\.key_file(?:[ \t]*=[ \t]*|[ \t]+)(.*)$', 'gin')
            with ordinality as r(m, n)
        order by r.n desc
        limit 1;
    end if;
    -- A plain quoted value only (no escapes to interpret); anything else takes the slow path.
    key_file := pg_catalog.substring(line, '^''([^''\\]*)''[ \t]*(?:#.*)?$');
    if key_file is null
        or key_file is distinct from pg_catalog.current_setting('vault.key_file', true) then
        select f.setting into key_file
        from pg_catalog.pg_file_settings f
        where f.name = 'vault.key_file' and f.error is null
        order by f.seqno desc
        limit 1;
    end if;
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
            -- s2k-mode=1 (salted, not iterated): the key is a random 256-bit file key, so iterating
            -- the key derivation (the default, s2k-mode=3) only costs time. Decryption reads the
            -- mode from each message, so ciphertexts written with mode 3 still decrypt.
            'cipher-algo=aes256, s2k-mode=1'),
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
