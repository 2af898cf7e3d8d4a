-- Named queries of local_stack/net_sender.py (the pg_net background worker stand-in).
-- A query runs from its `-- name: …` line to the next one.

-- name: has_net_schema
select to_regclass('net.http_request_queue')

-- name: net_is_the_extension
-- The real pg_net sends with its own worker: a second sender beside it would race it for rows.
select exists (select 1 from pg_catalog.pg_extension where extname = 'pg_net')

-- name: conf_load_time
-- Changes when the server reloads its configuration: the sender then reads its settings again
-- (upstream re-reads them on SIGHUP).
select pg_catalog.pg_conf_load_time()

-- name: is_superuser
select pg_catalog.current_setting('is_superuser') = 'on'

-- name: settings_from_config
-- pg_net's settings are server settings (postgresql.conf / ALTER SYSTEM, then a reload): the real
-- extension refuses a per-database or per-role SET. A superuser session (as the real worker is)
-- reads the config files themselves, so such a SET, where one got in, changes nothing here either.
select
    coalesce((select f.setting from pg_catalog.pg_file_settings f
              where f.name = 'pg_net.batch_size' and f.error is null
              order by f.seqno desc limit 1), '200')::int as batch_size,
    coalesce((select f.setting from pg_catalog.pg_file_settings f
              where f.name = 'pg_net.ttl' and f.error is null
              order by f.seqno desc limit 1), '6 hours')::interval as ttl

-- name: settings_in_session
-- Without superuser, pg_file_settings is closed: the values the session has loaded (which only a
-- superuser could have overridden per database or role).
select
    coalesce(nullif(current_setting('pg_net.batch_size', true), ''), '200')::int as batch_size,
    coalesce(nullif(current_setting('pg_net.ttl', true), ''), '6 hours')::interval as ttl

-- name: take_batch
-- One statement (one round trip) for the whole start of an upstream iteration, in the transaction
-- that also stores the responses (a crash mid-batch loses nothing):
-- - purge, as upstream's delete_expired_responses: at most batch_size expired rows, oldest first
--   (upstream commits it in a transaction of its own; here it commits with the batch);
-- - take up to batch_size requests ORDER BY id;
-- both only while the settings the sender holds are still the server's (after a reload, nothing
-- is done and the sender reads them again). Always one row at least: the config load time and
-- how many responses were purged, then the taken request's columns (null when none was taken).
with expired as (
    select ctid
    from net._http_response
    where created < now() - %(ttl)s::interval
      and pg_catalog.pg_conf_load_time() = %(loaded_at)s
    order by created
    limit %(batch_size)s
), purged as (
    delete from net._http_response r
    using expired
    where r.ctid = expired.ctid
    returning 1
), batch as (
    select id
    from net.http_request_queue
    where pg_catalog.pg_conf_load_time() = %(loaded_at)s
    order by id
    limit %(batch_size)s
    for update skip locked
), taken as (
    delete from net.http_request_queue q
    using batch
    where q.id = batch.id
    returning q.id, q.method::text as method, q.url, q.headers, q.body, q.timeout_milliseconds
)
select pg_catalog.pg_conf_load_time(), (select count(*) from purged),
       t.id, t.method, t.url, t.headers, t.body, t.timeout_milliseconds
from (select) as one
left join taken t on true

-- name: insert_responses
-- The whole batch's responses in one statement: parallel arrays, one element per response.
insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
select *
from unnest(%(id)s::bigint[], %(status_code)s::int[], %(content_type)s::text[],
            %(headers)s::jsonb[], %(content)s::text[], %(timed_out)s::bool[], %(error_msg)s::text[])
