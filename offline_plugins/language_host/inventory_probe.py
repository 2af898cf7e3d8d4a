"""Run by the program's own Python (never imported by the host): describe that environment as JSON.

Stdlib only, because it runs in whatever virtualenv the project names. Prints one JSON object:
the interpreter, its version, and every installed distribution with the names it requires and
the path of its `pulumi-plugin.json` (older packages: `pulumiplugin.json`) if it ships one.
"""

import json
import os
import platform
import re
import sys
from importlib import metadata

PLUGIN_FILES = ("pulumi-plugin.json", "pulumiplugin.json")
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def plugin_file(dist, name):
    """Where the distribution's plugin file is, looking where the official host looks first."""
    location = str(dist.locate_file(""))
    module = name.replace("-", "_")
    candidates = [os.path.join(location, module, f) for f in PLUGIN_FILES]
    # The module directory may be named differently from the distribution: ask its RECORD.
    for entry in dist.files or ():
        parts = entry.parts
        if len(parts) == 2 and parts[1] in PLUGIN_FILES:
            candidates.append(str(dist.locate_file(entry)))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def requirements(dist):
    """Names this distribution needs unconditionally (requirements of extras do not count)."""
    names = []
    for requirement in dist.requires or ():
        if "extra" in requirement.partition(";")[2]:
            continue
        match = REQUIREMENT_NAME.match(requirement)
        if match:
            names.append(normalize(match.group(1)))
    return names


def describe():
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or normalize(name) in packages:
            continue  # an earlier sys.path entry shadows later copies, as for imports
        packages[normalize(name)] = {
            "name": name,
            "version": dist.version,
            "location": str(dist.locate_file("")),
            "requires": requirements(dist),
            "plugin_file": plugin_file(dist, name),
        }
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "packages": sorted(packages.values(), key=lambda p: normalize(p["name"])),
    }


if __name__ == "__main__":
    json.dump(describe(), sys.stdout)
