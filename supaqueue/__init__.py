"""supaqueue: queues that call Supabase Edge Functions under control, installed with Pulumi.

In a Pulumi program: `from supaqueue import Supaqueue` (the installation and its queues, triggers
and schedules), `Queue`, `Trigger`, `Schedule` and their typed args; `load_stack_config` and
`args_from_config` read the `supaqueue:*` stack config. The package also holds the `supaqueue`
command (`supaqueue.cli`), the operator console (`supaqueue.console`, extra `console`) and the
local dev stack (`supaqueue.local_stack`, extra `local-stack`).

The names are loaded on first use: the command and the local stack's processes import this
package too, and need none of Pulumi.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supaqueue.config import load_stack_config
    from supaqueue.installation import Supaqueue, SupaqueueArgs, args_from_config
    from supaqueue.providers.queue import Queue, QueueArgs
    from supaqueue.providers.schedule import Schedule, ScheduleArgs
    from supaqueue.providers.trigger import Trigger, TriggerArgs

# name -> the module that defines it (one place each)
_EXPORTS = {
    "Supaqueue": "supaqueue.installation",
    "SupaqueueArgs": "supaqueue.installation",
    "args_from_config": "supaqueue.installation",
    "load_stack_config": "supaqueue.config",
    "Queue": "supaqueue.providers.queue",
    "QueueArgs": "supaqueue.providers.queue",
    "Trigger": "supaqueue.providers.trigger",
    "TriggerArgs": "supaqueue.providers.trigger",
    "Schedule": "supaqueue.providers.schedule",
    "ScheduleArgs": "supaqueue.providers.schedule",
}

__all__ = [
    "Queue",
    "QueueArgs",
    "Schedule",
    "ScheduleArgs",
    "Supaqueue",
    "SupaqueueArgs",
    "Trigger",
    "TriggerArgs",
    "args_from_config",
    "load_stack_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'supaqueue' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
