"""The Management API's OpenAPI document as validators: what a route accepts and returns.

The stand-in serves only the routes supaqueue uses; `management_api.openapi.json` holds those
operations and the schemas they reference, copied verbatim from the published document
(`extract_subset` makes the copy; a test proves it still matches the reference).
OpenAPI 3.0 schemas are not quite JSON Schema (`nullable`), so they are converted first.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SUBSET_FILE = Path(__file__).with_name("management_api.openapi.json")

# (method, path template) of every route the stand-in serves.
SERVED: tuple[tuple[str, str], ...] = (
    ("get", "/v1/projects/{ref}"),
    ("post", "/v1/projects/{ref}/functions/deploy"),
    ("put", "/v1/projects/{ref}/functions"),
    ("get", "/v1/projects/{ref}/functions/{function_slug}/body"),
    ("get", "/v1/projects/{ref}/functions"),
    ("get", "/v1/projects/{ref}/functions/{function_slug}"),
    ("delete", "/v1/projects/{ref}/functions/{function_slug}"),
    ("get", "/v1/projects/{ref}/secrets"),
    ("post", "/v1/projects/{ref}/secrets"),
    ("delete", "/v1/projects/{ref}/secrets"),
    ("get", "/v1/projects/{ref}/api-keys"),
    ("get", "/v1/projects/{ref}/postgrest"),
    ("patch", "/v1/projects/{ref}/postgrest"),
)


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def extract_subset(document: Mapping[str, Any]) -> dict[str, Any]:
    """The served operations of `document` and every schema they reach, unchanged."""
    paths: dict[str, dict[str, Any]] = {}
    for method, template in SERVED:
        paths.setdefault(template, {})[method] = document["paths"][template][method]
    all_schemas = document["components"]["schemas"]
    wanted: set[str] = set()
    todo = _refs(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs(all_schemas[name]) - wanted
    return {
        "openapi": document["openapi"],
        "info": document["info"],
        "paths": paths,
        "components": {"schemas": {n: all_schemas[n] for n in sorted(wanted)}},
    }


def to_json_schema(
    node: Any, schemas: Mapping[str, Any], seen: frozenset[str] = frozenset()
) -> Any:
    """Inline `$ref`s and turn OpenAPI's `nullable` into a JSON Schema null type."""
    if isinstance(node, list):
        return [to_json_schema(item, schemas, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"recursive schema {name} is not supported")
        return to_json_schema(schemas[name], schemas, seen | {name})
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("example", "examples", "nullable", "format", "description"):
            continue  # documentation only, or handled below (binary/int64 formats add nothing)
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v, schemas, seen) for k, v in value.items()}
        else:
            out[key] = to_json_schema(value, schemas, seen)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: Mapping[str, Any]
    schemas: Mapping[str, Any]

    def _parameters(self, where: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", []) if p["in"] == where}

    def parameter_errors(self, path: Mapping[str, str], query: Mapping[str, str]) -> list[str]:
        """Path and query parameters checked against their schemas (strings coerced by type)."""
        errors: list[str] = []
        for where, given in (("path", path), ("query", query)):
            for name, param in self._parameters(where).items():
                if name not in given:
                    if param.get("required"):
                        errors.append(f"{where} parameter {name} is required")
                    continue
                schema = to_json_schema(param.get("schema", {}), self.schemas)
                value: Any = given[name]
                if schema.get("type") == "boolean":
                    if value not in ("true", "false"):
                        errors.append(f"{where} parameter {name} must be true or false")
                        continue
                    value = value == "true"
                errors += [
                    f"{where} parameter {name}: {e.removeprefix('(body): ')}"
                    for e in _errors(schema, value)
                ]
        return errors

    def request_schema(self, content_type: str) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        if content_type not in content:
            return None
        return dict(to_json_schema(content[content_type].get("schema", {}), self.schemas))

    def request_errors(self, content_type: str, body: Any) -> list[str]:
        content = self.spec.get("requestBody", {}).get("content", {})
        if content_type not in content:
            accepted = ", ".join(sorted(content)) or "no body"
            return [f"content type {content_type or 'none'} not accepted (accepts {accepted})"]
        schema = self.request_schema(content_type) or {}
        return _errors(schema, body)

    def response_errors(self, status: int, body: Any) -> list[str]:
        """`body` (parsed JSON, or None for an empty body) against the documented response."""
        responses = self.spec.get("responses", {})
        declared = responses.get(str(status))
        if declared is None:
            return [f"status {status} is not documented for {self.method.upper()} {self.template}"]
        content = declared.get("content")
        if not content:
            return [] if body is None else [f"status {status} is documented without a body"]
        media = content.get("application/json")
        if media is None:
            return [f"status {status} documents no application/json body"]
        return _errors(to_json_schema(media.get("schema", {}), self.schemas), body)


def _errors(schema: Mapping[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(body)'}: {err.message}"
        for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


class Contract:
    """Operations of one OpenAPI document, looked up by method and path template."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.schemas: Mapping[str, Any] = document.get("components", {}).get("schemas", {})

    @classmethod
    def from_file(cls, path: Path) -> Contract:
        return cls(json.loads(path.read_text()))

    def operation(self, method: str, template: str) -> Operation:
        spec = self.document["paths"][template][method.lower()]
        return Operation(method.lower(), template, copy.deepcopy(spec), self.schemas)


@cache
def served_contract() -> Contract:
    """The contract the stand-in enforces (the verbatim subset shipped with the package)."""
    return Contract.from_file(SUBSET_FILE)
