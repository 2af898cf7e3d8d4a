"""Serve a plugin's gRPC services on 127.0.0.1 and announce the port as the Pulumi CLI expects."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from types import FrameType

import grpc

from offline_plugins.common.engine_health import watch_engine

# The engine sends whole resource states in one message; the 4 MiB default is too small for some.
MAX_MESSAGE_BYTES = 400 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


# Go-style flags the CLI may pass with their value as the next argument (`-tracing URL`).
VALUE_FLAGS = frozenset(
    {
        "tracing",
        "root",
        "binary",
        "virtualenv",
        "use-executor",
        "typechecker",
        "toolchain",
        "runtime",
        "buildTarget",
    }
)


def engine_address(argv: Sequence[str]) -> str | None:
    """The engine address: the last argument that is neither a flag nor a flag's value.

    The CLI puts it last and may add flags before it (`-v=9`, `-tracing URL`, `-root=DIR`).
    """
    found = None
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg.startswith("-"):
            skip_value = "=" not in arg and arg.lstrip("-") in VALUE_FLAGS
            continue
        found = arg
    return found


def serve(
    register: Callable[[grpc.Server], None],
    *,
    workers: int = 8,
    engine: str | None = None,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Start the server, print its port as the first stdout line, serve until SIGINT/SIGTERM.

    With `engine`, also stop once that engine no longer answers (see engine_health).
    `on_stop` runs before the server stops, e.g. to end child processes.
    Returns the process exit code (0 on a signal: stopping is the normal end of a plugin).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS)
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        print("could not bind a port on 127.0.0.1", file=sys.stderr)
        return 1
    server.start()

    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The CLI reads exactly this line to learn where to connect.
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    # Waiting on the event (with a timeout) keeps the main thread able to run signal handlers.
    if engine:
        watch_engine(engine, stopping.set, stopping)
    while not stopping.wait(0.5):
        pass
    if on_stop is not None:
        on_stop()
    server.stop(grace=2).wait()
    return 0
