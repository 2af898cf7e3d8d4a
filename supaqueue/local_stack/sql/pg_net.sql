-- Stand-in for the pg_net 0.20 extension: the same schema, tables, signatures and grants, so SQL
-- written for Supabase runs unchanged. Requests are sent by local_stack/net_sender.py.
-- Idempotent: safe to run again on every bootstrap.

create schema if not exists net;

-- As upstream: a domain over text, not an enum, so comparisons with plain text keep working.
do $$
begin
    if not exists (
        select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname = 'net' and t.typname = 'http_method'
    ) then
        create domain net.http_method as text
            check (value ilike 'get' or value ilike 'post' or value ilike 'delete');
    end if;
end
$$;

-- Pending requests; the sender deletes them in batches. UNLOGGED like upstream: lost on a crash.
create unlogged table if not exists net.http_request_queue (
    id bigserial,
    method net.http_method not null,
    url text not null,
    headers jsonb not null,
    body bytea,
    timeout_milliseconds int not null
);

create unlogged table if not exists net._http_response (
    id bigint,
    status_code integer,
    content_type text,
    headers jsonb,
    content text,
    timed_out bool,
    error_msg text,
    created timestamptz not null default now()
);

create index if not exists _http_response_created_idx on net._http_response (created);

-- Percent-encodes everything but RFC 3986 unreserved characters, byte by byte (UTF-8).
create or replace function net._urlencode_string(string varchar)
    returns text
    language sql
    immutable
    strict
as $$
    select coalesce(string_agg(
        case
            when b between 48 and 57 or b between 65 and 90 or b between 97 and 122
                 or b in (45, 46, 95, 126)
            then chr(b)
            else '%' || upper(lpad(to_hex(b), 2, '0'))
        end, '' order by i), '')
    from (
        select i, get_byte(raw, i) as b
        from (select convert_to(string, 'UTF8') as raw) s,
             generate_series(0, length(convert_to(string, 'UTF8')) - 1) as i
    ) bytes
$$;

-- The real one appends the params with curl's URL API, which writes the escapes of what it
-- appends in lower case (`%c3%a9`; seen on pg_net 0.20.4 with libcurl 7.88); the URL given is kept.
create or replace function net._encode_url_with_params_array(url text, params_array text[])
    returns text
    language sql
    immutable
    strict
as $$
    select case
        when cardinality(params_array) = 0 then url
        else url || case when position('?' in url) > 0 then '&' else '?' end || (
            select string_agg(
                case when m[1] ~ '^%[0-9A-F]{2}$' then lower(m[1]) else m[1] end, '' order by n)
            from regexp_matches(array_to_string(params_array, '&'), '%[0-9A-Fa-f]{2}|[^%]+|%', 'g')
                with ordinality as parts(m, n)
        )
    end
$$;

-- Upstream registers a commit callback that wakes its worker. NOTIFY has the same semantics:
-- delivered only when the transaction commits, dropped on rollback.
create or replace function net.wake()
    returns void
    language sql
as $$
    select pg_notify('pg_net_wake', '')
$$;

-- The body every request function shares: encode params into the URL, queue the row, wake the sender.
create or replace function net._queue_request(
    method text, url text, params jsonb, headers jsonb, body bytea, timeout_milliseconds integer
)
    returns bigint
    language plpgsql
    set search_path = net
as $$
declare
    request_id bigint;
    params_array text[];
begin
    select coalesce(array_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value)), '{}')
    into params_array
    from jsonb_each_text(params);

    insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
    values (method, net._encode_url_with_params_array(url, params_array), headers, body,
            timeout_milliseconds)
    returning id into request_id;

    perform net.wake();
    return request_id;
end
$$;
-- Only the request functions (running as the owner) call it; callers go through them.
revoke execute on function net._queue_request(text, text, jsonb, jsonb, bytea, integer) from public;

create or replace function net.http_get(
    url text,
    params jsonb default '{}'::jsonb,
    headers jsonb default '{}'::jsonb,
    timeout_milliseconds integer default 5000
)
    returns bigint
    language plpgsql
    security definer
    set search_path = net
