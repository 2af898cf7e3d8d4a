"""Child processes of an offline language host: the programs it runs and the installers it streams.

Shared by every language: a Cancel or a shutdown ends what is running, a program's exit code
becomes the RunResponse the official hosts give, and install output reaches the engine line by line.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from pulumi.runtime.proto import language_pb2

import offline_plugins
from offline_plugins.common.language_runtime import HostError

# How long a program gets to stop after SIGTERM before it is killed.
TERMINATE_GRACE_SECONDS = 3.0
# Every Pulumi SDK's runner exits with this code after it has shown the user an actionable
# message; the official hosts then "bail": the engine prints nothing more.
EXITED_AFTER_SHOWING_MESSAGE = 32
# The launcher puts our own sources on PYTHONPATH; no program may inherit that entry.
OWN_SOURCES = str(Path(offline_plugins.__file__).resolve().parent.parent)
# One output chunk: which stream ("stdout" | "stderr") and its bytes.
Chunk = tuple[str, bytes]


class RunningPrograms:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.cancelled = threading.Event()

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.add(proc)
            if self.cancelled.is_set():
                proc.terminate()  # started while a Cancel was under way

    def refuse_if_cancelled(self) -> None:
        """After a Cancel the host runs nothing more, as the official hosts do."""
        if self.cancelled.is_set():
            raise HostError("the language host was cancelled; no more programs are run")

    def remove(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop_all(self) -> None:
        """SIGTERM every running program, then SIGKILL those still alive after the grace period."""
        with self._lock:
            self.cancelled.set()
            procs = list(self._running)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(TERMINATE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def without_own_sources(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: our environment) without the launcher's PYTHONPATH entry."""
    env = dict(os.environ if base is None else base)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != OWN_SOURCES]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def exit_response(code: int) -> language_pb2.RunResponse:
    if code == 0:
        return language_pb2.RunResponse()
    if code == EXITED_AFTER_SHOWING_MESSAGE:
        return language_pb2.RunResponse(bail=True)
    if code < 0:
        return language_pb2.RunResponse(error=f"program was stopped by signal {-code}")
    return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {code}")


def run_to_completion(
    command: list[str], cwd: Path, env: dict[str, str], running: RunningPrograms
) -> language_pb2.RunResponse:
    """Run a program with our stdout/stderr (which the engine shows) and answer its exit."""
    running.refuse_if_cancelled()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,  # the engine's pipe to us is not the program's input
        )
    except OSError as exc:
        return language_pb2.RunResponse(
            error=f"problem executing program (could not run language executor): {exc}"
        )
    running.add(proc)
    try:
        code = proc.wait()
    finally:
        running.remove(proc)
    return exit_response(code)


def _pump(stream: IO[bytes], name: str, out: queue.Queue[Chunk | None]) -> None:
    for line in iter(stream.readline, b""):
        out.put((name, line))
    out.put(None)


def stream_command(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[Chunk]:
    """Run a command, yielding its stdout and stderr lines as they come; fail on non-zero exit."""
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise HostError(f"could not run `{' '.join(command)}`: {exc}") from exc
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
