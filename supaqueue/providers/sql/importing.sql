-- Statements of supaqueue/provider/importing.py: `pulumi import` of a queue, trigger or schedule
-- by name.

-- name: stack_ids_of
-- The ids a stack named so is recorded with: the installation's owner, or the owner of queues.
select stack_id from supaqueue.installation_owner
 where stack = %(stack)s and stack_id is not null
union
select owner_stack_id from supaqueue.queue
 where owner_stack = %(stack)s and owner_stack_id is not null;

-- name: queue_for_import
select id::text, owner_stack, owner_stack_id, default_headers
from supaqueue.queue where name = %(name)s for update;

-- name: claim_queue
update supaqueue.queue set owner_stack = %(stack)s, owner_stack_id = %(stack_id)s
 where id = %(id)s::uuid;

-- name: queue_owner_of
select name, owner_stack, owner_stack_id from supaqueue.queue where id = %(id)s::uuid;
