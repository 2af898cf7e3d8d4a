-- supaqueue functions/30_enqueue.sql: Enqueueing: by queue id or name, one job or a batch; a job's
-- status.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- The queue whose name is `_queue` (exact, case-sensitive), else the queue whose id it spells.
-- KEY SHARE: a drop_queue waits for this transaction, then sees its jobs (SQ001), so a job is
-- never inserted into a queue being removed.
CREATE OR REPLACE FUNCTION supaqueue._queue_by_name(_queue text, _caller text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  _id uuid;
  _like text;
  _names text;
begin
  if _queue is null then
    raise exception '%: _queue must not be null (give the queue''s name)', _caller
      using errcode = '22004';
  end if;
  select q.id into _id from supaqueue.queue q where q.name = _queue for key share;
  if found then
    return _id;
  end if;
  if _queue ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select q.id into _id from supaqueue.queue q where q.id = _queue::uuid for key share;
    if found then
      return _id;
    end if;
    -- as the id form says it (23503), so callers that passed ids as text see no change
    raise exception '%: there is no queue with id %', _caller, _queue using errcode = '23503';
  end if;
  select min(q.name) into _like from supaqueue.queue q where lower(q.name) = lower(_queue);
  select string_agg(n, ', ' order by n) into _names
    from (select q.name as n from supaqueue.queue q order by q.name limit 20) s;
  raise exception '%: there is no queue named %', _caller, quote_literal(_queue)
    using errcode = 'SQ020',
          hint = case
            when _like is not null then format('Names are case-sensitive: did you mean %L?', _like)
            when _names is null then 'There are no queues: declare one in the stack and run pulumi up.'
            else format('The queues are: %s%s. A queue removed from the stack is gone with its name.',
                        _names,
                        case when (select count(*) from supaqueue.queue) > 20 then ', …' else '' end)
          end;
end
$_$;

-- One job into the queue named `_queue`; the options are the id form's, and it returns the job id
-- (for a `_dedup_key` held by an unfinished job, that job's id).
CREATE OR REPLACE FUNCTION supaqueue.enqueue(_queue text, _payload jsonb DEFAULT '{}'::jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_key text DEFAULT NULL::text, _depends_on uuid[] DEFAULT NULL::uuid[], _key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return supaqueue.enqueue(supaqueue._queue_by_name(_queue, 'supaqueue.enqueue'), _payload,
                           _run_at, _priority, _dedup_key, _depends_on, _key);
end
$$;

-- One job into the queue named `_queue`; the options are the id form's, and it returns the job id
-- (for a `_dedup_key` held by an unfinished job, that job's id).
CREATE OR REPLACE FUNCTION supaqueue.enqueue(_queue uuid, _payload jsonb DEFAULT '{}'::jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_key text DEFAULT NULL::text, _depends_on uuid[] DEFAULT NULL::uuid[], _key text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _deps uuid[];
  _found integer := 0;
  _waiting integer := 0;
  _doomed boolean := false;
  _id uuid;
  _left integer;
begin
  if _queue is null then
    raise exception 'supaqueue.enqueue: _queue must not be null' using errcode = '22004';
  end if;
  if not exists (select 1 from supaqueue.queue where id = _queue) then
    raise exception 'supaqueue.enqueue: there is no queue with id %', _queue using errcode = '23503';
  end if;

  _deps := array(select distinct d from unnest(coalesce(_depends_on, '{}'::uuid[])) d
                 where d is not null);
  if cardinality(_deps) > 0 then
    -- FOR SHARE: a dependency cannot finish between this count and the edges below.
    select count(*), count(*) filter (where s.status <> 'success'),
           coalesce(bool_or(s.status in ('failed', 'cancelled')), false)
      into _found, _waiting, _doomed
      from (select j.status from supaqueue.job j where j.id = any (_deps) for share) s;
    if _found < cardinality(_deps) then
      raise exception 'supaqueue.enqueue: % of the jobs in _depends_on do not exist',
        cardinality(_deps) - _found using errcode = '23503';
    end if;
  end if;

  loop
    -- One extra pending dependency holds the job back until its edges exist (see below).
    insert into supaqueue.job (queue, payload, run_at, priority, dedup_key, pending_dependencies,
                               status, finished_at, last_error, key)
      values (_queue, coalesce(_payload, '{}'::jsonb), coalesce(_run_at, now()),
              coalesce(_priority, 0), _dedup_key,
              case when cardinality(_deps) > 0 and not _doomed then _waiting + 1 else 0 end,
              case when _doomed then 'cancelled'::supaqueue.job_status else 'pending' end,
              case when _doomed then now() end,
              case when _doomed then 'a job it depends on failed or was cancelled' end,
              _key)
      on conflict (queue, dedup_key)
        where dedup_key is not null and status in ('pending', 'in_progress')
        do nothing
      returning id into _id;
    exit when _id is not null;
    select id into _id from supaqueue.job
      where queue = _queue and dedup_key = _dedup_key and status in ('pending', 'in_progress');
    if found then
      return _id;
    end if;
    -- the holder of the key finished in between: try again
  end loop;

  if cardinality(_deps) > 0 then
    insert into supaqueue.job_dependency (job, depends_on) select _id, d from unnest(_deps) d;
    if not _doomed then
      update supaqueue.job set pending_dependencies = pending_dependencies - 1
        where id = _id returning pending_dependencies into _left;
      if _left = 0 then
        perform supaqueue.dispatch(_queue);
      end if;
    end if;
  end if;
  return _id;
end
$$;

-- Many jobs into the queue named `_queue` in one statement: `_payloads` is a JSON array, one job
-- per element, and the ids come back in the same order. One INSERT … SELECT, so the statement
-- triggers (payload limit, dispatch) fire once for the batch, not once per job.
-- `_dedup_keys`, when given, has one key (or null) per payload; a key already held by an
-- unfinished job (or by an earlier element of the batch) gives that job's id, as in `enqueue`.
-- `_keys`, when given, has one key (or null) per payload, as `_dedup_keys`.
-- `_run_at`, `_priority` and `_depends_on` apply to every job of the batch.
CREATE OR REPLACE FUNCTION supaqueue.enqueue_batch(_queue text, _payloads jsonb, _run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, _priority integer DEFAULT 0, _dedup_keys text[] DEFAULT NULL::text[], _depends_on uuid[] DEFAULT NULL::uuid[], _keys text[] DEFAULT NULL::text[]) RETURNS uuid[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _q uuid := supaqueue._queue_by_name(_queue, 'supaqueue.enqueue_batch');
  _n integer;
  _ids uuid[];
  _deps uuid[];
  _found integer := 0;
  _waiting integer := 0;
  _doomed boolean := false;
  _new uuid[];
  _out uuid[];
  _ord integer;
begin
  if _payloads is null or jsonb_typeof(_payloads) <> 'array' then
    raise exception 'supaqueue.enqueue_batch: _payloads must be a JSON array of payloads (one per '
                    'job), not %', coalesce(jsonb_typeof(_payloads), 'null')
      using errcode = '22023';
  end if;
  _n := jsonb_array_length(_payloads);
  if _dedup_keys is not null
     and (array_ndims(_dedup_keys) > 1 or coalesce(array_lower(_dedup_keys, 1), 1) <> 1
          or cardinality(_dedup_keys) <> _n) then
    raise exception 'supaqueue.enqueue_batch: _dedup_keys has % keys for % payloads',
      cardinality(_dedup_keys), _n
      using errcode = '22023', hint = 'Give one key per payload, null where a job has none.';
  end if;
  if _keys is not null
     and (array_ndims(_keys) > 1 or coalesce(array_lower(_keys, 1), 1) <> 1
          or cardinality(_keys) <> _n) then
    raise exception 'supaqueue.enqueue_batch: _keys has % keys for % payloads',
      cardinality(_keys), _n
      using errcode = '22023', hint = 'Give one key per payload, null where a job has none.';
  end if;
  if _n = 0 then
    return '{}'::uuid[];
  end if;

  -- as in enqueue(uuid, …)
  _deps := array(select distinct d from unnest(coalesce(_depends_on, '{}'::uuid[])) d
                 where d is not null);
  if cardinality(_deps) > 0 then
    select count(*), count(*) filter (where s.status <> 'success'),
           coalesce(bool_or(s.status in ('failed', 'cancelled')), false)
      into _found, _waiting, _doomed
      from (select j.status from supaqueue.job j where j.id = any (_deps) for share) s;
    if _found < cardinality(_deps) then
      raise exception 'supaqueue.enqueue_batch: % of the jobs in _depends_on do not exist',
        cardinality(_deps) - _found using errcode = '23503';
    end if;
  end if;

  -- The ids are chosen first so that each job's id is known by its position.
  _ids := array(select gen_random_uuid() from generate_series(1, _n));
  with ins as (
    insert into supaqueue.job (id, queue, payload, run_at, priority, dedup_key,
                               pending_dependencies, status, finished_at, last_error, key)
      select u.id, _q, e.value, coalesce(_run_at, now()), coalesce(_priority, 0),
             _dedup_keys[e.ord::integer],
             case when cardinality(_deps) > 0 and not _doomed then _waiting + 1 else 0 end,
             case when _doomed then 'cancelled'::supaqueue.job_status else 'pending' end,
             case when _doomed then now() end,
             case when _doomed then 'a job it depends on failed or was cancelled' end,
             _keys[e.ord::integer]
        from jsonb_array_elements(_payloads) with ordinality e(value, ord)
        join unnest(_ids) with ordinality u(id, ord) on u.ord = e.ord
       order by e.ord
      on conflict (queue, dedup_key)
        where dedup_key is not null and status in ('pending', 'in_progress')
        do nothing
      returning id)
  select coalesce(array_agg(id), '{}'::uuid[]) into _new from ins;

  if cardinality(_new) = _n then
    _out := _ids;
  else
    -- Some keys were held: each position gets the job inserted, else the unfinished job holding
    -- its key (one inserted by an earlier element of the batch is visible to this statement).
    select array_agg(coalesce(i.id, h.id) order by u.ord) into _out
      from unnest(_ids) with ordinality u(id, ord)
      left join unnest(_new) i(id) on i.id = u.id
      left join lateral (
        select x.id from supaqueue.job x
         where i.id is null and x.queue = _q and x.dedup_key = _dedup_keys[u.ord::integer]
           and x.status in ('pending', 'in_progress')
         limit 1) h on true;
  end if;

  if cardinality(_deps) > 0 and cardinality(_new) > 0 then
    insert into supaqueue.job_dependency (job, depends_on)
      select n, d from unnest(_new) n cross join unnest(_deps) d;
    if not _doomed then
      update supaqueue.job set pending_dependencies = pending_dependencies - 1
        where id = any (_new);
      if _waiting = 0 then
        perform supaqueue.dispatch(_q);
      end if;
    end if;
  end if;

  -- A key's holder that finished between the insert and the read above (rare): that position goes
  -- through enqueue(uuid, …), which retries until it inserts or finds the holder.
  for _ord in select o from generate_subscripts(_out, 1) o where _out[o] is null loop
    _out[_ord] := supaqueue.enqueue(_q, _payloads -> (_ord - 1), _run_at, _priority,
                                    _dedup_keys[_ord], _depends_on, _keys[_ord]);
  end loop;
  return _out;
end
$$;

-- A job's state for a caller waiting on it: status, attempts, the result (as stored: the target's
-- JSON body, numbers exact) and the last error. SQ005 when no job has this id (never enqueued, or
-- removed after its queue's retention).
CREATE OR REPLACE FUNCTION supaqueue.get_job(_id uuid, OUT id uuid, OUT queue text, OUT status text, OUT attempts integer, OUT max_attempts integer, OUT result jsonb, OUT last_status_code integer, OUT last_error text, OUT run_at timestamp with time zone, OUT created_at timestamp with time zone, OUT updated_at timestamp with time zone, OUT finished_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select j.id, q.name, j.status::text, j.attempts, q.max_attempts, j.result, j.last_status_code,
         j.last_error, j.run_at, j.created_at, j.updated_at, j.finished_at
    into id, queue, status, attempts, max_attempts, result, last_status_code, last_error, run_at,
         created_at, updated_at, finished_at
    from supaqueue.job j join supaqueue.queue q on q.id = j.queue
   where j.id = _id;
  if not found then
    raise exception 'supaqueue.get_job: there is no job with id %', coalesce(_id::text, 'null')
      using errcode = 'SQ005',
            hint = 'A finished job is removed after its queue''s retention_seconds.';
  end if;
end
$$;
