"""One Deno process per deployed Edge Function, started on demand, replaced on redeploy or a
change of secrets, stopped gracefully (in-flight requests and waitUntil work finish first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from supaqueue.local_stack.function_store import FunctionRecord, FunctionStore
from supaqueue.local_stack.postgres import free_port
from supaqueue.local_stack.processes import die_with_parent
from supaqueue.local_stack.state import StackState
from supaqueue.local_stack.toolchain import INSTALL_DENO, cache_dir, find_deno

log = logging.getLogger("supaqueue.edge")
BOOTSTRAP = Path(__file__).with_name("edge_bootstrap.ts")
BOOT_TIMEOUT_S = 90.0  # a cold DENO_DIR fetches npm: packages on first boot
DRAIN_MS = 60_000  # how long a retiring function may finish in-flight and waitUntil work
PORT_TAKEN_EXIT = 75  # edge_bootstrap.ts: the assigned port was taken before Deno bound it


class BootError(RuntimeError):
    """The function's process did not come up; the message points at its log."""


class PortTaken(BootError):
    """Someone else bound the port chosen for the function first (a race worth one retry)."""


def config_flag(source: Path, entrypoint_path: str, import_map_path: str | None) -> str:
    """How Deno finds a function's configuration (also for the deploy's bundle check)."""
    config = import_map_path
    if config is None and (source / Path(entrypoint_path).parent / "deno.json").exists():
        # Supabase picks up the function folder's deno.json on its own.
        config = str(Path(entrypoint_path).parent / "deno.json")
    if config is None:
        return "--no-config"
    if config.endswith(("deno.json", "deno.jsonc")):
        return f"--config={source / config}"
    return f"--import-map={source / config}"


def deno_env() -> dict[str, str]:
    """Deno's own settings for the stack's Deno commands: the shared cache, no update check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "SUPAQUEUE_"))}
    env.update(
        DENO_DIR=os.environ.get("DENO_DIR") or str(cache_dir() / "deno-dir"),
        DENO_NO_UPDATE_CHECK="1",
        NO_COLOR="1",
    )
    return env


def deno_binary() -> str:
    """The toolchain's Deno (supaqueue.local_stack.toolchain.find_deno)."""
    found = find_deno()
    if found is None:
        raise BootError(f"Deno is not installed: {INSTALL_DENO}")
    return found


def supabase_env(state: StackState) -> dict[str, str]:
    """The default environment of a Supabase Edge Function."""
    return {
        "SUPABASE_URL": state.api_url,
        "SUPABASE_DB_URL": state.db_url,
        "SUPABASE_ANON_KEY": state.anon_key,
        "SUPABASE_SERVICE_ROLE_KEY": state.service_role_key,
        "SUPABASE_PUBLISHABLE_KEYS": json.dumps({"default": state.publishable_key}),
        "SUPABASE_SECRET_KEYS": json.dumps({"default": state.secret_key}),
        # Legacy HS256 projects publish no asymmetric signing keys.
        "SUPABASE_JWKS": json.dumps({"keys": []}),
    }


@dataclass
class Worker:
    slug: str
    key: tuple[int, int]  # (function version, secrets generation) it was started for
    source_dir: str
    port: int
    proc: asyncio.subprocess.Process
    log_file: IO[bytes] = field(repr=False)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


