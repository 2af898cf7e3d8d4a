-- supaqueue 0022: the queue records whether its stack lets a removal discard its unfinished jobs
-- (`discard_unfinished_on_delete`, until now only in Pulumi's state). The checks that run before
-- anything changes (the destroy guard's delete, the preflight's check: components/providers/
-- plan.py) read it here, from the queue's last applied declaration, as supaqueue.drop_queue()
-- will be called with it. Written by the Pulumi queue provider; nothing in the engine reads it.
-- Existing queues start with false (refuse), the safe side; their next `pulumi up` writes the
-- stack's value.

alter table supaqueue.queue
  add column if not exists discard_unfinished_on_delete boolean not null default false;

comment on column supaqueue.queue.discard_unfinished_on_delete is
  'Set by the Pulumi stack that owns the queue: removing it may discard its unfinished jobs.';

select supaqueue.apply_privileges();
