"""GenerateProgram: the PCL `pulumi import` sends, as Python the way the official host writes it.

`pulumi import` turns the imported resources into PCL (one `resource` block each: literal inputs
read from the provider, resource options such as `protect` and `parent`) and asks the project's
language host for code, which it prints. The official host converts any PCL with Pulumi's Go code
generator; this one converts exactly what the importer writes: `package` and `resource` blocks,
literal values (strings, numbers, booleans, null, lists, objects), variable references,
`secret(...)`, `fileAsset(...)` / `fileArchive(...)`. Anything else (interpolation, other
functions, other blocks) is refused with a message naming it, never guessed at.

Names follow the official Python generator: the package's Python module from its schema
(`language.python.packageName`, else `pulumi_<package>`), imported `as <package>`; input and option
names in snake_case (`edgeFunctionName` -> `edge_function_name`), `resource_name`/`opts` get `_`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from offline_plugins.language_host.errors import HostError


class PclError(HostError):
    """PCL this host cannot turn into Python."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"GenerateProgram (offline Python language host): {message}",
            grpc.StatusCode.INVALID_ARGUMENT,
        )


# ---- tokens ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # "ident" | "string" | "number" | "punct" | "eof"
    text: str
    value: Any = None
    line: int = 0


_PUNCT = set("{}[]()=,:.")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _string(text: str, start: int, line: int) -> tuple[str, int]:
    """The value of the quoted template starting at `text[start] == '"'` and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            code = text[i + 1 : i + 2]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                i += 2
            elif code in ("u", "U"):
                width = 4 if code == "u" else 8
                digits = text[i + 2 : i + 2 + width]
                if not re.fullmatch(r"[0-9A-Fa-f]+", digits) or len(digits) != width:
                    raise PclError(f"line {line}: bad escape \\{code}{digits}")
                out.append(chr(int(digits, 16)))
                i += 2 + width
            else:
                raise PclError(f"line {line}: unknown escape \\{code}")
            continue
        if text.startswith("$${", i) or text.startswith("%%{", i):
            out.append(char + "{")
            i += 3
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            raise PclError(f"line {line}: string interpolation is not supported")
        if char == "\n":
            raise PclError(f"line {line}: unterminated string")
        out.append(char)
        i += 1
    raise PclError(f"line {line}: unterminated string")


def tokenize(text: str) -> Iterator[Token]:
    i, line = 0, 1
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
            i += 1
        elif char.isspace():
            i += 1
        elif text.startswith("//", i) or char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise PclError(f"line {line}: unterminated comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif char == '"':
            value, i = _string(text, i, line)
            yield Token("string", value, value, line)
        elif (number := _NUMBER.match(text, i)) is not None and (
            char != "-" or number.end() > i + 1
        ):
            literal = number.group(0)
            is_int = number.group(1) is None and number.group(2) is None
            yield Token("number", literal, int(literal) if is_int else float(literal), line)
            i = number.end()
        elif (ident := _IDENT.match(text, i)) is not None:
            yield Token("ident", ident.group(0), None, line)
            i = ident.end()
        elif char in _PUNCT:
            yield Token("punct", char, None, line)
            i += 1
        else:
            raise PclError(f"line {line}: unexpected character {char!r}")
    yield Token("eof", "", None, line)


# ---- syntax ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """A variable reference (another resource of the program), `a.b` as ("a", "b")."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass
class Block:
    type: str
    labels: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(tokenize(text))
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self, kind: str, text: str | None = None) -> Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            raise PclError(f"line {token.line}: expected {wanted!r}, found {token.text!r}")
        self.pos += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        return token.kind == kind and (text is None or token.text == text)

    def body(self, end: str) -> tuple[dict[str, Any], list[Block]]:
        attributes: dict[str, Any] = {}
        blocks: list[Block] = []
        while not self.at("punct", end) and not self.at("eof"):
            name = self.take("ident")
            if self.at("punct", "="):
                self.pos += 1
                attributes[name.text] = self.expression()
                continue
            labels = []
            while self.peek().kind in ("ident", "string"):
                labels.append(self.take(self.peek().kind).text)
            self.take("punct", "{")
            inner_attributes, inner_blocks = self.body("}")
            self.take("punct", "}")
            blocks.append(Block(name.text, labels, inner_attributes, inner_blocks))
        return attributes, blocks

    def expression(self) -> Any:
        token = self.peek()
        if token.kind in ("string", "number"):
            self.pos += 1
            return token.value
        if token.kind == "punct" and token.text == "[":
            self.pos += 1
            items = []
            while not self.at("punct", "]"):
                items.append(self.expression())
                if not self.at("punct", "]"):
                    self.take("punct", ",")
            self.take("punct", "]")
            return items
        if token.kind == "punct" and token.text == "{":
            self.pos += 1
            obj: dict[str, Any] = {}
            while not self.at("punct", "}"):
                key = self.peek()
                if key.kind not in ("string", "ident"):
                    raise PclError(f"line {key.line}: object key expected, found {key.text!r}")
                self.pos += 1
                if not (self.at("punct", "=") or self.at("punct", ":")):
                    self.take("punct", "=")
                self.pos += 1
                obj[key.text if key.kind == "ident" else key.value] = self.expression()
                if self.at("punct", ","):
                    self.pos += 1
            self.take("punct", "}")
            return obj
        if token.kind == "ident":
            self.pos += 1
            if token.text in ("true", "false"):
                return token.text == "true"
            if token.text == "null":
                return None
            if self.at("punct", "("):
                self.pos += 1
                args = []
                while not self.at("punct", ")"):
                    args.append(self.expression())
                    if not self.at("punct", ")"):
                        self.take("punct", ",")
                self.take("punct", ")")
                return Call(token.text, tuple(args))
            parts = [token.text]
            while self.at("punct", "."):
                self.pos += 1
                parts.append(self.take("ident").text)
            return Ref(tuple(parts))
        raise PclError(f"line {token.line}: unexpected {token.text!r}")


