"""The package schema the CLI asks for (used for `pulumi import` code generation).

Kept in Python, not JSON, because the toolchain copies only the plugins' .py files.
"""

from __future__ import annotations

from typing import Any

from offline_plugins.random_provider import PACKAGE, PASSWORD_TYPE, VERSION

_INTEGER = {"type": "integer"}
_BOOLEAN = {"type": "boolean"}
_INPUTS: dict[str, Any] = {
    "keepers": {"type": "object", "additionalProperties": {"type": "string"}},
    "length": _INTEGER,
    "lower": _BOOLEAN,
    "minLower": _INTEGER,
    "minNumeric": _INTEGER,
    "minSpecial": _INTEGER,
    "minUpper": _INTEGER,
    "number": {"type": "boolean", "deprecationMessage": "use `numeric` instead"},
    "numeric": _BOOLEAN,
    "overrideSpecial": {"type": "string"},
    "special": _BOOLEAN,
    "upper": _BOOLEAN,
}
_OUTPUTS: dict[str, Any] = {
    "result": {"type": "string", "secret": True},
    "bcryptHash": {"type": "string", "secret": True},
}

SCHEMA: dict[str, Any] = {
    "name": PACKAGE,
    "version": VERSION,
    "description": "Offline stand-in for pulumi-random (supaqueue): RandomPassword only.",
    "resources": {
        PASSWORD_TYPE: {
            "description": "A cryptographically random password; any input change replaces it.",
            "inputProperties": _INPUTS,
            "requiredInputs": ["length"],
            "properties": {**_INPUTS, **_OUTPUTS},
            "required": sorted(set(_INPUTS) - {"keepers", "overrideSpecial"} | set(_OUTPUTS)),
        }
    },
}
