"""What a Node.js program has installed: its resource plugins and its dependencies.

Plugins follow the official host (getPackagesFromDir): every package.json below a node_modules
folder anywhere under the program folder (symlinks followed once, policy packs skipped) whose
`pulumi` section says `"resource": true` names a plugin; the name and version come from that
section, else from the package's own name (`@pulumi/x` -> `x`) and version.
Dependencies come from package-lock.json, as the official host's npm support reads them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_plugins.common.language_runtime import (
    HostError,
    PluginRequirement,
    parameterization_from_json,
)

SDK_PACKAGE = "@pulumi/pulumi"
POLICY_PACK_FILES = ("PulumiPolicy.yaml", "PulumiPolicy.yml")
LOCK_FILE = "package-lock.json"


@dataclass
class Scan:
    plugins: list[PluginRequirement]
    # Where each copy of @pulumi/pulumi is installed, and its version.
    sdk_versions: dict[str, str]
    problems: list[str]


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def plugin_name(info: dict[str, Any], pulumi: dict[str, Any]) -> str:
    if pulumi.get("name"):
        return str(pulumi["name"])
    name = str(info.get("name") or "")
    if not name:
        raise ValueError('missing expected "name" property')
    if name.startswith("@pulumi/"):
        return name.split("/", 1)[1]
    raise ValueError(
        f"Missing property \"name\" for the third-party plugin '{name}' inside package.json "
        'under the "pulumi" section.'
    )


def plugin_version(info: dict[str, Any], pulumi: dict[str, Any]) -> str:
    version = str(pulumi.get("version") or info.get("version") or "")
    if not version:
        raise ValueError('Missing expected "version" property')
    return version if version.startswith("v") else f"v{version}"


def requirement_for(info: dict[str, Any], source: str) -> PluginRequirement | None:
    pulumi = info.get("pulumi")
    if not isinstance(pulumi, dict) or pulumi.get("resource") is not True:
        return None
    return PluginRequirement(
        name=plugin_name(info, pulumi),
        version=plugin_version(info, pulumi),
        server=str(pulumi.get("server") or ""),
        parameterization=parameterization_from_json(pulumi.get("parameterization"), source),
        extension=parameterization_from_json(pulumi.get("extensionParameterization"), source),
    )


def _is_policy_pack(folder: Path) -> bool:
    return any((folder / name).is_file() for name in POLICY_PACK_FILES)


def scan_program(program_dir: Path) -> Scan:
    """Walk the program folder as the official host does, collecting plugins and SDK copies."""
    scan = Scan(plugins=[], sdk_versions={}, problems=[])
    visited: set[str] = set()
    # (folder, whether it lies inside a node_modules folder); an explicit stack, no recursion limit.
    stack: list[tuple[Path, bool]] = [(program_dir.resolve(), False)]
    while stack:
        folder, in_node_modules = stack.pop()
        if str(folder) in visited:
            continue
        visited.add(str(folder))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            scan.problems.append(f"reading plugin dir {folder}: {exc}")
            continue
        below = in_node_modules or folder.name == "node_modules"
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                if entry.is_symlink():
                    path = path.resolve(strict=True)
            except OSError as exc:
                scan.problems.append(f"resolving link in plugin dir {entry.path}: {exc}")
                continue
            if is_dir:
                if not _is_policy_pack(path):
                    stack.append((path, below))
            elif below and entry.name == "package.json":
                _read_package(path, scan)
    return scan


def _read_package(path: Path, scan: Scan) -> None:
    try:
        info = _read_json(path)
    except (OSError, ValueError) as exc:
        scan.problems.append(f"unmarshaling package.json {path}: {exc}")
        return
    if info.get("name") == SDK_PACKAGE:
        scan.sdk_versions[str(path)] = str(info.get("version", ""))
    try:
        requirement = requirement_for(info, str(path))
    except (ValueError, HostError) as exc:
        scan.problems.append(f"unmarshaling package.json {path}: {exc}")
        return
    if requirement is not None:
        scan.plugins.append(requirement)


def _major(version: str) -> int | None:
    head = version.lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def warn_on_incompatible_sdks(sdk_versions: dict[str, str]) -> None:
    """Two copies of @pulumi/pulumi with different major versions break a program: say so."""
    copies = list(sdk_versions.items())
    if len(copies) < 2:
        return
    first_path, first_version = copies[0]
    for path, version in copies[1:]:
        if _major(version) != _major(first_version):
            print(
                "Found incompatible versions of @pulumi/pulumi. Differing major versions are "
                f"not supported.\n  Version {first_version} referenced at {first_path}\n"
                f"  Version {version} referenced at {path}",
                file=sys.stderr,
            )
            return


def required_plugins(program_dir: Path) -> list[PluginRequirement]:
    scan = scan_program(program_dir)
    warn_on_incompatible_sdks(scan.sdk_versions)
    # Like the official host, a problem with one package never hides the others' plugins.
    for problem in scan.problems:
        print(f"one or more errors while discovering plugins: {problem}", file=sys.stderr)
    return scan.plugins


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str


def _find_up(start: Path, name: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / name).is_file():
            return folder / name
    return None


def program_dependencies(program_dir: Path, transitive: bool) -> list[Dependency]:
    """The packages package-lock.json records; only package.json's own ones unless transitive."""
    lock_path = _find_up(program_dir.resolve(), LOCK_FILE)
    if lock_path is None:
        raise HostError(
            f"no {LOCK_FILE} found (searching upwards from {program_dir}); run `pulumi install` "
            "(npm install) first"
        )
    try:
        lock = _read_json(lock_path)
    except (OSError, ValueError) as exc:
        raise HostError(f"could not parse {lock_path}: {exc}") from exc
    found: list[Dependency] = []
    packages = lock.get("packages")
    if isinstance(packages, dict):  # lockfileVersion 2 and 3
        for key, entry in packages.items():
            if not key or not isinstance(entry, dict) or "node_modules/" not in key:
                continue
            if entry.get("link"):
                continue
            name = str(entry.get("name") or key.rsplit("node_modules/", 1)[1])
            found.append(Dependency(name, str(entry.get("version", ""))))
    else:  # lockfileVersion 1
        for name, entry in (lock.get("dependencies") or {}).items():
            if isinstance(entry, dict):
                found.append(Dependency(str(name), str(entry.get("version", ""))))
    if transitive:
        return found
    manifest_path = lock_path.parent / "package.json"
    try:
        manifest = _read_json(manifest_path)
    except (OSError, ValueError) as exc:
        raise HostError(f"could not read {manifest_path}: {exc}") from exc
    direct = set(manifest.get("dependencies") or {}) | set(manifest.get("devDependencies") or {})
    result = []
    for dep in found:
        if dep.name in direct:
            result.append(dep)
            direct.discard(dep.name)  # a package counts once
    return result
