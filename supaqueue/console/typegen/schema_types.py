"""JSON Schema → TypeScript and Python types, for the common subset of payload schemas.

Why our own converter (docs/architecture/application-api.md, "Payload schemas"):
json-schema-to-typescript (npm) would need Node or Deno and the npm registry at every
`gen types`, and covers TypeScript only; datamodel-code-generator (PyPI) covers Python only and
brings a dozen packages (pydantic, black, isort…) into the operator's install. One small
converter gives both languages the same rules.

Expressed: `type` (string, number, integer, boolean, null, array, object, or a list of them),
`properties`/`required`, `additionalProperties: false`, `items`, `enum`, `const`, `anyOf`/`oneOf`,
nesting. What a type cannot say is WIDENED, never narrowed (a payload the schema allows always
compiles), and each widening is listed as a note, which the generated file prints in a comment:
`$ref`, `allOf` and a schema without `type` become any JSON value; `additionalProperties` with a
schema, `patternProperties` and `prefixItems` lose their detail. Constraints (minLength, pattern,
minimum, format…) are no types: the called function's validator checks them at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNTYPEABLE = ("$ref", "$dynamicRef", "allOf")  # the type depends on another schema
DETAIL_LOST = ("patternProperties", "prefixItems", "dependentSchemas", "unevaluatedProperties")


def literal(value: str) -> str:
    """A string literal valid in both TypeScript and Python (JSON's, ASCII only)."""
    return json.dumps(value)


@dataclass
class Notes:
    """What the types could not express, one line each (printed in the generated file)."""

    lines: list[str] = field(default_factory=list)

    def widen(self, where: str, why: str) -> None:
        self.lines.append(f"{where}: {why}")


def _where(path: list[str]) -> str:
    out = path[0]
    for part in path[1:]:
        out += part if part.startswith("[") else f".{part}"
    return out


def _types_of(schema: Mapping[str, Any]) -> list[str] | None:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return list(kind)
    return None


def _literals(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, str | bool | int | float) for v in values)


# --- TypeScript -----------------------------------------------------------------------------


def ts_type(schema: Any, path: list[str], notes: Notes, indent: str = "") -> str:
    """The TypeScript type of values `schema` accepts (widened where it cannot say)."""
    if schema is True or schema == {}:
        return "JsonValue"
    if schema is False:
        return "never"
    if not isinstance(schema, Mapping):
        notes.widen(_where(path), "not a schema object: any JSON value")
        return "JsonValue"
    for key in UNTYPEABLE:
        if key in schema:
            notes.widen(_where(path), f"{key} is not expressed: any JSON value")
            return "JsonValue"
    if "const" in schema:
        return _ts_literal_union([schema["const"]], path, notes)
    if isinstance(schema.get("enum"), list):
        return _ts_literal_union(schema["enum"], path, notes)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            members = [
                ts_type(s, [*path, f"{key}[{i}]"], notes, indent) for i, s in enumerate(schema[key])
            ]
            return " | ".join(dict.fromkeys(f"({m})" if "|" in m else m for m in members))
    types = _types_of(schema)
    if types is None:
        notes.widen(_where(path), "no type: any JSON value")
        return "JsonValue"
    return " | ".join(dict.fromkeys(_ts_of_type(t, schema, path, notes, indent) for t in types))


def _ts_literal_union(values: list[Any], path: list[str], notes: Notes) -> str:
    if not values or not _literals(values):
        notes.widen(_where(path), "an enum/const of objects or arrays: any JSON value")
        return "JsonValue"
    return " | ".join(dict.fromkeys(json.dumps(v) for v in values))


def _ts_of_type(
    kind: str, schema: Mapping[str, Any], path: list[str], notes: Notes, indent: str
) -> str:
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        if "prefixItems" in schema:
            notes.widen(_where(path), "prefixItems (tuples) are not expressed: JsonValue[]")
            return "JsonValue[]"
        items = ts_type(schema.get("items", True), [*path, "[]"], notes, indent)
        return f"Array<{items}>"
    if kind == "object":
        return _ts_object(schema, path, notes, indent)
    notes.widen(_where(path), f"unknown type {kind!r}: any JSON value")
    return "JsonValue"


def _ts_object(schema: Mapping[str, Any], path: list[str], notes: Notes, indent: str) -> str:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    inner = indent + "  "
    lines = []
    for name, sub in properties.items():
        optional = "" if name in required else "?"
        lines.append(
            f"{inner}{literal(name)}{optional}: {ts_type(sub, [*path, name], notes, inner)};"
        )
    for name in sorted(required - set(properties)):
        lines.append(f"{inner}{literal(name)}: JsonValue;")
    extra = schema.get("additionalProperties", True)
    for key in DETAIL_LOST:
        if key in schema:
            notes.widen(_where(path), f"{key} is not expressed: other keys are allowed")
            extra = True
    if extra is not False:
        if extra is not True and extra != {}:
            notes.widen(_where(path), "additionalProperties with a schema: other keys unknown")
        lines.append(f"{inner}[key: string]: unknown;")
    if not lines:
        return "Record<string, never>"
    return "{\n" + "\n".join(lines) + f"\n{indent}}}"


