"""InstallDependencies: create the named virtualenv if missing, pip-install requirements.txt."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from offline_plugins.language_host.errors import HostError
from offline_plugins.language_host.options import ProgramOptions
from offline_plugins.language_host.python_env import (
    create_virtualenv,
    interpreter,
    is_virtualenv,
    program_environment,
)

REQUIREMENTS = "requirements.txt"
# One output chunk: which stream ("stdout" | "stderr") and its bytes.
Chunk = tuple[str, bytes]


def requirements_file(opts: ProgramOptions) -> Path | None:
    for folder in (opts.program_dir, opts.root):
        candidate = folder / REQUIREMENTS
        if candidate.is_file():
            return candidate
    return None


def _pump(stream: IO[bytes], name: str, out: queue.Queue[Chunk | None]) -> None:
    for line in iter(stream.readline, b""):
        out.put((name, line))
    out.put(None)


def stream_command(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[Chunk]:
    """Run a command, yielding its stdout and stderr lines as they come; fail on non-zero exit."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: queue.Queue[Chunk | None] = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, "stdout", lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "stderr", lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    finished = 0
    try:
        while finished < len(pumps):
            item = lines.get()
            if item is None:
                finished += 1
            else:
                yield item
    finally:
        if proc.poll() is None:
            proc.kill()  # the caller went away (e.g. the engine cancelled the stream)
        proc.wait()
    if proc.returncode != 0:
        raise HostError(f"`{' '.join(command)}` failed with exit code {proc.returncode}")


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
