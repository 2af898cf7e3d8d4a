"""What is installed in a program's Python, as told by inventory_probe running inside it."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from offline_plugins.language_host import inventory_probe
from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.options import ProgramOptions
from offline_plugins.language_host.python_env import interpreter, program_environment

PROBE_SOURCE = Path(inventory_probe.__file__).read_text(encoding="utf-8")
PROBE_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    location: str
    requires: list[str] = field(default_factory=list)
    plugin_file: str | None = None

    @property
    def key(self) -> str:
        return normalize(self.name)


@dataclass(frozen=True)
class Inventory:
    executable: str
    version: str
    packages: list[InstalledPackage]

    def top_level(self) -> list[InstalledPackage]:
        """Packages no other installed package requires (what `pip list --not-required` shows)."""
        required = {name for pkg in self.packages for name in pkg.requires}
        return [pkg for pkg in self.packages if pkg.key not in required]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def take_inventory(opts: ProgramOptions) -> Inventory:
    """Run the probe with the program's interpreter and environment."""
    python = interpreter(opts)
    try:
        # `-c` rather than the file path: the probe's folder must not shadow the program's modules.
        result = subprocess.run(
            [python, "-c", PROBE_SOURCE],
            cwd=opts.program_dir if opts.program_dir.is_dir() else None,
            env=program_environment(opts),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"could not list the packages installed for {python}: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise HostError(f"could not list the packages installed for {python}: {detail[0]}")
    try:
        raw = json.loads(result.stdout)
        packages = [InstalledPackage(**pkg) for pkg in raw["packages"]]
        return Inventory(executable=raw["executable"], version=raw["version"], packages=packages)
    except (ValueError, KeyError, TypeError) as exc:
        raise HostError(f"unexpected package listing from {python}: {exc}") from exc
