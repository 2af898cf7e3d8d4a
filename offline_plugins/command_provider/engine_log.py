"""Show a running command's output lines in the CLI, as upstream does with status messages."""

from __future__ import annotations

import threading

import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

LOG_SECONDS = 2.0


class EngineLog:
    """Best effort: output capture never depends on the engine taking these messages."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._lock = threading.Lock()
        self._stub: engine_pb2_grpc.EngineStub | None = None
        self._broken = address is None

    def status(self, urn: str, message: str) -> None:
        """An ephemeral INFO line attached to the resource (shown while it is in progress)."""
        stub = self._connect()
        if stub is None:
            return
        request = engine_pb2.LogRequest(
            severity=engine_pb2.INFO, message=message, urn=urn, ephemeral=True
        )
        try:
            stub.Log(request, timeout=LOG_SECONDS)
        except grpc.RpcError:
            self._broken = True  # the engine is gone or busy; stop trying

    def _connect(self) -> engine_pb2_grpc.EngineStub | None:
        with self._lock:
            if self._broken or self._address is None:
                return None
            if self._stub is None:
                self._stub = engine_pb2_grpc.EngineStub(grpc.insecure_channel(self._address))
            return self._stub
