"""Type token → the provider logic serving it, and the dynamic-provider types they replace.

Each kind's logic is the `ResourceProvider` class beside its resource in `supaqueue.providers`
(the class Pulumi's dynamic providers ran until 0.1.0); the plugin makes one of each, on first
use, and calls its check/diff/create/read/update/delete exactly as the dynamic provider server
did (server.py).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from supaqueue.provider.schema import kinds, token

# kind → "module:class" (imported on first use: a plugin serving a queue needs no Management API
# client imported, and the schema test lists every kind without importing psycopg).
PROVIDERS: dict[str, str] = {
    "DataApiSchema": "supaqueue.providers.data_api:DataApiSchemaProvider",
    "DestroyGuard": "supaqueue.providers.destroy_guard:DestroyGuardProvider",
    "EdgeFunction": "supaqueue.providers.edge_function:EdgeFunctionProvider",
    "ExternalInstallation": (
        "supaqueue.providers.external_installation:ExternalInstallationProvider"
    ),
    "FunctionSecret": "supaqueue.providers.function_secret:FunctionSecretProvider",
    "Migrations": "supaqueue.providers.migrations:MigrationsProvider",
    "OwnershipGate": "supaqueue.providers.ownership_gate:OwnershipGateProvider",
    "Preflight": "supaqueue.providers.preflight:PreflightProvider",
    "Queue": "supaqueue.providers.queue.provider:QueueProvider",
    "Schedule": "supaqueue.providers.schedule.provider:ScheduleProvider",
    "Settings": "supaqueue.providers.settings:SettingsProvider",
    "StackIdentity": "supaqueue.providers.stack_identity:StackIdentityProvider",
    "Trigger": "supaqueue.providers.trigger.provider:TriggerProvider",
    "VaultSecret": "supaqueue.providers.vault_secret:VaultSecretProvider",
}

# What each resource was until 0.1.0 (`pulumi.dynamic.Resource` with module "supaqueue"): same
# name, same parent, only the type differs. An alias from the old type keeps a stack's resources
# (docs/architecture.md, "Resource provider").
DYNAMIC_TYPE_PREFIX = "pulumi-python:dynamic/supaqueue:"
DYNAMIC_TYPES: dict[str, str] = {f"{DYNAMIC_TYPE_PREFIX}{kind}": token(kind) for kind in PROVIDERS}

_made: dict[str, Any] = {}
_lock = threading.Lock()


class UnknownTypeError(Exception):
    pass


def provider_for(type_token: str) -> Any:
    """The provider logic for `type_token` (one instance per kind and process)."""
    prefix = token("")
    kind = type_token.removeprefix(prefix)
    if not type_token.startswith(prefix) or kind not in PROVIDERS:
        known = ", ".join(token(k) for k in kinds())
        raise UnknownTypeError(
            f"the supaqueue provider has no resource type {type_token!r} (it serves {known}); "
            "is the program's supaqueue package newer than this plugin? Reinstall both together"
        )
    with _lock:
        if kind not in _made:
            module, _, name = PROVIDERS[kind].partition(":")
            _made[kind] = getattr(importlib.import_module(module), name)()
        return _made[kind]
