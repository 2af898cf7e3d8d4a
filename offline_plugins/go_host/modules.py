"""What a Go program requires: its go.mod, the plugins of its modules, its dependencies.

Follows the official host: go.mod is the one `go list -m` finds for the program folder (GOWORK
off); each required module's source folder comes from `go list -m -json` (vendor/ when vendored,
else `go mod download -json` for those not in the module cache); a module names a plugin when a
pulumi-plugin.json in its folder (or go/, go/*/, */) says `"resource": true`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_plugins.common.language_runtime import (
    HostError,
    PluginRequirement,
    parameterization_from_json,
)
from offline_plugins.common.programs import without_own_sources

GO_TIMEOUT_SECONDS = 600
# golang.org/x/mod/module's pseudo-version form: vX.0.0-yyyymmddhhmmss-abcdef123456 and kin.
PSEUDO_VERSION = re.compile(
    r"^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
TOLERANT_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")


def go_binary() -> str:
    found = shutil.which("go")
    if found is None:
        raise HostError("unable to find 'go' executable on the $PATH; install Go (1.21 or newer)")
    return found


def go_env(**extra: str) -> dict[str, str]:
    env = without_own_sources()
    env.update(extra)
    return env


def run_go(args: list[str], cwd: Path, **extra_env: str) -> str:
    """`go ARGS` in `cwd`; its stdout, or a HostError carrying its stderr."""
    command = [go_binary(), *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=go_env(**extra_env),
            capture_output=True,
            text=True,
            timeout=GO_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"`{' '.join(command[1:])}` could not run: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit code {done.returncode}"
        raise HostError(f"go {' '.join(args)}: {detail}")
    return done.stdout


def json_stream(text: str) -> list[dict[str, Any]]:
    """The concatenated JSON objects `go list -json` and `go mod download -json` print."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return found
        value, index = decoder.raw_decode(text, index)
        if isinstance(value, dict):
            found.append(value)


@dataclass(frozen=True)
class GoMod:
    dir: Path
    # (module path, version, indirect)
    requires: list[tuple[str, str, bool]]
    replaced: set[str]


def load_gomod(program_dir: Path) -> GoMod:
    """The go.mod governing `program_dir`, parsed by `go mod edit -json`."""
    path = run_go(["list", "-m", "-f", "{{.GoMod}}"], program_dir, GOWORK="off").strip()
    if not path:
        raise HostError(f"no go.mod file found: {program_dir}")
    mod_dir = Path(path).parent
    parsed = json.loads(run_go(["mod", "edit", "-json", path], mod_dir))
    requires = [
        (r["Path"], r.get("Version", ""), bool(r.get("Indirect")))
        for r in parsed.get("Require") or []
    ]
    replaced = {r["Old"]["Path"].rstrip("/") for r in parsed.get("Replace") or []}
    return GoMod(dir=mod_dir, requires=requires, replaced=replaced)


def module_sources(gomod: GoMod) -> list[dict[str, Any]]:
    """`go list -m -json` of every required module, each with its source folder (`Dir`)."""
    paths = [path for path, _, _ in gomod.requires]
    if not paths:
        return []
    modules = json_stream(run_go(["list", "-m", "-json", *paths], gomod.dir))
    vendor = gomod.dir / "vendor"
    if vendor.is_dir():
        for module in modules:
            if not module.get("Dir") and (vendor / module["Path"]).is_dir():
                module["Dir"] = str(vendor / module["Path"])
        return [m for m in modules if m.get("Dir")]
    missing = [m["Path"] for m in modules if not m.get("Dir")]
    if missing:
        downloaded = json_stream(run_go(["mod", "download", "-json", *missing], gomod.dir))
        dirs = {m["Path"]: m.get("Dir", "") for m in downloaded}
        for module in modules:
            if not module.get("Dir"):
                module["Dir"] = dirs.get(module["Path"], "")
    return [m for m in modules if m.get("Dir")]


def plugin_file(module_dir: Path) -> dict[str, Any] | None:
    candidates = [module_dir / "pulumi-plugin.json", module_dir / "go" / "pulumi-plugin.json"]
    candidates += sorted(module_dir.glob("go/*/pulumi-plugin.json"))
    candidates += sorted(module_dir.glob("*/pulumi-plugin.json"))
    for candidate in candidates:
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
    return None


def normalize_version(version: str) -> str:
    """The module's version as a plugin version; a pseudo-version means the last tag before it."""
    match = TOLERANT_SEMVER.match(version)
    if match is None:
        raise ValueError("module does not have semver compatible version")
    if PSEUDO_VERSION.match(version):
        major, minor, patch = (int(match[i] or 0) for i in (1, 2, 3))
        if (major, minor, patch) == (0, 0, 0):
            raise ValueError("invalid pseudo-version with no prior tag")
        return f"v{major}.{minor}.{max(patch - 1, 0)}"
    return version


def requirement_for(module: dict[str, Any]) -> PluginRequirement | None:
    """The plugin a module names, or None (not a provider SDK, or no usable version)."""
    module_dir = Path(module["Dir"])
    try:
        info = plugin_file(module_dir)
    except (OSError, ValueError):
        return None
    if info is None or info.get("resource") is not True:
        return None
    name = str(info.get("name") or "")
    if not name:
        # github.com/pulumi/pulumi-aws/sdk/... => aws
        parts = str(module["Path"]).split("/")
        if len(parts) < 3 or "-" not in parts[2]:
            return None
        name = parts[2].split("-", 1)[1]
    try:
        version = normalize_version(str(info.get("version") or module.get("Version") or ""))
        source = str(module_dir)
        parameterization = parameterization_from_json(info.get("parameterization"), source)
        extension = parameterization_from_json(info.get("extensionParameterization"), source)
    except (ValueError, HostError):
        return None
    return PluginRequirement(
        name=name,
        version=version,
        server=str(info.get("server") or ""),
        parameterization=parameterization,
        extension=extension,
    )


def required_plugins(program_dir: Path) -> list[PluginRequirement]:
    """Lenient like the official host: a program outside a module needs no plugins."""
    try:
        gomod = load_gomod(program_dir)
        modules = module_sources(gomod)
    except HostError:
        return []
    return [req for req in map(requirement_for, modules) if req is not None]


def program_dependencies(program_dir: Path, transitive: bool) -> list[tuple[str, str]]:
    """go.mod's requirements (indirect ones only when transitive); replaced ones lose versions."""
    gomod = load_gomod(program_dir)
    return [
        (path, "" if path.rstrip("/") in gomod.replaced else version)
        for path, version, indirect in gomod.requires
        if transitive or not indirect
    ]


def go_version() -> tuple[str, str]:
    """The go executable and its `go version` line."""
    gobin = go_binary()
    return gobin, run_go(["version"], Path(os.getcwd())).strip()
