"""The ResourceProvider RPCs every offline plugin answers the same way, around per-plugin hooks."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from offline_plugins.common.properties import Props, from_struct, to_struct

Request = TypeVar("Request")
Response = TypeVar("Response")


class ProviderError(Exception):
    """A failure reported to the engine with exactly this message (no traceback)."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Failure:
    """An input that does not pass Check: shown by the engine as `<property>: <reason>`."""

    property: str
    reason: str


@dataclass
class Change:
    """One changed top-level input, as Diff reports it."""

    key: str
    kind: str  # "add" | "delete" | "update"
    replace: bool


@dataclass(frozen=True)
class Step:
    """The resource a create/update/delete is for and how the engine wants it done."""

    urn: str
    name: str
    preview: bool = False
    timeout: float = 0.0  # seconds, from the resource's customTimeouts; 0 = none


@dataclass
class DiffResult:
    changes: list[Change] = field(default_factory=list)
    delete_before_replace: bool = False


_KINDS = {
    ("add", False): provider_pb2.PropertyDiff.ADD,
    ("add", True): provider_pb2.PropertyDiff.ADD_REPLACE,
    ("delete", False): provider_pb2.PropertyDiff.DELETE,
    ("delete", True): provider_pb2.PropertyDiff.DELETE_REPLACE,
    ("update", False): provider_pb2.PropertyDiff.UPDATE,
    ("update", True): provider_pb2.PropertyDiff.UPDATE_REPLACE,
}


