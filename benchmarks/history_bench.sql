-- Bench-only helpers of benchmarks/history_bench.py (installed into the throw-away bench
-- database, schema supaqueue_bench; never part of supaqueue).
create schema if not exists supaqueue_bench;

-- Completes up to _jobs jobs of _queue as a chaining dispatcher with a no-op target would: each
-- report also claims the worker's next job (chain never exhausted, so pg_net is not involved);
-- one transaction per job. A lease found unclaimed (the chain ended on an empty queue) is
-- claimed first.
create or replace procedure supaqueue_bench.drive(_queue uuid, _jobs integer, inout _done integer default 0)
language plpgsql as $$
declare
  _cj uuid;
  _r jsonb;
begin
  _done := 0;
  while _done < _jobs loop
    if _cj is null then
      select c.id into _cj from supaqueue.current_job c
        join supaqueue.worker w on w.id = c.worker where w.queue = _queue limit 1;
      exit when _cj is null;
      perform supaqueue.claim_current_job(_cj);
    end if;
    _r := supaqueue.report_and_claim(_cj, true, true, 200, 'ok', null, null, '{}'::jsonb, 1, 1, 0);
    commit;
    _done := _done + 1;
    _cj := (_r -> 'next' -> 'current_job' ->> 'id')::uuid;
  end loop;
end
$$;

-- What supaqueue.tick() did before 0029 after its dispatches, for the comparison: up to 5,000
-- finished jobs per queue and tick, in the tick's transaction.
create or replace function supaqueue_bench.legacy_prune() returns integer
language plpgsql as $$
declare
  _q record;
  _n integer;
  _pruned integer := 0;
begin
  for _q in select id, retention_seconds from supaqueue.queue where retention_seconds is not null
  loop
    delete from supaqueue.job dead
      where dead.finished_at is not null
        and dead.id in (
        select j.id from supaqueue.job j
          where j.queue = _q.id and j.finished_at is not null
            and j.finished_at < now() - make_interval(secs => _q.retention_seconds)
            and not exists (
              select 1 from supaqueue.job_dependency d
                join supaqueue.job dj on dj.id = d.job
               where d.depends_on = j.id and dj.status in ('pending', 'in_progress'))
          order by j.finished_at
          limit 5000);
    get diagnostics _n = row_count;
    _pruned := _pruned + _n;
  end loop;
  return _pruned;
end
$$;
