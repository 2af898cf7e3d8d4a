"""The gRPC `ResourceProvider` service of `pulumi-resource-supaqueue`.

Built on the SDK's raw `ResourceProviderServicer` (pulumi.runtime.proto), not on
`pulumi.provider.experimental`, for three reasons (SDK 3.272.0): its server appends the Python
stack to every error message (users would see tracebacks where they see one line today); it runs
every call on one asyncio loop, and the provider logic is blocking (psycopg, httpx), so calls the
engine makes in parallel would run one after another; and the logic expects the values the
dynamic-provider server gave it (`rpc.deserialize_properties`: unknowns as `rpc.UNKNOWN`,
secrets wrapped in check/diff), which this server passes exactly as that one did
(pulumi/dynamic/__main__.py is the reference), so preview with unknowns behaves as before.

Secrets: the plugin takes secrets over the wire (`acceptSecrets: true`; the engine constructs
components only with plugins that do). The provider logic gets them plain (`base.presented`), and
the plugin marks secret every output whose input was (`secret_like`, what the engine's
`annotateSecrets` does for plugins that do not take secrets, as the dynamic provider did); the
resource classes also mark the schema's secret properties `additionalSecretOutputs`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto, rpc
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import provider_pb2_grpc

from supaqueue.provider import construct, dynamic_state, registry
from supaqueue.provider.schema import kind_of, served
from supaqueue.provider.version import plugin_version
from supaqueue.providers import base, importing

T = TypeVar("T")
SIG_KEY = "4dabf18193072939515e22adb298388d"  # the wire's special-value key (sdk/resource/sig)
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
MAX_WORKERS = 4  # as the dynamic-provider server
PARENT_POLL_SECONDS = 1.0


def serialize(props: dict[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def with_unknowns(props: struct_pb2.Struct) -> dict[str, Any]:
    """`rpc.deserialize_properties(props, keep_unknowns=True)`, keeping an unknown that is
    secret unknown: the SDK reads a secret's value without `keep_unknowns`, so an unknown secret
    (a preview's generated password) would arrive as a secret None and fail `check`."""

    def bare(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get(SIG_KEY) == SECRET_SIG and value.get("value") == rpc.UNKNOWN:
                return rpc.UNKNOWN  # nothing to hide yet; create gets the secret value
            return {key: bare(item) for key, item in value.items()}
        if isinstance(value, list):
            return [bare(item) for item in value]
        return value

    plain = struct_pb2.Struct()
    plain.update(bare(json_format.MessageToDict(props)))
    return rpc.deserialize_properties(plain, True)


def secret_like(outs: dict[str, Any], ins: dict[str, Any]) -> dict[str, Any]:
    """`outs` with every property secret whose input (same key, nested objects alike) held a
    secret: the engine's `annotateSecrets` (provider_plugin.go), which it leaves to a plugin
    that accepts secrets."""
    marked = dict(outs)
    for key, given in ins.items():
        if key not in marked:
            continue
        out = marked[key]
        if rpc.is_rpc_secret(out):
            continue
        if isinstance(out, dict) and isinstance(given, dict) and not rpc.is_rpc_secret(given):
            marked[key] = secret_like(out, given)
        elif _holds_secret(given):
            marked[key] = rpc.wrap_rpc_secret(out)
    return marked


def _holds_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_secret(item) for item in value)
    return False


def type_of(request: Any) -> str:
    """The resource's type token (the last part of its URN's qualified type)."""
    urn = str(request.urn)
    qualified = urn.split("::")[2] if urn.count("::") >= 3 else ""
    return qualified.rsplit("$", 1)[-1]


def failure_text(exc: BaseException) -> str:
    """One line, `QueueNotEmptyError: cannot remove queue ...`: what the dynamic provider
    showed (a traceback limited to nothing), never a Python stack."""
    return "".join(traceback.format_exception_only(type(exc), exc))


def reported(method: Callable[..., T]) -> Callable[..., T]:
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except Exception as exc:  # every failure reaches the engine as one message
            context.abort(grpc.StatusCode.UNKNOWN, failure_text(exc))
            raise  # unreachable: abort raises

    wrapper.__name__ = method.__name__
    return wrapper


class SupaqueueProviderServicer(provider_pb2_grpc.ResourceProviderServicer):
    """check/diff/create/read/update/delete by type token, as pulumi.dynamic served them."""

    db_url: str | None = None
    """The database the stack config names, for `pulumi import` (providers/importing.py)."""

    def __init__(self, engine_address: str = "") -> None:
        super().__init__()
        self.engine_address = engine_address

    @reported
    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return proto.PluginInfo(version=plugin_version())

    @reported
    def GetSchema(self, request: Any, context: Any) -> Any:
        return proto.GetSchemaResponse(schema=json.dumps(served()))

    @reported
    def Configure(self, request: Any, context: Any) -> Any:
        # No provider configuration; the engine still sends the `supaqueue:` stack config keys
        # (a project named supaqueue has its own settings there). Only its database is read:
        # `pulumi import` reads there, and an imported resource's state names none.
        self.db_url = importing.config_db_url(dict(request.variables), os.environ)
        return proto.ConfigureResponse(acceptSecrets=True, supportsPreview=False)

    @reported
    def CheckConfig(self, request: Any, context: Any) -> Any:
        return proto.CheckResponse(inputs=request.news)

    @reported
    def DiffConfig(self, request: Any, context: Any) -> Any:
        # Never a replacement of the provider (it would replace every resource of the stack).
        return proto.DiffResponse(changes=proto.DiffResponse.DIFF_NONE)

    @reported
    def Check(self, request: Any, context: Any) -> Any:
        olds = with_unknowns(request.olds)
        news = with_unknowns(request.news)
        if importing.needs_db_url(kind_of(type_of(request)), news):
            # `pulumi import` checks what the read gave (no URL): the configured one serves.
            news = importing.with_db_url(kind_of(type_of(request)), news, self.db_url)
        result = registry.provider_for(type_of(request)).check(olds, news)
        failures = [
            proto.CheckFailure(property=f.property, reason=f.reason) for f in result.failures
        ]
        inputs = secret_like(dict(result.inputs), news)
        return proto.CheckResponse(inputs=serialize(inputs), failures=failures)

    @reported
    def Diff(self, request: Any, context: Any) -> Any:
        olds = with_unknowns(request.olds)
        news = with_unknowns(request.news)
        kind = kind_of(type_of(request))
        pickled = dynamic_state.has_pickle(olds)
        olds = importing.fill_imported(kind, dynamic_state.without_pickle(olds), news)
        result = registry.provider_for(type_of(request)).diff(request.id, olds, news)
        if pickled and result.changes is False:
            # A state from the dynamic provider: the update drops its pickle, nothing else.
            return proto.DiffResponse(
                changes=proto.DiffResponse.DIFF_SOME,
                diffs=[dynamic_state.PICKLE],
                detailedDiff={
                    dynamic_state.PICKLE: proto.PropertyDiff(kind=proto.PropertyDiff.DELETE)
                },
                hasDetailedDiff=True,
            )
        fields: dict[str, Any] = {}
        if result.changes is None:
            fields["changes"] = proto.DiffResponse.DIFF_UNKNOWN
        else:
            fields["changes"] = (
                proto.DiffResponse.DIFF_SOME if result.changes else proto.DiffResponse.DIFF_NONE
            )
        if result.replaces is not None:
            fields["replaces"] = result.replaces
        if result.delete_before_replace is not None:
            fields["deleteBeforeReplace"] = result.delete_before_replace
        return proto.DiffResponse(**fields)

    @reported
    def Create(self, request: Any, context: Any) -> Any:
        props = rpc.deserialize_properties(request.properties)
        result = registry.provider_for(type_of(request)).create(props)
        outs = result.outs if result.outs is not None else {}
        return proto.CreateResponse(id=result.id, properties=serialize(secret_like(outs, props)))

    @reported
    def Read(self, request: Any, context: Any) -> Any:
        # On refresh the engine passes the prior outputs; on a `get`/import only the inputs.
        props = rpc.deserialize_properties(request.properties)
        if not props and request.inputs is not None:
            props = rpc.deserialize_properties(request.inputs)
        kind = kind_of(type_of(request))
        if importing.is_import(props):  # `pulumi import`: the id is the name
            found = importing.read_by_name(kind, request.id, request.urn, self.db_url)
            return proto.ReadResponse(
                id=found.id, properties=serialize(found.outs), inputs=serialize(found.inputs)
            )
        props = dynamic_state.without_pickle(props)
        borrowed = importing.needs_db_url(kind, props)
        props = importing.with_db_url(kind, props, self.db_url)
        result = registry.provider_for(type_of(request)).read(request.id, props)
        outs = dict(result.outs or {})
        if borrowed:  # the configured URL stays out of the state (no secret in plain text)
            outs.pop("db_url", None)
        fields: dict[str, Any] = {
            "id": result.id,
            "properties": serialize(secret_like(outs, props)),
        }
        if result.inputs is not None:
            fields["inputs"] = serialize(secret_like(dict(result.inputs), props))
        return proto.ReadResponse(**fields)

    @reported
    def Update(self, request: Any, context: Any) -> Any:
        olds = rpc.deserialize_properties(request.olds)
        news = rpc.deserialize_properties(request.news)
        provider = registry.provider_for(type_of(request))
        if dynamic_state.has_pickle(olds):
            olds = dynamic_state.without_pickle(olds)
            kind = kind_of(type_of(request))
            if (
                provider.diff(request.id, importing.fill_imported(kind, olds, news), news).changes
                is False
            ):
                # Only the pickle differed (see Diff): the state without it, nothing run.
                return proto.UpdateResponse(properties=serialize(secret_like(olds, news)))
        result = provider.update(request.id, olds, news)
        return proto.UpdateResponse(properties=serialize(secret_like(result.outs or {}, news)))

    @reported
    def Delete(self, request: Any, context: Any) -> Any:
        props = dynamic_state.without_pickle(rpc.deserialize_properties(request.properties))
        props = importing.with_db_url(kind_of(type_of(request)), props, self.db_url)
        registry.provider_for(type_of(request)).delete(request.id, props)
        return empty_pb2.Empty()

    @reported
    def Construct(self, request: Any, context: Any) -> Any:
        # The `Supaqueue` component from another language: the Python component, run here
        # against the engine's monitor (construct.py). Its errors read as the CRUD ones.
        return construct.construct(request, context, self.engine_address)

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


def _exit_with_parent() -> None:
    """Exit once the CLI that started the plugin is gone: a killed CLI (SIGKILL, a crash)
    never sends the SIGINT the plugin would otherwise wait for."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    """`pulumi-resource-supaqueue [flags...] ENGINE_ADDRESS`: prints its port, serves until
    SIGINT/SIGTERM (then exits 0 quietly) or until its CLI is gone."""
    base.mark_plugin_process()
    _exit_with_parent()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS), options=_GRPC_CHANNEL_OPTIONS
    )
    # The engine's address is the last argument (Construct's children log through it).
    engine = sys.argv[-1] if len(sys.argv) > 1 else ""
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(
        SupaqueueProviderServicer(engine), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    while not stop.wait(PARENT_POLL_SECONDS):
        pass
    server.stop(0)