# --- Python ---------------------------------------------------------------------------------


def pascal(name: str) -> str:
    """`send-email` → `SendEmail` (a Python identifier)."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    text = "".join(w[:1].upper() + w[1:] for w in words) or "X"
    return text if text[0].isalpha() else f"X{text}"


@dataclass
class PythonTypes:
    """Named TypedDicts made while converting (nested objects get their own), in order."""

    notes: Notes
    definitions: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)

    def name(self, wanted: str) -> str:
        chosen, n = wanted, 2
        while chosen in self.taken:
            chosen, n = f"{wanted}{n}", n + 1
        self.taken.add(chosen)
        return chosen

    def type_of(self, schema: Any, path: list[str], hint: str) -> str:
        notes = self.notes
        if schema is True or schema == {}:
            return "JsonValue"
        if schema is False:
            return "NoReturn"
        if not isinstance(schema, Mapping):
            notes.widen(_where(path), "not a schema object: any JSON value")
            return "JsonValue"
        for key in UNTYPEABLE:
            if key in schema:
                notes.widen(_where(path), f"{key} is not expressed: any JSON value")
                return "JsonValue"
        if "const" in schema:
            return self._literal([schema["const"]], path)
        if isinstance(schema.get("enum"), list):
            return self._literal(schema["enum"], path)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                members = [
                    self.type_of(s, [*path, f"{key}[{i}]"], f"{hint}{i + 1}")
                    for i, s in enumerate(schema[key])
                ]
                return " | ".join(dict.fromkeys(members))
        types = _types_of(schema)
        if types is None:
            notes.widen(_where(path), "no type: any JSON value")
            return "JsonValue"
        return " | ".join(dict.fromkeys(self._of_type(t, schema, path, hint) for t in types))

    def _literal(self, values: list[Any], path: list[str]) -> str:
        if not values or not _literals(values):
            self.notes.widen(_where(path), "an enum/const of objects or arrays: any JSON value")
            return "JsonValue"
        parts: list[str] = []
        for value in values:
            if isinstance(value, float) and not value.is_integer():
                self.notes.widen(_where(path), "a non-integer number literal: float")
                parts.append("float")
            elif isinstance(value, float):
                parts.append(f"Literal[{int(value)}]")
            elif isinstance(value, str):
                parts.append(f"Literal[{literal(value)}]")
            else:
                parts.append(f"Literal[{value!r}]")  # int, bool or None
        return " | ".join(dict.fromkeys(parts))

    def _of_type(self, kind: str, schema: Mapping[str, Any], path: list[str], hint: str) -> str:
        if kind == "string":
            return "str"
        if kind == "integer":
            return "int"
        if kind == "number":
            return "float"
        if kind == "boolean":
            return "bool"
        if kind == "null":
            return "None"
        if kind == "array":
            if "prefixItems" in schema:
                self.notes.widen(_where(path), "prefixItems (tuples) are not expressed: list")
                return "list[JsonValue]"
            items = self.type_of(schema.get("items", True), [*path, "[]"], f"{hint}Item")
            return f"list[{items}]"
        if kind == "object":
            return self._object(schema, path, hint)
        self.notes.widen(_where(path), f"unknown type {kind!r}: any JSON value")
        return "JsonValue"

    def _object(self, schema: Mapping[str, Any], path: list[str], hint: str) -> str:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        if not properties and not required:
            extra = schema.get("additionalProperties", True)
            if extra is False:
                return "dict[str, NoReturn]"  # only {}
            if extra is True or any(key in schema for key in DETAIL_LOST):
                return "dict[str, JsonValue]"
            return f"dict[str, {self.type_of(extra, [*path, '*'], f'{hint}Value')}]"
        name = self.name(hint)
        fields = []
        for key, sub in properties.items():
            typed = self.type_of(sub, [*path, key], f"{name}{pascal(key)}")
            fields.append(
                f"{literal(key)}: {typed if key in required else f'NotRequired[{typed}]'}"
            )
        for key in sorted(required - set(properties)):
            fields.append(f"{literal(key)}: JsonValue")  # required, but no schema of its own
        if schema.get("additionalProperties", True) is not False:
            self.notes.widen(
                _where(path),
                "keys other than its properties are allowed by the schema but refused by the"
                " TypedDict (say additionalProperties: false to match)",
            )
        # The functional form: property names need not be Python identifiers (`from`, `x-id`).
        body = "".join(f"        {f},\n" for f in fields)
        self.definitions.append(
            f"{name} = TypedDict(\n    {literal(name)},\n    {{\n{body}    }},\n)"
        )
        return name
