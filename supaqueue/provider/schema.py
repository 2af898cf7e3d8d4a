"""The package schema (`schema.json`, package data): the one list of resource tokens, their
properties and which of them are secret. Read by the plugin (GetSchema) and by the program's
resource classes (their token and secret outputs), so the two cannot disagree."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from supaqueue.provider.version import plugin_version

PACKAGE = "supaqueue"
MODULE = "index"


def token(kind: str) -> str:
    """`Queue` → `supaqueue:index:Queue`."""
    return f"{PACKAGE}:{MODULE}:{kind}"


def kind_of(type_token: str) -> str:
    """`supaqueue:index:Queue` → `Queue`."""
    return type_token.rsplit(":", 1)[-1]


@functools.cache
def schema_text() -> str:
    return resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


def kinds() -> list[str]:
    """Every custom resource kind the provider serves (`Queue`, `Trigger`, ...)."""
    return sorted(
        kind_of(name) for name, spec in schema()["resources"].items() if not spec.get("isComponent")
    )


def components() -> list[str]:
    """The component kinds the provider constructs (`Supaqueue`)."""
    return sorted(
        kind_of(name) for name, spec in schema()["resources"].items() if spec.get("isComponent")
    )


def resource(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = schema()["resources"][token(kind)]
    return found


def secret_properties(kind: str) -> list[str]:
    """The inputs and outputs of `kind` the schema marks secret (kept secret in state)."""
    spec = resource(kind)
    props = {**spec.get("inputProperties", {}), **spec.get("properties", {})}
    return sorted(name for name, prop in props.items() if prop.get("secret"))


# The component's queue, trigger and schedule arguments are the resources' own inputs, less
# what the component supplies (the database, the owner, the queue's id): derived here, so a new
# queue setting reaches every language with nothing else to edit. `queue` names the hook's queue.
_SUPPLIED = {"db_url", "owner", "queue_id", "migrations_dir"}
_HOOK_QUEUE = {
    "type": "string",
    "description": "The name of the queue the jobs go to (one the component declares).",
}
SPEC_TYPES = {"QueueSpec": "Queue", "TriggerSpec": "Trigger", "ScheduleSpec": "Schedule"}


def spec_type(name: str) -> dict[str, Any]:
    """`QueueSpec` etc.: the object type of one entry of the component's `queues` etc."""
    kind = SPEC_TYPES[name]
    spec = resource(kind)
    props = {k: v for k, v in spec["inputProperties"].items() if k not in _SUPPLIED}
    required = [k for k in spec["requiredInputs"] if k not in _SUPPLIED]
    if kind == "Queue":  # in the map form the key is the name
        props["name"] = {
            **props["name"],
            "description": props["name"]["description"] + " In the map form: the key.",
        }
        required.remove("name")
    else:
        props["queue"] = _HOOK_QUEUE
        required.append("queue")
    return {
        "type": "object",
        "description": f"One {kind.lower()} the `Supaqueue` component declares (the "
        f"`{kind}` resource's inputs, less what the component supplies).",
        "properties": props,
        "required": required,
    }


def served() -> dict[str, Any]:
    """The schema as GetSchema serves it and the SDKs are generated from: with the plugin's
    version and the component's argument types."""
    types = {**schema().get("types", {}), **{token(n): spec_type(n) for n in SPEC_TYPES}}
    return {**schema(), "version": plugin_version(), "types": types}
