-- A queue, a table trigger and a schedule made in SQL, before any stack managed them.
insert into supaqueue.queue (name, edge_function_name, max_attempts, rate_limit_per_second)
values ('legacy', 'demo-target', 5, 3.5);
select supaqueue.set_worker_count(id, 2) from supaqueue.queue where name = 'legacy';
select supaqueue.set_table_trigger(null, 'legacy-orders',
  (select id from supaqueue.queue where name = 'legacy'), 'public', 'legacy_orders',
  array['INSERT', 'UPDATE'], 'NEW.status = ''paid''');
insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)
select 'legacy-nightly', id, '30 2 * * *', 'Europe/Paris', '{"report": "daily"}',
       (supaqueue.cron_next_runs('30 2 * * *', 'Europe/Paris', 1))[1]
from supaqueue.queue where name = 'legacy';
