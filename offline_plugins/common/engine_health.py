"""Notice when the engine that started a plugin has gone, so the plugin never outlives it.

Like the official plugins (rpcutil.Healthcheck): every interval, call the engine's gRPC health
service; UNIMPLEMENTED still proves the engine is there, any other failure means it is gone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import grpc

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
# The official plugins check every 5 minutes; a shorter interval ends orphans sooner.
DEFAULT_INTERVAL_SECONDS = 30.0
# Tests shorten the interval to see the watch work without waiting.
INTERVAL_ENV = "SUPAQUEUE_PLUGIN_HEALTHCHECK_SECONDS"


def check_interval() -> float:
    """The interval from the environment, or the default when unset or not a positive number."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL_SECONDS
    return value if value > 0 else DEFAULT_INTERVAL_SECONDS


def engine_alive(channel: grpc.Channel, timeout: float) -> bool:
    """One health check: an empty HealthCheckRequest is zero bytes on the wire."""
    check = channel.unary_unary(
        HEALTH_CHECK_METHOD,
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    try:
        check(b"", timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined,no-any-return]
    return True


def watch_engine(
    address: str,
    on_gone: Callable[[], None],
    stop: threading.Event,
    interval: float | None = None,
) -> threading.Thread:
    """Start a daemon thread calling `on_gone` once the engine at `address` stops answering."""
    period = interval if interval is not None else check_interval()

    def loop() -> None:
        with grpc.insecure_channel(address) as channel:
            while not stop.wait(period):
                if not engine_alive(channel, timeout=max(period, 5.0)):
                    on_gone()
                    return

    thread = threading.Thread(target=loop, name="engine-health", daemon=True)
    thread.start()
    return thread