class EdgeRuntime:
    def __init__(
        self,
        state: StackState,
        store: FunctionStore,
        secrets: Callable[[], dict[str, str]],
        drain_ms: int = DRAIN_MS,
    ) -> None:
        self.state = state
        self.store = store
        self.secrets = secrets
        self.drain_ms = drain_ms
        self.generation = 0
        self._workers: dict[str, Worker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[object]] = set()
        self._log_dir = state.logs_dir / "functions"

    # --- lookups -----------------------------------------------------------------------
    async def worker_for(self, record: FunctionRecord) -> Worker:
        """The process serving this version with the current secrets (started if needed)."""
        want = (record.version, self.generation)
        lock = self._locks.setdefault(record.slug, asyncio.Lock())
        async with lock:
            current = self._workers.get(record.slug)
            if current is not None and current.key == want and current.alive:
                return current
            try:
                fresh = await self._spawn(record, want)
            except PortTaken:
                fresh = await self._spawn(record, want)
            self._workers[record.slug] = fresh
            if current is not None:
                self._retire(current)
            return fresh

    def serving_dirs(self, slug: str) -> set[str]:
        worker = self._workers.get(slug)
        return {worker.source_dir} if worker else set()

    # --- changes ---------------------------------------------------------------------------
    def warm(self, record: FunctionRecord) -> None:
        """Start (or replace) the process in the background so the next call finds it ready."""
        task: asyncio.Task[object] = asyncio.create_task(self._warm(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _warm(self, record: FunctionRecord) -> object:
        try:
            return await self.worker_for(record)
        except BootError as exc:
            log.warning("%s", exc)
            return None

    def secrets_changed(self) -> None:
        """New secrets: every function gets a new process (started now, swapped when ready)."""
        self.generation += 1
        for slug in list(self._workers):
            record = self.store.get(slug)
            if record is not None:
                self.warm(record)

    async def discard(self, worker: Worker) -> None:
        """Stop routing to a process that refuses connections; the next call starts another."""
        lock = self._locks.setdefault(worker.slug, asyncio.Lock())
        async with lock:
            if self._workers.get(worker.slug) is worker:
                del self._workers[worker.slug]
                self._retire(worker)

    async def remove(self, slug: str) -> None:
        lock = self._locks.setdefault(slug, asyncio.Lock())
        async with lock:
            worker = self._workers.pop(slug, None)
        if worker is not None:
            task = self._retire(worker)
            task.add_done_callback(lambda _t: self.store.prune(slug, self.serving_dirs(slug)))
        else:
            self.store.prune(slug, set())

    async def stop_all(self) -> None:
        for task in list(self._background):
            task.cancel()
        for slug in list(self._workers):
            self._retire(self._workers.pop(slug))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # --- processes -------------------------------------------------------------------------
    def _command(self, record: FunctionRecord, source: Path) -> list[str]:
        cmd = [deno_binary(), "run", "--allow-all", "--no-prompt", "--no-lock"]
        cmd.append(config_flag(source, record.entrypoint_path, record.import_map_path))
        cmd.append(str(BOOTSTRAP))
        return cmd

    def _env(self, port: int, entrypoint: Path) -> dict[str, str]:
        # The host's environment (TLS roots, proxies) minus anything that could pose as
        # Supabase's or a project secret's value; then Supabase's defaults and the secrets.
        env = {k: v for k, v in deno_env().items() if not k.startswith("PG")}
        env.update(self.secrets())
        env.update(supabase_env(self.state))
        env.update(
            SUPAQUEUE_EDGE_PORT=str(port),
            SUPAQUEUE_EDGE_ENTRYPOINT=entrypoint.as_uri(),
            SUPAQUEUE_EDGE_DRAIN_MS=str(self.drain_ms),
        )
        return env

    async def _spawn(self, record: FunctionRecord, key: tuple[int, int]) -> Worker:
        source = self.store.source_path(record)
        entrypoint = source / record.entrypoint_path
        port = free_port()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{record.slug}.log"
        log_file = log_path.open("ab")
        log_file.write(f"--- boot version {record.version} on port {port} ---\n".encode())
        log_file.flush()
        proc = await asyncio.create_subprocess_exec(
            *self._command(record, source),
            cwd=str(source),
            env=self._env(port, entrypoint),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            preexec_fn=die_with_parent,  # a killed gateway leaves no Deno process behind
        )
        worker = Worker(record.slug, key, record.source_dir, port, proc, log_file)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                log_file.close()
                if proc.returncode == PORT_TAKEN_EXIT:
                    raise PortTaken(f"port {port} for {record.slug} was taken")
                raise BootError(
                    f"function {record.slug} v{record.version} exited while booting "
                    f"(exit {proc.returncode}); see {log_path}"
                )
            if await _accepts(port):
                return worker
            await asyncio.sleep(0.02)
        await self._stop(worker, grace_s=1.0)
        raise BootError(f"function {record.slug} did not listen within {BOOT_TIMEOUT_S:.0f} s")

    def _retire(self, worker: Worker) -> asyncio.Task[None]:
        task = asyncio.create_task(self._stop(worker, grace_s=self.drain_ms / 1000 + 5))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        task.add_done_callback(
            lambda _t: self.store.prune(worker.slug, self.serving_dirs(worker.slug))
        )
        return task

    async def _stop(self, worker: Worker, grace_s: float) -> None:
        if worker.alive:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()
        worker.log_file.close()


async def _accepts(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