as $$
begin
    return net._queue_request('GET', url, params, headers, null, timeout_milliseconds);
end
$$;

create or replace function net.http_post(
    url text,
    body jsonb default '{}'::jsonb,
    params jsonb default '{}'::jsonb,
    headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
    timeout_milliseconds integer default 5000
)
    returns bigint
    language plpgsql
    security definer
    set search_path = net
as $$
declare
    content_type text;
begin
    select header_value into content_type
    from jsonb_each_text(coalesce(headers, '{}'::jsonb)) r(header_name, header_value)
    where lower(header_name) = 'content-type'
    limit 1;

    -- Headers given without a Content-Type get the JSON one added, as upstream does.
    if content_type is null then
        headers := headers || '{"Content-Type": "application/json"}'::jsonb;
    end if;

    if content_type <> 'application/json' then
        raise exception 'Content-Type header must be "application/json"';
    end if;

    return net._queue_request(
        'POST', url, params, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds);
end
$$;

create or replace function net.http_delete(
    url text,
    params jsonb default '{}'::jsonb,
    headers jsonb default '{}'::jsonb,
    timeout_milliseconds integer default 5000,
    body jsonb default null
)
    returns bigint
    language plpgsql
    security definer
    set search_path = net
as $$
begin
    return net._queue_request(
        'DELETE', url, params, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds);
end
$$;

-- Reading a response back, as pg_net 0.20 still ships it (sql/pg_net--0.7--0.7.1.sql and later:
-- net.http_collect_response is the deprecated public wrapper of net._http_collect_response).
do $$
begin
    if to_regtype('net.request_status') is null then
        create type net.request_status as enum ('PENDING', 'SUCCESS', 'ERROR');
    end if;
    if to_regtype('net.http_response') is null then
        create type net.http_response as (status_code integer, headers jsonb, body text);
    end if;
    if to_regtype('net.http_response_result') is null then
        create type net.http_response_result as (
            status net.request_status, message text, response net.http_response);
    end if;
end
$$;

-- Blocks until the response of request_id is stored (as upstream: polls every 50 ms).
create or replace function net._await_response(request_id bigint)
    returns bool
    volatile
    parallel unsafe
    language plpgsql
as $$
declare
    rec net._http_response;
begin
    while rec is null loop
        select * into rec from net._http_response r where r.id = request_id;
        if rec is null then
            perform pg_sleep(0.05);
        end if;
    end loop;
    return true;
end
$$;

create or replace function net._http_collect_response(request_id bigint, async bool default true)
    returns net.http_response_result
    volatile
    parallel unsafe
    language plpgsql
as $$
declare
    rec net._http_response;
begin
    if not async then
        perform net._await_response(request_id);
    end if;
    select * into rec from net._http_response r where r.id = request_id;
    if rec is null or rec.error_msg is not null then
        -- still pending, unknown, or failed: upstream cannot tell the first two apart either
        return ('ERROR', coalesce(rec.error_msg, 'request matching request_id not found'), null)
            ::net.http_response_result;
    end if;
    return ('SUCCESS', 'ok', (rec.status_code, rec.headers, rec.content)::net.http_response)
        ::net.http_response_result;
end
$$;

create or replace function net.http_collect_response(request_id bigint, async bool default true)
    returns net.http_response_result
    volatile
    parallel unsafe
    language plpgsql
    security definer
as $$
begin
    raise notice 'The net.http_collect_response function is deprecated.';
    -- Upstream's body, word for word (pg_net 0.14 to 0.20.5): a SELECT with no destination, so a
    -- call always fails with "query has no destination for result data". Kept so code that
    -- works here works on Supabase; net._http_collect_response is the one that answers.
    select net._http_collect_response(request_id, async);
end
$$;

-- On Supabase every role may call the request functions; the tables stay private to their owner.
grant usage on schema net to public;
grant execute on function
    net.http_get(text, jsonb, jsonb, integer),
    net.http_post(text, jsonb, jsonb, jsonb, integer),
    net.http_delete(text, jsonb, jsonb, integer, jsonb)
    to public;
grant all on schema net to postgres;
grant all on all tables in schema net to postgres;
grant select on net._http_response to service_role;
