"""Running one create/update/delete script as a child process, the way upstream's `run` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

DEFAULT_INTERPRETER = ("/bin/sh", "-c")
STDOUT_VAR = "PULUMI_COMMAND_STDOUT"
STDERR_VAR = "PULUMI_COMMAND_STDERR"
_CHUNK = 65536
# After the script exits, how long to wait for its output pipes to close. A background child
# that inherited them can hold them open for its whole life; upstream waits for it, we stop.
PIPE_GRACE_SECONDS = 2.0


class CommandFailed(Exception):
    """The script could not run or exited non-zero; the message is what the user sees."""


@dataclass
class Invocation:
    script: str
    interpreter: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    dir: str | None = None
    stdin: str | None = None
    previous_stdout: str = ""
    previous_stderr: str = ""
    add_previous_output: bool = True
    timeout: float = 0.0  # seconds; 0 = none (the engine sends custom timeouts here)
    secret_values: list[str] = field(default_factory=list)  # masked in messages and logs
    # Called with ("stdout" | "stderr", line) for each output line while the script runs.
    on_line: Callable[[str, str], None] | None = None


@dataclass
class Result:
    stdout: str
    stderr: str


def _environment(inv: Invocation) -> dict[str, str]:
    env = dict(os.environ)
    env.update(inv.environment)
    # Upstream only passes the previous outputs when they are non-empty.
    if inv.add_previous_output:
        if inv.previous_stdout:
            env[STDOUT_VAR] = inv.previous_stdout
        if inv.previous_stderr:
            env[STDERR_VAR] = inv.previous_stderr
    return env


def mask(text: str, secret_values: Iterable[str]) -> str:
    for value in sorted({v for v in secret_values if v}, key=len, reverse=True):
        text = text.replace(value, "[secret]")
    return text


class Runner:
    """Runs scripts and remembers the live ones so Cancel can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()

    def cancel(self) -> None:
        with self._lock:
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    def run(self, inv: Invocation) -> Result:
        argv = [*(inv.interpreter or DEFAULT_INTERPRETER), inv.script]
        if inv.dir is not None and not os.path.isdir(inv.dir):
            raise CommandFailed(f"dir {inv.dir!r} does not exist or is not a directory")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=inv.dir,
                env=_environment(inv),
                stdin=subprocess.PIPE if inv.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Own process group: a timeout or Cancel stops the script's children too.
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandFailed(f"cannot start interpreter {argv[0]!r}: {exc.strerror}") from None
        with self._lock:
            self._live.add(proc)
        try:
            return self._collect(proc, inv)
        finally:
            with self._lock:
                self._live.discard(proc)

    def _collect(self, proc: subprocess.Popen[bytes], inv: Invocation) -> Result:
        stdout, stderr, combined = bytearray(), bytearray(), bytearray()
        lock = threading.Lock()

        def pump(stream: IO[bytes], own: bytearray, name: str) -> None:
            pending = b""
            # Chunks land in `combined` in arrival order, like upstream's shared writer.
            while chunk := stream.read1(_CHUNK):  # type: ignore[attr-defined]
                with lock:
                    own.extend(chunk)
                    combined.extend(chunk)
                if inv.on_line is not None:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        _report(inv, name, line)
            if pending and inv.on_line is not None:
                _report(inv, name, pending)

        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, stdout, "stdout"), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, stderr, "stderr"), daemon=True),
        ]
        if inv.stdin and proc.stdin is not None:
            pumps.append(threading.Thread(target=_feed, args=(proc.stdin, inv.stdin), daemon=True))
        for thread in pumps:
            thread.start()
        timed_out = False
        try:
            proc.wait(timeout=inv.timeout or None)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
        for thread in pumps:
            thread.join(timeout=PIPE_GRACE_SECONDS)
        with lock:
            stdout, stderr, combined = bytearray(stdout), bytearray(stderr), bytearray(combined)

        if timed_out or proc.returncode != 0:
            if timed_out:
                status = f"timed out after {inv.timeout:g}s"
            elif proc.returncode < 0:
                status = f"signal: {signal.Signals(-proc.returncode).name}"
            else:
                status = f"exit status {proc.returncode}"
            output = combined.decode(errors="replace")
            message = f"{status}: running {json.dumps(inv.script)}:\n{output}"
            raise CommandFailed(mask(message, inv.secret_values))
        return Result(_text(stdout), _text(stderr))


def _report(inv: Invocation, stream: str, line: bytes) -> None:
    callback = inv.on_line  # read once: the other stream's pump may switch it off
    if callback is None:
        return
    try:
        callback(stream, mask(line.decode(errors="replace"), inv.secret_values))
    except Exception:  # showing progress must never break the command itself
        inv.on_line = None


def _text(data: bytearray) -> str:
    # Upstream drops exactly one trailing newline.
    return data.decode(errors="replace").removesuffix("\n")


def _feed(pipe: IO[bytes], text: str) -> None:
    try:
        pipe.write(text.encode())
    except BrokenPipeError:
        pass  # the script did not read all of its stdin; not an error upstream either
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
