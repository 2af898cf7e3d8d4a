"""The programs the host is running, so a Cancel or a shutdown can end them."""

from __future__ import annotations

import subprocess
import threading

# How long a program gets to stop after SIGTERM before it is killed.
TERMINATE_GRACE_SECONDS = 3.0


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
