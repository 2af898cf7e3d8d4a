"""The program a request is about: its directories and the `runtime.options` of Pulumi.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from pulumi.runtime.proto import language_pb2

from offline_plugins.language_host.errors import HostError

# Options the official host understands that this one cannot honour: refuse them clearly.
UNSUPPORTED_TOOLCHAINS = ("poetry", "uv")


@dataclass(frozen=True)
class ProgramOptions:
    root: Path
    program_dir: Path
    entry_point: str
    # The `virtualenv` option as written, and resolved against the project root.
    virtualenv_option: str | None
    virtualenv: Path | None

    @property
    def entry_path(self) -> str:
        """The entry point made absolute: the exec shim changes directory before running it."""
        return str((self.program_dir / self.entry_point).resolve())


def parse_options(
    info: language_pb2.ProgramInfo, fallback_dir: str = "", fallback_entry: str = ""
) -> ProgramOptions:
    """Read a ProgramInfo; older requests carry only the deprecated `pwd`/`program` fields."""
    default_dir = fallback_dir or os.getcwd()
    root = Path(info.root_directory or default_dir)
    program_dir = Path(info.program_directory or root)
    options: dict[str, Any] = (
        json_format.MessageToDict(info.options) if info.HasField("options") else {}
    )

    toolchain = options.get("toolchain", "pip")
    if toolchain in UNSUPPORTED_TOOLCHAINS:
        raise HostError(
            f"the '{toolchain}' toolchain is not supported by the offline Python language host; "
            "use the default pip toolchain with a 'virtualenv' option in Pulumi.yaml"
        )
    if toolchain != "pip":
        raise HostError(
            f"unsupported toolchain option: {toolchain!r}", grpc.StatusCode.INVALID_ARGUMENT
        )
    if "typechecker" in options:
        raise HostError(
            "the 'typechecker' runtime option is not supported by the offline Python language "
            "host; run the type checker yourself (e.g. `mypy`) and remove the option"
        )

    raw_venv = options.get("virtualenv")
    if raw_venv is not None and not isinstance(raw_venv, str):
        raise HostError("virtualenv option must be a string", grpc.StatusCode.INVALID_ARGUMENT)
    venv = None
    if raw_venv:
        venv = Path(raw_venv.rstrip("/") or "/")
        if not venv.is_absolute():
            venv = root / venv
    return ProgramOptions(
        root=root,
        program_dir=program_dir,
        entry_point=info.entry_point or fallback_entry or ".",
        virtualenv_option=raw_venv or None,
        virtualenv=venv,
    )