def parse(text: str) -> list[Block]:
    parser = _Parser(text)
    _, blocks = parser.body("\0")
    parser.take("eof")
    return blocks


# ---- Python ---------------------------------------------------------------------------------
def py_name(name: str) -> str:
    """snake_case as the official generator's PyName: `edgeFunctionName` -> `edge_function_name`,
    `rateLimitPerSecond` -> `rate_limit_per_second`, `HTTPHeaders` -> `http_headers`."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return name if not name[:1].isdigit() else "_" + name


def param_name(name: str) -> str:
    result = py_name(name)
    return result + "_" if result in ("resource_name", "opts") else result


_OPTIONS: dict[str, str] = {
    "parent": "parent",
    "provider": "provider",
    "dependsOn": "depends_on",
    "protect": "protect",
    "retainOnDelete": "retain_on_delete",
    "ignoreChanges": "ignore_changes",
    "deletedWith": "deleted_with",
    "version": "version",
}
_CALLS: dict[str, Callable[[str], str]] = {
    "secret": lambda arg: f"pulumi.Output.secret({arg})",
    "fileAsset": lambda arg: f"pulumi.FileAsset({arg})",
    "fileArchive": lambda arg: f"pulumi.FileArchive({arg})",
}
_WIDTH = 100


def literal(value: Any, indent: str = "") -> str:
    """`value` as a Python expression (one line if it fits, else one item per line)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Ref):
        return ".".join(py_name(part) if i == 0 else part for i, part in enumerate(value.parts))
    if isinstance(value, Call):
        if value.name not in _CALLS or len(value.args) != 1:
            raise PclError(f"function {value.name}() is not supported")
        return _CALLS[value.name](literal(value.args[0], indent))
    inner = indent + "    "
    if isinstance(value, list):
        items = [literal(item, inner) for item in value]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) + len(indent) <= _WIDTH and "\n" not in one_line:
            return one_line
        return "[\n" + "".join(f"{inner}{item},\n" for item in items) + indent + "]"
    if isinstance(value, dict):
        pairs = [
            f"{json.dumps(k, ensure_ascii=False)}: {literal(v, inner)}" for k, v in value.items()
        ]
        one_line = "{" + ", ".join(pairs) + "}"
        if len(one_line) + len(indent) <= _WIDTH and "\n" not in one_line:
            return one_line
        return "{\n" + "".join(f"{inner}{pair},\n" for pair in pairs) + indent + "}"
    raise PclError(f"unsupported value {value!r}")


@dataclass(frozen=True)
class PythonPackage:
    """How a Pulumi package is imported in Python."""

    module: str  # what to import: `supaqueue`, `pulumi_random`
    alias: str  # the name the code uses


SchemaLookup = Callable[[str, str | None], dict[str, Any] | None]


def _package(name: str, version: str | None, lookup: SchemaLookup) -> PythonPackage:
    schema = lookup(name, version) or {}
    python = (schema.get("language") or {}).get("python") or {}
    module = python.get("packageName") or "pulumi_" + re.sub(r"[^0-9A-Za-z_]", "_", name)
    return PythonPackage(module, py_name(name))


