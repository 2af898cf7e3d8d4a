"""The Python a program runs with: its virtualenv's interpreter, or python3 from PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from offline_plugins.common.programs import without_own_sources
from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.options import ProgramOptions


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_virtualenv(venv: Path) -> bool:
    return (venv / "pyvenv.cfg").is_file() and venv_python(venv).exists()


def check_virtualenv(opts: ProgramOptions) -> None:
    """Fail with the official host's advice when the `virtualenv` option names no virtualenv."""
    venv = opts.virtualenv
    if venv is None or is_virtualenv(venv):
        return
    state = "doesn't appear to be a virtual environment" if venv.exists() else "doesn't exist"
    raise HostError(
        f"The 'virtualenv' option in Pulumi.yaml is set to {opts.virtualenv_option!r}, but "
        f"{str(venv)!r} {state}. Create it and install the dependencies with "
        f"`python3 -m venv {venv}` and `{venv_python(venv)} -m pip install -r requirements.txt`, "
        "or run `pulumi install`."
    )


def base_python() -> str:
    """The interpreter used when no virtualenv is named (and to create one)."""
    configured = os.environ.get("PULUMI_PYTHON_CMD")
    candidates = [configured] if configured else ["python3", "python"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise HostError(
        f"could not find {' or '.join(candidates)} on PATH; install Python 3 or set the "
        "'virtualenv' option in Pulumi.yaml"
    )


def interpreter(opts: ProgramOptions) -> str:
    if opts.virtualenv is None:
        return base_python()
    check_virtualenv(opts)
    return str(venv_python(opts.virtualenv))


def program_environment(
    opts: ProgramOptions, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for the program's Python: the virtualenv activated, our sources removed."""
    env = without_own_sources(base)
    if opts.virtualenv is not None:
        venv = str(opts.virtualenv.resolve())
        env["VIRTUAL_ENV"] = venv
        env["PATH"] = os.pathsep.join([str(Path(venv) / "bin"), env.get("PATH", "")])
        env.pop("PYTHONHOME", None)
        # Dynamic providers (pulumi-resource-pulumi-python) find the virtualenv through this.
        env["PULUMI_RUNTIME_VIRTUALENV"] = venv
    return env


def create_virtualenv(venv: Path) -> None:
    """Create the virtualenv the options name (what `pulumi install` does when it is missing)."""
    result = subprocess.run(
        [base_python(), "-m", "venv", str(venv)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HostError(
            f"could not create the virtualenv {venv}: {result.stderr.strip() or result.stdout}"
        )
