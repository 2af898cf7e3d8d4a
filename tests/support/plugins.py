"""Put the repo's offline plugins in front of the Pulumi CLI for a test.

The CLI finds `pulumi-language-python` and `pulumi-resource-<name>` on PATH before anything
else, so a test writes launchers for the checked-out sources into a folder and puts that
folder first on PATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from harness.toolchain import CACHE, REPO, VENV, require

# Files of the CLI build the language host and dynamic providers need next to the launchers.
CLI_COMPANIONS = ("pulumi-language-python-exec", "pulumi-resource-pulumi-python")


def write_launcher(directory: Path, exe_name: str, module: str) -> Path:
    """Write `directory/exe_name`, a script running `python -m module` from the repo's venv."""
    python = require(VENV / "bin" / "python")
    directory.mkdir(parents=True, exist_ok=True)
    launcher = directory / exe_name
    launcher.write_text(
        "#!/bin/sh\n"
        f"# Test launcher for the offline plugin in {REPO / module.replace('.', '/')}\n"
        f'exec "{python}" -u -m {module} "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher


def link_cli_companions(directory: Path) -> None:
    """Link the exec shim (from the toolchain cache) and the dynamic-provider plugin (the repo's
    guarded launcher, as make toolchain does)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in CLI_COMPANIONS:
        own = REPO / "toolchain" / name
        target = own if own.exists() else require(CACHE / "bin" / name)
        link = directory / name
        if not link.exists():
            link.symlink_to(target)


def launcher_env(directory: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with `directory` first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', '')}"
    return env


def language_host_env(directory: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Launcher for the offline Python language host plus its CLI companions, on PATH."""
    write_launcher(directory, "pulumi-language-python", "offline_plugins.language_host")
    link_cli_companions(directory)
    return launcher_env(directory, base)
