"""Warnings from a provider, shown by `pulumi preview` and `up` like any provider's.

Pulumi's Python dynamic providers cannot log: `pulumi.log` needs the engine connection that only
the program has. But the engine starts every resource plugin, the dynamic provider's too, with
its own gRPC address as the last argument, and a plugin's diagnostics go to the engine's `Log`
call (pulumirpc.Engine, what the providers written in Go use). So a provider method sends a
warning there itself. Outside the plugin process (tests calling a provider directly) there is no
engine: `warn` returns False and the caller still has the text it returned.
"""

from __future__ import annotations

import re
import sys

import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

from supaqueue.providers.base import in_provider_process

_ADDRESS = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
LOG_TIMEOUT_SECONDS = 10


def engine_address() -> str | None:
    """The engine's address when this is the provider plugin (its last argument)."""
    if not in_provider_process() or len(sys.argv) < 2:
        return None
    last = sys.argv[-1]
    return last if _ADDRESS.fullmatch(last) else None


def warn(message: str) -> bool:
    """Show `message` as a warning (the engine prints it as `warning: <message>` when the
    provider sends it, at preview as at `up`); False when there is no engine to show it (not
    the plugin, or the engine did not answer). Without a resource URN: a provider is not told
    which resource it checks, and the engine prints these the same way with or without one."""
    address = engine_address()
    if address is None:
        return False
    try:
        with grpc.insecure_channel(address) as channel:
            engine_pb2_grpc.EngineStub(channel).Log(
                engine_pb2.LogRequest(severity=engine_pb2.WARNING, message=message),
                timeout=LOG_TIMEOUT_SECONDS,
            )
    except grpc.RpcError:
        return False
    return True