def rpc(
    method: Callable[[Any, Request, grpc.ServicerContext], Response],
) -> Callable[[Any, Request, grpc.ServicerContext], Response]:
    """Turn exceptions into gRPC errors with a readable message instead of a traceback."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Request, context: grpc.ServicerContext) -> Response:
        try:
            return method(self, request, context)
        except ProviderError as exc:
            context.abort(exc.code, str(exc))
        except Exception as exc:  # a bug here must still reach the user as one clear line
            print(f"{method.__name__} failed: {type(exc).__name__}", file=sys.stderr)
            context.abort(
                grpc.StatusCode.INTERNAL, f"{method.__name__} failed: {type(exc).__name__}: {exc}"
            )
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


def split_urn(urn: str) -> tuple[str, str]:
    """(type token, resource name) from `urn:pulumi:<stack>::<project>::<parent$type>::<name>`."""
    parts = urn.split("::")
    if len(parts) < 4:
        return "", ""
    return parts[2].split("$")[-1], "::".join(parts[3:])


class OfflineResourceProvider(provider_pb2_grpc.ResourceProviderServicer):
    """Answers the protocol for one resource type; subclasses supply the resource's behaviour."""

    package: str
    version: str
    type_token: str

    # ---- hooks -------------------------------------------------------------------------------
    def check(self, olds: Props, news: Props) -> tuple[Props, list[Failure]]:
        raise NotImplementedError

    def diff(self, olds: Props, news: Props, ignore_changes: list[str]) -> DiffResult:
        raise NotImplementedError

    def create(self, step: Step, props: Props) -> tuple[str, Props]:
        raise NotImplementedError

    def read(self, resource_id: str, props: Props, inputs: Props) -> tuple[str, Props, Props]:
        raise NotImplementedError

    def update(self, step: Step, resource_id: str, olds: Props, news: Props) -> Props:
        raise NotImplementedError

    def delete(self, step: Step, resource_id: str, props: Props) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop outstanding work (the engine is shutting down)."""

    def schema(self) -> dict[str, Any]:
        """The package schema. Programs use the pinned SDK wheels; the CLI reads this for
        `pulumi import` code generation, so plugins describe their one resource."""
        return {"name": self.package, "version": self.version, "resources": {}}

    # ---- type routing ------------------------------------------------------------------------
    def _require_type(self, type_field: str, urn: str) -> str:
        token, name = split_urn(urn)
        token = type_field or token
        if token != self.type_token:
            raise ProviderError(
                f"resource type {token!r} is not available in the offline {self.package} plugin "
                f"{self.version} (supaqueue), which implements only {self.type_token!r}; "
                f"install the official pulumi-{self.package} {self.version} plugin to use it",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        return name

    # ---- plugin and provider configuration ----------------------------------------------------
    @rpc
    def Handshake(
        self, request: provider_pb2.ProviderHandshakeRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ProviderHandshakeResponse:
        return provider_pb2.ProviderHandshakeResponse(
            accept_secrets=True, accept_resources=True, accept_outputs=False
        )

    @rpc
    def GetPluginInfo(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=self.version)

    @rpc
    def GetSchema(
        self, request: provider_pb2.GetSchemaRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetSchemaResponse:
        return provider_pb2.GetSchemaResponse(schema=json.dumps(self.schema()))

    @rpc
    def CheckConfig(
        self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CheckResponse:
        return provider_pb2.CheckResponse(inputs=request.news)

    @rpc
    def DiffConfig(
        self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> provider_pb2.DiffResponse:
        # Neither plugin has configuration that changes resources.
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    @rpc
    def Configure(
        self, request: provider_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ConfigureResponse:
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=True, acceptOutputs=False
        )

    @rpc
    def Invoke(
        self, request: provider_pb2.InvokeRequest, context: grpc.ServicerContext
    ) -> provider_pb2.InvokeResponse:
        raise ProviderError(
            f"function {request.tok!r} is not available in the offline {self.package} plugin; "
            f"install the official pulumi-{self.package} {self.version} plugin to use it",
            grpc.StatusCode.UNIMPLEMENTED,
        )

    @rpc
    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self.cancel()
        return empty_pb2.Empty()

    @rpc
    def GetMapping(
        self, request: provider_pb2.GetMappingRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingResponse:
        return provider_pb2.GetMappingResponse(provider="", data=b"")

    @rpc
    def GetMappings(
        self, request: provider_pb2.GetMappingsRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingsResponse:
        return provider_pb2.GetMappingsResponse(providers=[])

    # ---- resource lifecycle ----------------------------------------------------------------------
    @rpc
    def Check(
        self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CheckResponse:
        self._require_type(request.type, request.urn)
        inputs, failures = self.check(from_struct(request.olds), from_struct(request.news))
        return provider_pb2.CheckResponse(
            inputs=to_struct(inputs),
            failures=[
                provider_pb2.CheckFailure(property=f.property, reason=f.reason) for f in failures
            ],
        )

    @rpc
    def Diff(
        self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> provider_pb2.DiffResponse:
        self._require_type(request.type, request.urn)
        result = self.diff(
            from_struct(request.olds), from_struct(request.news), list(request.ignoreChanges)
        )
        if not result.changes:
            return provider_pb2.DiffResponse(
                changes=provider_pb2.DiffResponse.DIFF_NONE, hasDetailedDiff=True
            )
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME,
            replaces=[c.key for c in result.changes if c.replace],
            diffs=[c.key for c in result.changes],
            deleteBeforeReplace=result.delete_before_replace,
            detailedDiff={
                c.key: provider_pb2.PropertyDiff(kind=_KINDS[(c.kind, c.replace)], inputDiff=True)
                for c in result.changes
            },
            hasDetailedDiff=True,
        )

    @rpc
    def Create(
        self, request: provider_pb2.CreateRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CreateResponse:
        name = self._require_type(request.type, request.urn)
        step = Step(request.urn, request.name or name, request.preview, request.timeout)
        resource_id, outs = self.create(step, from_struct(request.properties))
        return provider_pb2.CreateResponse(id=resource_id, properties=to_struct(outs))

    @rpc
    def Read(
        self, request: provider_pb2.ReadRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ReadResponse:
        self._require_type(request.type, request.urn)
        resource_id, outs, inputs = self.read(
            request.id, from_struct(request.properties), from_struct(request.inputs)
        )
        return provider_pb2.ReadResponse(
            id=resource_id, properties=to_struct(outs), inputs=to_struct(inputs)
        )

    @rpc
    def Update(
        self, request: provider_pb2.UpdateRequest, context: grpc.ServicerContext
    ) -> provider_pb2.UpdateResponse:
        name = self._require_type(request.type, request.urn)
        step = Step(request.urn, request.name or name, request.preview, request.timeout)
        outs = self.update(step, request.id, from_struct(request.olds), from_struct(request.news))
        return provider_pb2.UpdateResponse(properties=to_struct(outs))

    @rpc
    def Delete(
        self, request: provider_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        name = self._require_type(request.type, request.urn)
        step = Step(request.urn, request.name or name, timeout=request.timeout)
        self.delete(step, request.id, from_struct(request.properties))
        return empty_pb2.Empty()
