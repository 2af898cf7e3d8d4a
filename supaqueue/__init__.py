"""supaqueue's Pulumi library: components, the provider plugin, clients and config validation."""

from __future__ import annotations

import importlib
from typing import Any

# `import supaqueue; supaqueue.Queue(...)`, the form the code `pulumi import` prints uses
# (the schema's Python package name is `supaqueue`). Loaded on first use: the console and the
# CLI import this package without wanting Pulumi.
_EXPORTS = {
    "Supaqueue": "supaqueue.installation",
    "SupaqueueArgs": "supaqueue.installation",
    "Queue": "supaqueue.providers.queue",
    "QueueArgs": "supaqueue.providers.queue",
    "Trigger": "supaqueue.providers.trigger",
    "TriggerArgs": "supaqueue.providers.trigger",
    "Schedule": "supaqueue.providers.schedule",
    "ScheduleArgs": "supaqueue.providers.schedule",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'supaqueue' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
