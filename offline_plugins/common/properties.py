"""Property values as the engine sends them in Structs: JSON plus secret and unknown markers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2

# Marshalling signatures shared by the engine and the SDKs (sdk/go/common/resource/sig).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
# An unknown value (known only after the update) travels as this plain string.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

Props = dict[str, Any]


def from_struct(struct: struct_pb2.Struct | None) -> Props:
    """Struct → dict, keeping secret envelopes and unknown sentinels as they are."""
    if struct is None:
        return {}
    return {key: _from_value(value) for key, value in struct.fields.items()}


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _from_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_from_value(v) for v in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        # Structs only carry doubles; give whole numbers back as ints.
        return int(number) if number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def to_struct(props: Props) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(props)
    return struct


def secret(value: Any) -> Any:
    """Wrap a value in the secret envelope (idempotent)."""
    if is_secret(value):
        return value
    return {SIG_KEY: SECRET_SIG, "value": value}


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN or (is_secret(value) and value.get("value") == UNKNOWN)


def reveal(value: Any) -> Any:
    """The plain value with every secret envelope removed (unknown sentinels stay)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def has_secret(value: Any) -> bool:
    """Whether a secret envelope appears anywhere in `value`."""
    return _anywhere(value, is_secret)


def has_unknown(value: Any) -> bool:
    """Whether an unknown appears anywhere in `value` (the engine sends them during previews)."""
    return _anywhere(value, is_unknown)


def _anywhere(value: Any, test: Callable[[Any], bool]) -> bool:
    if test(value):
        return True
    if isinstance(value, dict):
        return any(_anywhere(v, test) for v in value.values())
    if isinstance(value, list):
        return any(_anywhere(v, test) for v in value)
    return False
