"""A queue, in one place: `spec` (what a declaration may say, its limits and defaults),
`resource` (`Queue`, `QueueArgs`), `provider` (`QueueProvider`, CRUD through SQL).

`QueueProvider` is re-exported here because stacks written before this package existed pickled
it as `supaqueue.providers.queue.QueueProvider`: their state must still load (refresh, destroy).
"""

from supaqueue.providers.queue.provider import QueueProvider
from supaqueue.providers.queue.resource import Queue, QueueArgs
from supaqueue.providers.queue.spec import queue_problems

__all__ = ["Queue", "QueueArgs", "QueueProvider", "queue_problems"]
