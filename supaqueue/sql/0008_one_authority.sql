-- supaqueue 0008: the queue's limits in one place (these constraints are the authority the
-- Pulumi spec and the Edge Function are tested against), one insert trigger for jobs and
-- workers, and the lease's never-written is_complete / is_successful columns dropped.

-- Queue limits. Added NOT VALID, then validated where every existing row complies: a queue made
-- under the old, looser rules is kept as it is (a NOTICE names the constraint), never refused
-- or changed by an upgrade; its next update must comply.
alter table supaqueue.queue
  drop constraint queue_edge_function_name_is_slug,
  drop constraint queue_max_attempts_positive,
  drop constraint queue_timeout_positive,
  drop constraint queue_rate_limit_positive;

alter table supaqueue.queue
  -- Supabase function slugs (Management API: ^[A-Za-z][A-Za-z0-9_-]*$), at most 63 characters;
  -- queue names follow the same rule so they read well in URLs, logs and cron job names.
  add constraint queue_name_is_slug
    check (name ~ '^[A-Za-z][A-Za-z0-9_-]{0,62}$') not valid,
  add constraint queue_edge_function_name_is_slug
    check (edge_function_name ~ '^[A-Za-z][A-Za-z0-9_-]{0,62}$') not valid,
  add constraint queue_max_attempts_range check (max_attempts between 1 and 100) not valid,
  -- The dispatcher's own wall clock is 400 s on paid plans (150 s on Free): a call may take at
  -- most 390 s so that 10 s remain to report its outcome (docs/architecture.md).
  add constraint queue_timeout_range
    check (timeout_ms between 1 and 390000 and lease_grace_ms >= 0) not valid,
  -- Above 2^31-1 calls/s the default burst (ceil(rate)) is no integer and the token refill
  -- (elapsed seconds * rate) could overflow double precision.
  add constraint queue_rate_limit_range
    check (rate_limit_per_second is null
           or (rate_limit_per_second > 0 and rate_limit_per_second <= 2147483647)) not valid;

do $$
declare
  _name text;
begin
  foreach _name in array array['queue_name_is_slug', 'queue_edge_function_name_is_slug',
                               'queue_max_attempts_range', 'queue_timeout_range',
                               'queue_rate_limit_range'] loop
    begin
      execute format('alter table supaqueue.queue validate constraint %I', _name);
    exception when check_violation then
      raise notice 'supaqueue: existing queues break the new rule %; they are kept as they are, '
        'and their next update must comply (see supaqueue.queue)', _name;
    end;
  end loop;
end
$$;

-- One trigger function for new jobs and new workers: either may let a queue dispatch.
create function supaqueue.tg__dispatch_after_insert() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  _queue uuid;
begin
  if tg_table_name = 'job' then
    -- Statement-level: a 100k-row INSERT dispatches once per queue, not once per row; a job that
    -- waits for dependencies gives no reason to dispatch.
    for _queue in
      select distinct n.queue from new_rows n where n.status = 'pending' and n.pending_dependencies = 0
    loop
      perform supaqueue.dispatch(_queue);
    end loop;
  else
    for _queue in select distinct n.queue from new_rows n loop
      perform supaqueue.dispatch(_queue);
    end loop;
  end if;
  return null;
end
$$;

drop trigger _500_dispatch_after_insert on supaqueue.job;
drop trigger _500_dispatch_after_insert on supaqueue.worker;
drop function supaqueue.tg__job_inserted();
drop function supaqueue.tg__worker_inserted();

create trigger _500_dispatch_after_insert
  after insert on supaqueue.job
  referencing new table as new_rows
  for each statement execute function supaqueue.tg__dispatch_after_insert();
create trigger _500_dispatch_after_insert
  after insert on supaqueue.worker
  referencing new table as new_rows
  for each statement execute function supaqueue.tg__dispatch_after_insert();

-- Never written: an attempt's outcome is recorded by end_current_job in job_attempt.
alter table supaqueue.current_job
  drop column is_complete,
  drop column is_successful;

select supaqueue.apply_privileges();
