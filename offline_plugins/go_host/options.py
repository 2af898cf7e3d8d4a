"""The program a request is about: its directories and the `runtime.options` of Pulumi.yaml.

The official host's options: `binary` (run this prebuilt executable instead of building) and
`buildTarget` (where `go build` writes the program; kept after the run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from pulumi.runtime.proto import language_pb2

from offline_plugins.common.language_runtime import HostError


@dataclass(frozen=True)
class GoOptions:
    root: Path
    program_dir: Path
    binary: str = ""
    build_target: str = ""


def parse_options(info: language_pb2.ProgramInfo, fallback_dir: str = "") -> GoOptions:
    """Read a ProgramInfo; older requests carry only the deprecated `pwd` field."""
    root = Path(info.root_directory or fallback_dir or os.getcwd())
    program_dir = Path(info.program_directory or root)
    options: dict[str, Any] = (
        json_format.MessageToDict(info.options) if info.HasField("options") else {}
    )
    values = {}
    for key in ("binary", "buildTarget"):
        value = options.get(key, "")
        if not isinstance(value, str):
            raise HostError(f"{key} option must be a string", grpc.StatusCode.INVALID_ARGUMENT)
        values[key] = value
    if values["binary"] and values["buildTarget"]:
        raise HostError(
            "binary and buildTarget cannot both be specified", grpc.StatusCode.INVALID_ARGUMENT
        )
    return GoOptions(
        root=root,
        program_dir=program_dir,
        binary=values["binary"],
        build_target=values["buildTarget"],
    )
