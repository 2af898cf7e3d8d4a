-- supaqueue functions/70_queues.sql: Queue management the Pulumi queue provider calls.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

-- Removes a queue with its workers, jobs and history. Refuses (SQLSTATE SQ001) while it holds
-- unfinished jobs, unless _discard_unfinished; discarded jobs' dependents elsewhere are cancelled.
-- Returns false when there is no such queue.
CREATE OR REPLACE FUNCTION supaqueue.drop_queue(_queue uuid, _discard_unfinished boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _name text;
  _unfinished bigint;
  _referrers text;
begin
  -- FOR UPDATE also blocks new jobs (their foreign-key check) until this transaction ends.
  select name into _name from supaqueue.queue where id = _queue for update;
  if not found then
    return false;
  end if;
  -- Named as another queue's dead-letter queue: refused before anything is discarded, in words
  -- (the foreign key would refuse the delete at the end, naming only its constraint).
  select string_agg(format('"%s"', q.name), ', ' order by q.name) into _referrers
    from supaqueue.queue q where q.dead_letter_queue = _queue and q.id <> _queue;
  if _referrers is not null then
    raise exception 'queue "%" is the dead-letter queue of queue(s) %: it cannot be dropped while they name it',
                    _name, _referrers
      using errcode = '23503', constraint = 'queue_dead_letter_queue_fkey',
            hint = 'Remove dead_letter_queue from those queues first (in Pulumi: delete it from '
                   'their declaration and run pulumi up), then drop this one.';
  end if;
  _unfinished := supaqueue.unfinished_job_count(_queue);
  if _unfinished > 0 and not coalesce(_discard_unfinished, false) then
    raise exception 'queue "%" (%) still has % unfinished job(s)', _name, _queue, _unfinished
      using errcode = 'SQ001',
            hint = 'Let them finish, or drop the queue with _discard_unfinished => true '
                   '(in Pulumi: discard_unfinished_on_delete: true) to discard them.';
  end if;
  -- The leases first, then the jobs: the order of a report (its lease, then its job), so that a
  -- report still ending one of them is waited for instead of deadlocking with this drop.
  -- (From the leases' side: they are few, the queue's finished jobs may be many.)
  perform 1 from supaqueue.current_job c join supaqueue.job j on j.id = c.job
   where j.queue = _queue
     for update of c;
  -- Wait for enqueues that hold one of these jobs FOR SHARE (a new dependent elsewhere), so that
  -- the pass below sees their edges; later ones find the jobs gone and fail.
  perform 1 from supaqueue.job where queue = _queue and status in ('pending', 'in_progress')
    for update;
  -- One pass over the dependency graph for all discarded jobs at once.
  with recursive dependents (job) as (
    select d.job from supaqueue.job_dependency d
      join supaqueue.job j on j.id = d.depends_on
     where j.queue = _queue and j.status in ('pending', 'in_progress')
    union
    select d.job from supaqueue.job_dependency d join dependents x on d.depends_on = x.job
  )
  update supaqueue.job j
    set status = 'cancelled', finished_at = now(), updated_at = now(),
        last_error = format('cancelled: a job it depends on was discarded with queue %s', _name)
    from dependents x
    where j.id = x.job and j.status = 'pending' and j.queue <> _queue;
  delete from supaqueue.current_job where job in (select id from supaqueue.job where queue = _queue);
  delete from supaqueue.job where queue = _queue;
  delete from supaqueue.queue where id = _queue;
  return true;
end
$$;

-- Sets the number of workers of a queue. Free workers go at once; busy ones finish their job
-- first (marked retiring), so no call in flight is cut off. Returns the new count.
CREATE OR REPLACE FUNCTION supaqueue.set_worker_count(_queue uuid, _count integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  _active integer;
  _n integer;
begin
  if _count is null or _count < 0 then
    raise exception 'supaqueue.set_worker_count: worker count must be 0 or more, got %', _count
      using errcode = '22023';
  end if;
  -- serialises concurrent resizes of one queue
  perform 1 from supaqueue.queue where id = _queue for no key update;
  if not found then
    raise exception 'supaqueue.set_worker_count: there is no queue with id %', _queue
      using errcode = '23503';
  end if;
  select count(*) into _active from supaqueue.worker where queue = _queue and not retiring;

  if _count > _active then
    update supaqueue.worker set retiring = false
      where id in (select id from supaqueue.worker where queue = _queue and retiring
                   limit _count - _active);
    get diagnostics _n = row_count;
    insert into supaqueue.worker (queue)
      select _queue from generate_series(1, _count - _active - _n);
  elsif _count < _active then
    delete from supaqueue.worker
      where id in (select id from supaqueue.worker
                    where queue = _queue and not locked and not retiring
                    limit _active - _count for update skip locked);
    get diagnostics _n = row_count;
    if _active - _count - _n > 0 then
      update supaqueue.worker set retiring = true
        where id in (select id from supaqueue.worker where queue = _queue and not retiring
                     order by locked desc limit _active - _count - _n for update);
      -- a worker that was free after all (its dispatcher rolled back) can go now
      delete from supaqueue.worker where queue = _queue and retiring and not locked;
    end if;
  end if;
  return _count;
end
$$;

CREATE OR REPLACE FUNCTION supaqueue.unfinished_job_count(_queue uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select count(*) from supaqueue.job
   where queue = _queue and status in ('pending', 'in_progress')
$$;
