"""Runs an Edge Function folder in real Deno on a 127.0.0.1 port.

By default through the local stack's runtime bootstrap (local_stack/edge_bootstrap.ts: the
Supabase-like `EdgeRuntime.waitUntil`, drain on SIGTERM); `plain=True` uses
tests/edge/serve_function.ts instead, which adds nothing to plain Deno (no EdgeRuntime).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.toolchain import CACHE, REPO
from harness.toolchain import deno as deno_binary

PLAIN_BOOTSTRAP = Path(__file__).with_name("serve_function.ts")
RUNTIME_BOOTSTRAP = REPO / "supaqueue" / "local_stack" / "edge_bootstrap.ts"
# The repo's own functions (the demo target); the dispatcher's source ships in the package.
EDGE = REPO / "edge"
DISPATCHER = REPO / "supaqueue" / "edge"


def edge_source(slug: str) -> Path:
    """The source folder of the function `slug` in this repo."""
    return DISPATCHER if slug == "supaqueue" else EDGE / slug


def deno_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "SUPAQUEUE_"))}
    env["DENO_DIR"] = str(CACHE / "deno-dir")
    env["NO_COLOR"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class FunctionProcess:
    """One Deno process serving edge/<slug>/index.ts with the given environment."""

    slug: str
    env: dict[str, str]
    plain: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> FunctionProcess:
        folder = edge_source(self.slug)
        self.port = free_port()
        args = [deno_binary(), "run", "-A", "--no-prompt", "--config", str(folder / "deno.json")]
        env = deno_env() | self.env
        if self.plain:
            args += [str(PLAIN_BOOTSTRAP), str(self.port), str(folder / "index.ts")]
        else:
            args.append(str(RUNTIME_BOOTSTRAP))
            env |= {
                "SUPAQUEUE_EDGE_PORT": str(self.port),
                "SUPAQUEUE_EDGE_ENTRYPOINT": (folder / "index.ts").as_uri(),
                "SUPAQUEUE_EDGE_DRAIN_MS": "30000",
            }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=folder, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"deno exited ({self.proc.returncode}):\n{self.log()}")
            if _accepts(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"deno did not start serving {self.slug} in {timeout}s:\n{self.log()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, object]]:
        """The JSON log lines the function wrote (one per event)."""
        out = []
        for line in self.log().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log_path.unlink(missing_ok=True)
