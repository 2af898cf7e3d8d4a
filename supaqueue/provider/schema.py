"""The package schema (`schema.json`, package data): the one list of resource tokens, their
properties and which of them are secret. Read by the plugin (GetSchema) and by the program's
resource classes (their token and secret outputs), so the two cannot disagree."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

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
    """Every resource kind the provider serves (`Queue`, `Trigger`, ...)."""
    return sorted(kind_of(name) for name in schema()["resources"])


def resource(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = schema()["resources"][token(kind)]
    return found


def secret_properties(kind: str) -> list[str]:
    """The inputs and outputs of `kind` the schema marks secret (kept secret in state)."""
    spec = resource(kind)
    props = {**spec.get("inputProperties", {}), **spec.get("properties", {})}
    return sorted(name for name, prop in props.items() if prop.get("secret"))
