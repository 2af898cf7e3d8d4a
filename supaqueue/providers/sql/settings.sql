-- Statements of the settings provider: the rows of supaqueue.settings the program owns.

-- name: upsert_setting
insert into supaqueue.settings (key, value) values (%(key)s, %(value)s)
on conflict (key) do update set value = excluded.value;

-- name: delete_setting
delete from supaqueue.settings where key = %(key)s;

-- name: read_settings
select key, value from supaqueue.settings where key = any(%(keys)s::text[]);

-- name: settings_table_exists
select to_regclass('supaqueue.settings') is not null;
