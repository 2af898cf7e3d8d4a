"""Language hosts under test: start one as the CLI does, and say which host a test ran.

A language may be served by the official host (a Pulumi CLI distribution's, or one the toolchain
built from Go modules) or by our offline equivalent (offline_plugins/). Tests that run programs
announce which one they used, loudly (a warning in pytest's summary), so a green run never hides
that an equivalent stood in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from harness.toolchain import REPO, TOOLBIN

STARTUP_TIMEOUT = 30.0
# The first line of every launcher install-offline-plugins.sh writes for an offline equivalent.
OFFLINE_MARK = "Offline equivalent of the official"


@dataclass
class Host:
    proc: subprocess.Popen[str]
    port: int
    stub: language_pb2_grpc.LanguageRuntimeStub

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str]:
        """Signal the host; return its exit code and everything it wrote to stderr."""
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


@contextmanager
def fake_engine() -> Iterator[tuple[str, grpc.Server]]:
    """A gRPC server standing where the engine would: the host only needs it to answer."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        server.stop(0)


def start_host(module: str, engine: str, extra_env: dict[str, str] | None = None) -> Host:
    """`python -m module`, with flags before the address as the CLI may pass them."""
    env = dict(os.environ, **(extra_env or {}))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    argv = [sys.executable, "-u", "-m", module, "-tracing", "http://127.0.0.1:9", engine]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    if not first_line.strip().isdigit():
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"first stdout line {first_line!r} is not a port; stderr: {err}")
    port = int(first_line)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=STARTUP_TIMEOUT)
    return Host(proc, port, language_pb2_grpc.LanguageRuntimeStub(channel))


def program_info(root: Path, **options: object) -> language_pb2.ProgramInfo:
    opts = struct_pb2.Struct()
    opts.update(options)
    return language_pb2.ProgramInfo(
        root_directory=str(root),
        program_directory=str(root),
        entry_point=".",
        options=opts,
    )


def install_output(host: Host, info: language_pb2.ProgramInfo) -> tuple[str, str]:
    out, err = [], []
    req = language_pb2.InstallDependenciesRequest(info=info)
    for chunk in host.stub.InstallDependencies(req, timeout=300):
        out.append(chunk.stdout.decode())
        err.append(chunk.stderr.decode())
    return "".join(out), "".join(err)


def toolchain_host(language: str) -> tuple[str, Path]:
    """Which host `make toolchain` installed for `language`: ("official" | "offline", path).

    Fails (never skips) when there is none: `make toolchain` installs one for every language.
    """
    link = TOOLBIN / f"pulumi-language-{language}"
    if not link.exists():
        raise RuntimeError(f"{link} is missing: run `make toolchain` first")
    target = link.resolve()
    head = target.read_bytes()[:400]
    kind = "offline" if OFFLINE_MARK.encode() in head else "official"
    return kind, target


def announce_host(language: str, kind: str, where: Path | str) -> None:
    """Say in the test summary which host ran this language's program."""
    label = "OFFICIAL host" if kind == "official" else "OFFLINE EQUIVALENT (offline_plugins/)"
    warnings.warn(f"LANGUAGE HOST {language}: {label}: {where}", UserWarning, stacklevel=2)
