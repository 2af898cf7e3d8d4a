-- Statements of the Vault secret provider. Writes go through vault.create_secret and
-- vault.update_secret: Supabase grants no INSERT/UPDATE on vault.secrets.

-- name: find_by_name
select id::text from vault.secrets where name = %(name)s;

-- name: create_secret
select vault.create_secret(%(secret)s, %(name)s, %(description)s)::text;

-- name: update_secret
select vault.update_secret(%(id)s::uuid, %(secret)s, %(name)s, %(description)s);

-- name: read_secret
select id::text, name, description, decrypted_secret
from vault.decrypted_secrets where id = %(id)s::uuid;

-- name: delete_by_name
delete from vault.secrets where name = %(name)s;
