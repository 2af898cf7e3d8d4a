"""`Construct`: the `Supaqueue` component for programs in other languages.

A TypeScript, YAML or Go program declares `supaqueue:index:Supaqueue` (a component in the
schema, `isComponent`); the engine asks this plugin to construct it, and the plugin runs the
Python `Supaqueue` (supaqueue/installation.py) against the engine's monitor: the same children,
names, dependencies, validation and messages as the Python program's. Its children register from
this process and are served by the plugin itself (the project's `Pulumi.yaml` names it).

The SDK's component server (`pulumi.provider.server.ProviderServicer._construct`) does the work:
runtime settings and config from the request, inputs with their dependencies and secrets,
options (parent, aliases, dependsOn, providers), the response with the URN and the outputs'
dependencies. It is asynchronous; the plugin's gRPC server is threaded (the CRUD logic blocks),
so each Construct runs it on an event loop of its own, one at a time (the Python runtime's
settings are process-wide), in a fresh context (they are context variables).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.provider import ConstructResult, Provider
from pulumi.provider.server import ProviderServicer

from supaqueue.errors import ConfigError
from supaqueue.provider.schema import resource, spec_type, token
from supaqueue.provider.version import plugin_version

COMPONENT = "Supaqueue"
PATH_ARGS = ("edge_dir", "dispatcher_dir", "migrations_dir")
# What the component may take as an output of another resource (the rest it reads while the
# program runs: a plain value, e.g. from config).
OUTPUT_ARGS = ("project_ref", "db_url", "access_token")
LISTS = {"queues": "QueueSpec", "triggers": "TriggerSpec", "schedules": "ScheduleSpec"}
_one_at_a_time = threading.Lock()


class ComponentProvider(Provider):
    """`construct` of the one component the schema declares."""

    def __init__(self) -> None:
        super().__init__(version=plugin_version())

    def construct(
        self,
        name: str,
        resource_type: str,
        inputs: pulumi.Inputs,
        options: pulumi.ResourceOptions | None = None,
    ) -> ConstructResult:
        if resource_type != token(COMPONENT):
            raise ConfigError(
                f"the supaqueue provider constructs only {token(COMPONENT)}, not "
                f"{resource_type!r}; is the program's SDK newer than this plugin? Reinstall both"
            )
        from supaqueue.installation import Supaqueue  # the program side: only when constructing

        component = Supaqueue(name, component_args(inputs), options)  # type: ignore[arg-type]
        return ConstructResult(
            urn=component.urn,
            state={
                "function_url": component.function_url,
                "schema_version": component.schema_version,
                "queue_ids": component.queue_ids,
                "schedule_next_runs": component.schedule_next_runs,
            },
        )


def component_args(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The wire's inputs as the Python component takes them: the schema's secrets secret,
    whole numbers where the schema says integer (the wire has only doubles), `queues` given as
    a map made a list, folders relative to the program."""
    spec = resource(COMPONENT)["inputProperties"]
    args: dict[str, Any] = {}
    for key, value in inputs.items():
        if value is None:
            continue
        if spec.get(key, {}).get("secret"):
            value = pulumi.Output.secret(value)
        elif spec.get(key, {}).get("type") == "integer":
            value = _whole(value)
        args[key] = value
    late = sorted(
        key for key, value in args.items()
        if isinstance(value, pulumi.Output) and key not in OUTPUT_ARGS
    )  # fmt: skip
    if late:
        raise ConfigError(
            "invalid supaqueue arguments:\n"
            + "\n".join(
                f"  - {key}: is another resource's output (or secret); the component reads it "
                "while the program runs: give a plain value (e.g. from config)"
                for key in late
            )
        )
    if isinstance(args.get("queues"), Mapping):
        args["queues"] = _queue_list(args["queues"])
    for key, type_name in LISTS.items():
        if isinstance(args.get(key), list):
            args[key] = [_typed(item, type_name) for item in args[key]]
    for key in PATH_ARGS:
        if isinstance(args.get(key), str):
            args[key] = os.path.abspath(args[key])
    return args


def _queue_list(queues: Mapping[str, Any]) -> list[Any]:
    """`{emails: {...}}` → `[{name: emails, ...}]`; a differing `name` inside is refused."""
    listed = []
    for key, settings in queues.items():
        if not isinstance(settings, Mapping):
            listed.append(settings)  # the component names what is wrong with it
            continue
        if settings.get("name", key) != key:
            raise ConfigError(
                f"invalid supaqueue arguments:\n  - queues.{key}.name: {settings['name']!r} "
                f"differs from its key {key!r}; in the map form the key is the name (leave "
                "`name` out)"
            )
        listed.append({**settings, "name": key})
    return listed


def _typed(item: Any, type_name: str) -> Any:
    if not isinstance(item, Mapping):
        return item
    props = spec_type(type_name)["properties"]
    return {
        key: _whole(value) if props.get(key, {}).get("type") == "integer" else value
        for key, value in item.items()
        if value is not None
    }


def _whole(value: Any) -> Any:
    """`2.0` → `2` (a fraction stays, and the component refuses it naming the field)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def construct(request: Any, context: Any, engine_address: str) -> Any:
    """A ConstructResponse for `request`, through the SDK's component server."""
    servicer = ProviderServicer(ComponentProvider(), [], engine_address=engine_address)
    servicer.provider.schema = None  # GetSchema is the plugin's own (schema.served)

    def run() -> Any:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(servicer._construct(request, context))
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    with _one_at_a_time:
        return contextvars.Context().run(run)
