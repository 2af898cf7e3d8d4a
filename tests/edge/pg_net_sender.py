"""The local stack's pg_net sender (`python -m supaqueue.local_stack.net_sender DSN`) as a process
a test starts and stops explicitly: stopped, dispatches stay queued in `net.http_request_queue`, as
when pg_net lags on Supabase; started again, it sends them all, late."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.toolchain import REPO


@dataclass
class SenderProcess:
    dsn: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> SenderProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log_path.write_bytes(b"")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supaqueue.local_stack.net_sender", self.dsn],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"net sender exited ({self.proc.returncode}):\n{self.log()}")
            if "net sender ready" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"net sender not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: the sender finishes the batch in hand, then exits 0."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
