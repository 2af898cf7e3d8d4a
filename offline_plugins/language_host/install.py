"""InstallDependencies: create the named virtualenv if missing, pip-install requirements.txt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from offline_plugins.common.programs import Chunk, stream_command
from offline_plugins.language_host.options import ProgramOptions
from offline_plugins.language_host.python_env import (
    create_virtualenv,
    interpreter,
    is_virtualenv,
    program_environment,
)

REQUIREMENTS = "requirements.txt"


def requirements_file(opts: ProgramOptions) -> Path | None:
    for folder in (opts.program_dir, opts.root):
        candidate = folder / REQUIREMENTS
        if candidate.is_file():
            return candidate
    return None


def install_dependencies(opts: ProgramOptions) -> Iterator[Chunk]:
    yield "stdout", b"Installing dependencies...\n\n"
    venv = opts.virtualenv
    if venv is not None and not is_virtualenv(venv):
        if venv.exists() and any(venv.iterdir()):
            interpreter(opts)  # raises the clear "not a virtual environment" error
        yield "stdout", f"Creating virtual environment {venv}...\n".encode()
        create_virtualenv(venv)
    requirements = requirements_file(opts)
    if requirements is None:
        yield "stdout", f"No {REQUIREMENTS} found; nothing to install.\n".encode()
    else:
        command = [interpreter(opts), "-m", "pip", "install", "-r", str(requirements)]
        yield "stdout", f"Running {' '.join(command)}\n".encode()
        yield from stream_command(command, requirements.parent, program_environment(opts))
    yield "stdout", b"Finished installing dependencies\n\n"