def _class(token: str, package: PythonPackage) -> str:
    parts = token.split(":")
    if len(parts) != 3:
        raise PclError(f"resource type {token!r} is not `package:module:Type`")
    module = parts[1].split("/")[0]
    if module in ("", "index"):
        return f"{package.alias}.{parts[2]}"
    return f"{package.alias}.{py_name(module)}.{parts[2]}"


def _resource(block: Block, packages: dict[str, PythonPackage], lookup: SchemaLookup) -> str:
    if len(block.labels) != 2:
        raise PclError("a resource block needs a name and a type")
    var, token = block.labels
    pkg_name = token.split(":")[0]
    if pkg_name not in packages:
        packages[pkg_name] = _package(pkg_name, None, lookup)
    attributes = dict(block.attributes)
    logical = attributes.pop("__logicalName", var)
    if not isinstance(logical, str):
        raise PclError(f"resource {var}: __logicalName must be a string")
    args = [json.dumps(logical, ensure_ascii=False)]
    args += [f"{param_name(key)}={literal(value, '    ')}" for key, value in attributes.items()]
    options: list[str] = []
    for inner in block.blocks:
        if inner.type != "options" or inner.blocks:
            raise PclError(f"resource {var}: block {inner.type!r} is not supported")
        for key, value in inner.attributes.items():
            if key not in _OPTIONS:
                raise PclError(f"resource {var}: option {key!r} is not supported")
            options.append(f"{_OPTIONS[key]}={literal(value, '    ')}")
    if options:
        args.append(f"opts=pulumi.ResourceOptions({', '.join(options)})")
    call = _class(token, packages[pkg_name])
    if len(args) <= 2 and sum(map(len, args)) < 60:
        return f"{py_name(var)} = {call}({', '.join(args)})\n"
    return f"{py_name(var)} = {call}(\n" + "".join(f"    {arg},\n" for arg in args) + ")\n"


def generate(source: str, lookup: SchemaLookup) -> str:
    """Python for one PCL file."""
    packages: dict[str, PythonPackage] = {}
    resources: list[str] = []
    for block in parse(source):
        if block.type == "package":
            name = block.labels[0] if block.labels else ""
            version = block.attributes.get("baseProviderVersion")
            packages[name] = _package(name, version if isinstance(version, str) else None, lookup)
        elif block.type == "resource":
            resources.append(_resource(block, packages, lookup))
        else:
            raise PclError(f"block {block.type!r} is not supported (only resources)")
    used = {p.module: p for p in packages.values()}
    imports = ["import pulumi"] + [
        f"import {p.module}" if p.module == p.alias else f"import {p.module} as {p.alias}"
        for p in sorted(used.values(), key=lambda p: p.module)
    ]
    return "\n".join(imports) + "\n\n" + "\n".join(resources)


def loader_lookup(target: str) -> SchemaLookup:
    """Package schemas from the CLI's schema loader at `target` (None when it cannot answer)."""

    def lookup(name: str, version: str | None) -> dict[str, Any] | None:
        # The SDK's generated loader stub imports `pulumi.codegen`, which does not exist: call
        # the method by its path instead.
        from pulumi.runtime.proto.codegen import loader_pb2

        if not target or not name:
            return None
        try:
            with grpc.insecure_channel(target) as channel:
                get_schema = channel.unary_unary(
                    "/codegen.Loader/GetSchema",
                    request_serializer=loader_pb2.GetSchemaRequest.SerializeToString,
                    response_deserializer=loader_pb2.GetSchemaResponse.FromString,
                )
                reply = get_schema(
                    loader_pb2.GetSchemaRequest(package=name, version=version or ""), timeout=60
                )
            schema = json.loads(reply.schema)
        except (grpc.RpcError, ValueError):
            return None
        return schema if isinstance(schema, dict) else None

    return lookup


def generate_program(sources: dict[str, str], loader_target: str) -> dict[str, bytes]:
    """The program's files: one `__main__.py` from the program's PCL files."""
    lookup = loader_lookup(loader_target)
    parts = [generate(sources[name], lookup) for name in sorted(sources)]
    return {"__main__.py": "\n".join(parts).encode()}


def answer(request: Any, context: grpc.ServicerContext) -> Any:
    """The LanguageRuntime.GenerateProgram RPC (host.py delegates here)."""
    from pulumi.runtime.proto import language_pb2

    try:
        files = generate_program(dict(request.source), request.loader_target)
    except HostError as exc:
        context.abort(exc.code, str(exc))
    except Exception as exc:  # a bug here must still reach the user as one line
        context.abort(grpc.StatusCode.INTERNAL, f"GenerateProgram: {type(exc).__name__}: {exc}")
    return language_pb2.GenerateProgramResponse(source=files)
