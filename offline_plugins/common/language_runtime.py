"""What every offline language host shares: errors, RPC wrappers, plugin requirements.

The offline hosts (Python, Node.js, Go) each implement Pulumi's LanguageRuntime service for one
language; this module holds the parts that do not depend on the language.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from pulumi.runtime.proto import language_pb2_grpc, plugin_pb2

from offline_plugins.common.serve import engine_address, serve

Handler = TypeVar("Handler", bound=Callable[..., Any])


class HostError(Exception):
    """A failure answered with this message and gRPC status code (never a traceback)."""

    def __init__(
        self, message: str, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION
    ) -> None:
        super().__init__(message)
        self.code = code


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, HostError):
        context.abort(exc.code, str(exc))
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


def reported(handler: Handler) -> Handler:
    """Answer failures with a status and a plain message rather than a Python traceback."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as exc:
            _abort(context, exc)

    return wrapper  # type: ignore[return-value]


def reported_stream(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from handler(self, request, context)
        except Exception as exc:
            _abort(context, exc)

    return wrapper  # type: ignore[return-value]


def unimplemented(name: str, language: str, official: str) -> Callable[..., Any]:
    """An RPC the offline host of `language` does not offer; `official` is the host that does."""

    def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{name} is not implemented by the offline {language} language host "
            f"(it only runs programs; use the official {official} for this)",
        )

    handler.__name__ = name
    return handler


@dataclass(frozen=True)
class Parameterization:
    name: str
    version: str
    value: bytes


@dataclass(frozen=True)
class PluginRequirement:
    name: str
    version: str  # "v"-prefixed semver
    server: str = ""
    parameterization: Parameterization | None = None
    kind: str = "resource"
    # A package that extends its base plugin in place (`extensionParameterization`).
    extension: Parameterization | None = None


def parameterization_from_json(raw: object, source: str) -> Parameterization | None:
    """A `parameterization` object of pulumi-plugin.json / package.json's `pulumi` section."""
    if not isinstance(raw, dict):
        return None
    try:
        # Go's PulumiPluginJSON holds the value as []byte, so JSON carries it in base64.
        value = base64.b64decode(str(raw.get("value", "")), validate=True)
    except ValueError as exc:
        raise HostError(f"{source}: parameterization value is not base64") from exc
    return Parameterization(
        name=str(raw.get("name", "")), version=str(raw.get("version", "")), value=value
    )


def _parameterization_pb(p: Parameterization) -> plugin_pb2.PackageParameterization:
    return plugin_pb2.PackageParameterization(name=p.name, version=p.version, value=p.value)


def package_dependency(req: PluginRequirement) -> plugin_pb2.PackageDependency:
    """The GetRequiredPackages form of a requirement."""
    dep = plugin_pb2.PackageDependency(
        name=req.name, kind=req.kind, version=req.version, server=req.server
    )
    if req.parameterization is not None:
        dep.parameterization.CopyFrom(_parameterization_pb(req.parameterization))
    if req.extension is not None:
        dep.extension.CopyFrom(_parameterization_pb(req.extension))
    return dep


def plugin_dependency(req: PluginRequirement) -> plugin_pb2.PluginDependency:
    """The (older) GetRequiredPlugins form of a requirement."""
    return plugin_pb2.PluginDependency(
        name=req.name, kind=req.kind, version=req.version, server=req.server
    )


def serve_language_host(
    argv: Sequence[str], make_host: Callable[[str | None], Any], version: str
) -> int:
    """The `__main__` of every offline language host: `-version`, else serve until stopped.

    `make_host(engine_address)` returns the LanguageRuntime servicer; its `running`
    (RunningPrograms) is stopped before the server stops.
    """
    if "-version" in argv or "--version" in argv:
        print(version)
        return 0
    engine = engine_address(argv)
    host = make_host(engine)
    return serve(
        lambda server: language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server),
        engine=engine,
        on_stop=host.running.stop_all,
    )
