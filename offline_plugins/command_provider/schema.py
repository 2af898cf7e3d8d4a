"""The package schema the CLI asks for (used for `pulumi import` code generation).

Kept in Python, not JSON, because the toolchain copies only the plugins' .py files.
"""

from __future__ import annotations

from typing import Any

from offline_plugins.command_provider import COMMAND_TYPE, PACKAGE, VERSION

_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_INPUTS: dict[str, Any] = {
    "addPreviousOutputInEnv": {"type": "boolean", "default": True},
    "create": _STRING,
    "delete": _STRING,
    "dir": _STRING,
    "environment": {"type": "object", "additionalProperties": _STRING},
    "interpreter": _STRINGS,
    "logging": _STRING,
    "stdin": _STRING,
    "triggers": {
        "type": "array",
        "items": {"$ref": "pulumi.json#/Any"},
        "replaceOnChanges": True,
    },
    "update": _STRING,
}

SCHEMA: dict[str, Any] = {
    "name": PACKAGE,
    "version": VERSION,
    "description": "Offline stand-in for pulumi-command (supaqueue): local Command only.",
    "resources": {
        COMMAND_TYPE: {
            "description": "A local command run on create, update and delete.",
            "inputProperties": _INPUTS,
            "properties": {**_INPUTS, "stdout": _STRING, "stderr": _STRING},
            "required": ["stderr", "stdout"],
        }
    },
}
