"""Resource plugins a program needs, derived from its installed Pulumi packages.

Follows the official host: a package counts if it ships `pulumi-plugin.json` or is named
`pulumi-*`/`pulumi_*`; the file's name/version/server win, else they come from the package's
own name and (PEP 440) version; `"resource": false` means the package needs no plugin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from offline_plugins.common.language_runtime import (
    PluginRequirement,
    parameterization_from_json,
)
from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.inventory import InstalledPackage, Inventory

# Packages known to have no plugin although their names say Pulumi.
PACKAGES_WITHOUT_PLUGINS = frozenset({"pulumi-policy", "pulumi-esc-sdk"})
PEP440 = re.compile(
    r"^(?P<release>\d+(?:\.\d+)*)"
    r"(?:(?P<pre_kind>a|b|rc)(?P<pre_num>\d+))?"
    r"(?:\.post(?P<post>\d+))?"
    r"(?:\.dev(?P<dev>\d+))?$"
)
PRE_RELEASE = {"a": "alpha", "b": "beta", "rc": "rc"}


def plugin_version(package_version: str) -> str | None:
    """PEP 440 → semver (1.0 → 1.0.0, 1.2.3a4 → 1.2.3-alpha.4, 1.2.3.post4 → 1.2.3+post4).

    None when the version has no semver equivalent (epochs, local versions, ...).
    """
    match = PEP440.match(package_version.strip())
    if match is None:
        return None
    release = match["release"].split(".")
    release += ["0"] * (3 - len(release))
    result = ".".join(release)
    if match["pre_kind"]:
        result += f"-{PRE_RELEASE[match['pre_kind']]}.{match['pre_num']}"
    build = ""
    if match["post"] is not None:
        build += f"post{match['post']}"
    if match["dev"] is not None:
        build += f"dev{match['dev']}"
    return f"{result}+{build}" if build else result


def read_plugin_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HostError(f"could not read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise HostError(f"{path} must hold a JSON object")
    return data


def is_pulumi_package(pkg: InstalledPackage) -> bool:
    if pkg.key in PACKAGES_WITHOUT_PLUGINS:
        return False
    return pkg.plugin_file is not None or pkg.name.startswith(("pulumi-", "pulumi_"))


def requirement_for(pkg: InstalledPackage) -> PluginRequirement | None:
    info = read_plugin_file(pkg.plugin_file) if pkg.plugin_file else {}
    if pkg.plugin_file and not info.get("resource", False):
        return None
    name = str(info.get("name") or "") or pkg.name.removeprefix("pulumi-")
    version = str(info.get("version") or "") or plugin_version(pkg.version)
    if not version:
        return None  # the official host skips packages whose plugin version it cannot tell
    parameterization = parameterization_from_json(
        info.get("parameterization"), str(pkg.plugin_file)
    )
    return PluginRequirement(
        name=name,
        version=version if version.startswith("v") else f"v{version}",
        server=str(info.get("server") or ""),
        parameterization=parameterization,
    )


def required_plugins(inventory: Inventory) -> list[PluginRequirement]:
    found = []
    for pkg in inventory.packages:
        if is_pulumi_package(pkg):
            requirement = requirement_for(pkg)
            if requirement is not None:
                found.append(requirement)
    return found
