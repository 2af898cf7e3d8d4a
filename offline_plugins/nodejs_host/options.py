"""The program a request is about: its directories and the `runtime.options` of Pulumi.yaml.

The official host's options: `typescript` (default true), `tsconfig`, `nodeargs`,
`packagemanager` (auto|npm|yarn|pnpm|bun) and `production`. This host installs with npm only.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from pulumi.runtime.proto import language_pb2

from offline_plugins.common.language_runtime import HostError

PACKAGE_MANAGERS = ("auto", "npm", "yarn", "pnpm", "bun")
# Lock files that make the official host's `auto` choose another package manager.
OTHER_LOCK_FILES = {
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
    "bun.lock": "bun",
    "bun.lockb": "bun",
}


@dataclass(frozen=True)
class NodeOptions:
    root: Path
    program_dir: Path
    entry_point: str
    typescript: bool = True
    tsconfig: str = ""
    nodeargs: tuple[str, ...] = ()
    production: bool = False
    packagemanager: str = "auto"


def _typed(options: dict[str, Any], key: str, kind: type, label: str) -> Any:
    value = options.get(key)
    if value is not None and not isinstance(value, kind):
        raise HostError(f"{key} option must be {label}", grpc.StatusCode.INVALID_ARGUMENT)
    return value


def package_manager(opts: NodeOptions) -> str:
    """The package manager the official host would use: the option, else as `auto` chooses."""
    if opts.packagemanager != "auto":
        return opts.packagemanager
    if os.environ.get("PULUMI_PREFER_YARN", "").lower() in ("1", "true"):
        return "yarn"
    for folder in (opts.program_dir, *opts.program_dir.parents):
        found = [pm for lock, pm in OTHER_LOCK_FILES.items() if (folder / lock).is_file()]
        if found:
            return found[0]
        if (folder / "package-lock.json").is_file():
            return "npm"
    return "npm"


def require_npm(opts: NodeOptions) -> None:
    """Only npm is offered; refuse another package manager by name."""
    chosen = package_manager(opts)
    if chosen != "npm":
        raise HostError(
            f"the package manager {chosen!r} is not supported by the offline Node.js language "
            "host (it installs with npm only); set `packagemanager: npm` in Pulumi.yaml's "
            "runtime options and remove other lock files, or use the official "
            "pulumi-language-nodejs"
        )


def parse_options(
    info: language_pb2.ProgramInfo, fallback_dir: str = "", fallback_entry: str = ""
) -> NodeOptions:
    """Read a ProgramInfo; older requests carry only the deprecated `pwd`/`program` fields."""
    default_dir = fallback_dir or os.getcwd()
    root = Path(info.root_directory or default_dir)
    program_dir = Path(info.program_directory or root)
    options: dict[str, Any] = (
        json_format.MessageToDict(info.options) if info.HasField("options") else {}
    )
    typescript = _typed(options, "typescript", bool, "a boolean")
    tsconfig = _typed(options, "tsconfig", str, "a string")
    nodeargs = _typed(options, "nodeargs", str, "a string")
    production = _typed(options, "production", bool, "a boolean")
    manager = _typed(options, "packagemanager", str, "a string")
    if manager is not None and manager not in PACKAGE_MANAGERS:
        raise HostError(
            f"packagemanager option must be one of auto, npm, yarn, pnpm or bun, got {manager!r}",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    try:
        args = tuple(shlex.split(nodeargs or ""))
    except ValueError as exc:
        raise HostError(
            f"nodeargs option {nodeargs!r} is not a valid argument list: {exc}",
            grpc.StatusCode.INVALID_ARGUMENT,
        ) from exc
    return NodeOptions(
        root=root,
        program_dir=program_dir,
        entry_point=info.entry_point or fallback_entry or ".",
        typescript=True if typescript is None else typescript,
        tsconfig=tsconfig or "",
        nodeargs=args,
        production=bool(production),
        packagemanager=manager or "auto",
    )
