"""The one error type the host reports to the engine as a plain message (never a traceback)."""

from __future__ import annotations

import grpc


class HostError(Exception):
    """A failure answered with this message and gRPC status code."""

    def __init__(
        self, message: str, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION
    ) -> None:
        super().__init__(message)
        self.code = code
