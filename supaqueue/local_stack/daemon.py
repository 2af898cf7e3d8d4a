"""The local stack's background processes.

`python -m supaqueue.local_stack.daemon --dir <state>` (started by `supaqueue dev up`) is a small
supervisor;
it runs each part as a child process of its own and restarts a part that dies:
- `--part gateway`: the HTTP server (Edge gateway + Management API stand-in) and, below it, one
  Deno process per function;
- `--part net-sender`: the pg_net stand-in's sender, only when `net` is the stand-in (beside the
  real pg_net's worker both would send);
- `--part keeper`: waits; when the supervisor dies without stopping it (kill -9), the kernel tells
  it (PR_SET_PDEATHSIG = SIGUSR2) and it becomes the new supervisor (exec), once the old parts are
  gone, so a killed supervisor comes back as its parts do.
Every other child ends with its parent (local_stack/processes.py), so a killed supervisor leaves
no part behind. SIGTERM stops the keeper, then the parts (the gateway lets functions drain), then
the supervisor; killing the whole process group (as `down` does last) ends everything.
The supervisor writes what runs to `<state>/parts.json` (`/_local/health` reports it). A test may
stop the sender on purpose with `PUT /_local/net-sender {"running": false}` (which creates
`<state>/net-sender.off`; while it exists the sender is not restarted) and start it again with
`{"running": true}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import uvloop
from aiohttp import web

from supaqueue.local_stack import gateway, management_api, rest_api
from supaqueue.local_stack.api_faults import FaultPlan
from supaqueue.local_stack.edge_runtime import DRAIN_MS, EdgeRuntime
from supaqueue.local_stack.extensions import REAL
from supaqueue.local_stack.extensions import detect as detect_extensions
from supaqueue.local_stack.function_store import FunctionStore
from supaqueue.local_stack.postgres import PG_BIN
from supaqueue.local_stack.processes import die_with_parent, signal_when_parent_dies
from supaqueue.local_stack.rate_limit import RateLimiter, limit_from_env
from supaqueue.local_stack.secret_store import SecretStore
from supaqueue.local_stack.state import StackState, StateError, load, write_private

log = logging.getLogger("supaqueue.daemon")

EXIT_PORT_TAKEN = 3
PARTS_FILE = "parts.json"
SENDER_OFF_FILE = "net-sender.off"
RESTART_FIRST_S = 0.5  # first restart delay; doubles per quick death, up to RESTART_MAX_S
RESTART_MAX_S = 10.0
STABLE_S = 30.0  # a part that ran this long starts again at the first delay
POLL_S = 0.1  # how often the test hook looks for the supervisor's answer
# The supervisor sleeps until a signal (a part exited: SIGCHLD; the test hook: SIGUSR1; SIGTERM)
# or a due restart, and looks around at least this often anyway.
SUPERVISOR_TICK_S = 1.0
HOOK_WAIT_S = 20.0


# --- what runs (written by the supervisor, read by the gateway) -------------------------------
def parts_path(state: StackState) -> Path:
    return state.dir / PARTS_FILE


def read_parts(state: StackState) -> dict[str, Any]:
    try:
        data = json.loads(parts_path(state).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the gateway part -------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    parts = read_parts(request.app[gateway.STATE_KEY])
    return web.json_response(
        {
            "status": "ok",
            "net_sender": parts.get("net_sender", "unknown"),
            "net": parts.get("net", "unknown"),
            "vault": parts.get("vault", "unknown"),
        }
    )


async def net_sender_switch(request: web.Request) -> web.Response:
    """Test hook: stop the sender on purpose (not restarted) or start it again."""
    if management_api.bearer_token(request) is None:
        return management_api.error(401, "Unauthorized")
    try:
        body = json.loads(await request.read())
        running = body["running"]
        if not isinstance(running, bool):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return management_api.error(400, 'expected {"running": true | false}')
    state = request.app[gateway.STATE_KEY]
    off = state.dir / SENDER_OFF_FILE
    if running:
        off.unlink(missing_ok=True)
    else:
        off.touch()
    _nudge_supervisor(state)
    wanted = {"running", "not needed"} if running else {"stopped", "not needed"}
    deadline = time.monotonic() + HOOK_WAIT_S
    while time.monotonic() < deadline:
        status = read_parts(state).get("net_sender")
        if status in wanted:
            return web.json_response({"net_sender": status})
        await asyncio.sleep(POLL_S)
    return management_api.error(503, f"the supervisor did not report the sender {wanted}")


def _nudge_supervisor(state: StackState) -> None:
    """Wake the supervisor now (it would look within SUPERVISOR_TICK_S anyway); only the one
    that started this gateway, as written in parts.json."""
    pid = read_parts(state).get("pids", {}).get("supervisor")
    if isinstance(pid, int) and pid == os.getppid():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGUSR1)


def create_app(state: StackState, runtime: EdgeRuntime, store: FunctionStore,
               secrets: SecretStore) -> web.Application:  # fmt: skip
    app = web.Application(
        middlewares=[management_api.guard], client_max_size=management_api.MAX_BODY_BYTES
    )
    app[gateway.STATE_KEY] = state
    app[gateway.STORE_KEY] = store
    app[gateway.RUNTIME_KEY] = runtime
    app[management_api.SECRETS_KEY] = secrets
    app[management_api.LIMITER_KEY] = RateLimiter(limit_from_env())
    app[management_api.FAULTS_KEY] = FaultPlan()

    async def proxy_session(app: web.Application):  # type: ignore[no-untyped-def]
        # Raw bytes both ways: the gateway must not re-encode what functions send.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[gateway.SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(proxy_session)
    app.router.add_get("/_local/health", health)
    app.router.add_put("/_local/net-sender", net_sender_switch)
    gateway.add_routes(app)
    management_api.add_routes(app)
    rest_api.add_routes(app)
    return app


async def serve_gateway(state: StackState) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    store = FunctionStore(state.functions_dir)
    secrets = SecretStore(state.secrets_file)
    runtime = EdgeRuntime(state, store, secrets.values)
    app = create_app(state, runtime, store, secrets)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", state.api_port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%s: %s", state.api_port, exc.strerror or exc)
        await runner.cleanup()
        return EXIT_PORT_TAKEN
    log.info("gateway serving on %s", state.api_url)
    for record in store.all():  # deployed functions come back on `up` or a restart
        runtime.warm(record)

    await stop.wait()
    log.info("gateway stopping")
    await runtime.stop_all()
    await runner.cleanup()
    return 0


# --- the sender part --------------------------------------------------------------------------
async def serve_net_sender(state: StackState) -> int:
    from supaqueue.local_stack.net_sender import run_sender

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # As pg_net's own worker: privileged, reading its settings from the server config.
    await run_sender(state.admin_db_url, stop)
    return 0


# --- the keeper part -------------------------------------------------------------------------
KEEPER_SIGNAL = signal.SIGUSR2  # the kernel sends it to the keeper when the supervisor dies
OLD_PARTS_WAIT_S = 15.0


def _keeper_preexec() -> None:
    # Blocked before exec (the mask survives it): a death reported before the keeper waits for
    # it stays pending instead of killing the keeper.
    signal.pthread_sigmask(signal.SIG_BLOCK, {KEEPER_SIGNAL, signal.SIGTERM, signal.SIGINT})
    signal_when_parent_dies(KEEPER_SIGNAL)


def serve_keeper(state: StackState) -> int:
    """Until SIGTERM (the supervisor stops on purpose: exit 0) or KEEPER_SIGNAL (the supervisor
    died): then take its place."""
    watched = {KEEPER_SIGNAL, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    if signal.sigwait(watched) != KEEPER_SIGNAL:
        return 0
    log.warning("the supervisor died; starting a new one (pid %s)", os.getpid())
    # Our own session and process group, as `up` gives the supervisor: `down` signals it by pid.
    with contextlib.suppress(PermissionError):
        os.setsid()
    state.pid_file.write_text(f"{os.getpid()}\n")
    # The old parts die with their parent (SIGKILL); the new gateway needs the port they held.
    old = [p for p in read_parts(state).get("pids", {}).values() if isinstance(p, int)]
    deadline = time.monotonic() + OLD_PARTS_WAIT_S
    while time.monotonic() < deadline and any(_running(p) for p in old):
        time.sleep(0.05)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "supaqueue.local_stack.daemon", "--dir", str(state.dir)],
    )
    return 1  # not reached


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- the supervisor ---------------------------------------------------------------------------
@dataclass
class Part:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    delay: float = RESTART_FIRST_S
    restarts: int = 0
    ever_started: bool = False
    pids: list[int] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def providers(state: StackState) -> dict[str, str]:
    """What provides `net` and `vault` in the stack's database (the truth, not the plan)."""
    try:
        with psycopg.connect(state.admin_db_url, connect_timeout=10) as conn:
            rows = conn.execute(
                "select extname from pg_catalog.pg_extension where extname = any(%s)",
                (list(REAL),),
            ).fetchall()
        real = {r[0] for r in rows}
    except psycopg.Error as exc:
        log.warning("cannot read the installed extensions (%s); using what is on disk", exc)
        real = set(detect_extensions(PG_BIN).installed)
    return {schema: ("extension" if ext in real else "stand-in") for ext, schema in REAL.items()}


class Supervisor:
    def __init__(self, state: StackState) -> None:
        self.state = state
        self.stopping = False
        self.gateway = Part("gateway")
        self.sender = Part("net-sender")
        self.keeper = Part("keeper")
        self.provided = providers(state)
        self.sender_needed = self.provided["net"] == "stand-in"
        self.written: dict[str, Any] = {}

    def _spawn(self, part: Part) -> None:
        cmd = [sys.executable, "-m", "supaqueue.local_stack.daemon", "--dir", str(self.state.dir)]
        part.proc = subprocess.Popen(
            [*cmd, "--part", part.name],
            stdin=subprocess.DEVNULL,
            cwd=str(self.state.dir),
            preexec_fn=_keeper_preexec if part is self.keeper else die_with_parent,
        )
        part.started_at = time.monotonic()
        if part.ever_started:
            part.restarts += 1
        part.ever_started = True
        log.info("%s started (pid %s)", part.name, part.proc.pid)

    def _reap(self, part: Part) -> int | None:
        """The exit code when the part just died (then schedules its restart), else None."""
        if part.proc is None or part.proc.poll() is None:
            return None
        code = part.proc.returncode
        ran = time.monotonic() - part.started_at
        part.proc = None
        part.delay = RESTART_FIRST_S if ran >= STABLE_S else part.delay
        part.next_start = time.monotonic() + part.delay
        log.warning("%s exited (code %s) after %.1f s; restarting in %.1f s",
                    part.name, code, ran, part.delay)  # fmt: skip
        part.delay = min(part.delay * 2, RESTART_MAX_S)
        return code

    def _sender_status(self) -> str:
        if not self.sender_needed:
            return "not needed"
        if (self.state.dir / SENDER_OFF_FILE).exists():
            return "running" if self.sender.running else "stopped"
        return "running" if self.sender.running else "restarting"

    def _write(self) -> None:
        data = {
            **self.provided,
            "net_sender": self._sender_status(),
            "pids": {
                "supervisor": os.getpid(),
                "gateway": self.gateway.proc.pid if self.gateway.running else None,  # type: ignore[union-attr]
                "net_sender": self.sender.proc.pid if self.sender.running else None,  # type: ignore[union-attr]
            },
            "keeper": self.keeper.proc.pid if self.keeper.running else None,  # type: ignore[union-attr]
            "restarts": {"gateway": self.gateway.restarts, "net_sender": self.sender.restarts},
        }
        if data != self.written:
            write_private(parts_path(self.state), json.dumps(data) + "\n")
            self.written = data

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # Signals write to this pipe, so the wait below ends at once on any of them.
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, lambda _signum, _frame: None)
        (self.state.dir / SENDER_OFF_FILE).unlink(missing_ok=True)  # a fresh `up` sends
        log.info("net: %s, vault: %s", self.provided["net"], self.provided["vault"])
        try:
            while not self.stopping:
                now = time.monotonic()
                self._reap(self.keeper)
                if not self.keeper.running and now >= self.keeper.next_start:
                    self._spawn(self.keeper)
                code = self._reap(self.gateway)
                if code == EXIT_PORT_TAKEN and self.gateway.restarts == 0:
                    return EXIT_PORT_TAKEN  # `up` reports the taken port
                if not self.gateway.running and now >= self.gateway.next_start:
                    self._spawn(self.gateway)
                self._reap(self.sender)
                want_sender = self.sender_needed and not (self.state.dir / SENDER_OFF_FILE).exists()
                if want_sender and not self.sender.running and now >= self.sender.next_start:
                    self._spawn(self.sender)
                elif not want_sender and self.sender.running:
                    log.info("net-sender stopped on purpose")
                    _stop(self.sender, timeout=15)
                    self.sender.delay = RESTART_FIRST_S
                    self.sender.next_start = 0.0
                self._write()
                self._sleep(wake_r)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
            self._shutdown()
        return 0

    def _sleep(self, wake_r: int) -> None:
        """Until a signal, the next due restart, or SUPERVISOR_TICK_S."""
        timeout = SUPERVISOR_TICK_S
        now = time.monotonic()
        for part in (self.gateway, self.sender, self.keeper):
            if not part.running and part.next_start > now:
                timeout = min(timeout, part.next_start - now)
        if not self.stopping:
            select.select([wake_r], [], [], max(timeout, 0.0))
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 512):
                pass

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        log.info("stopping")
        _stop(self.keeper, timeout=10)  # first: a stop on purpose is no death to recover from
        for part in (self.sender, self.gateway):
            if part.running:
                with contextlib.suppress(ProcessLookupError):
                    part.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        _stop(self.sender, timeout=15)
        _stop(self.gateway, timeout=DRAIN_MS / 1000 + 10)
        parts_path(self.state).unlink(missing_ok=True)


def _stop(part: Part, timeout: float) -> None:
    if part.proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        part.proc.send_signal(signal.SIGTERM)
    try:
        part.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        part.proc.kill()
        part.proc.wait(10)
    part.proc = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supaqueue.local_stack.daemon")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--part", choices=["supervisor", "gateway", "net-sender", "keeper"],
                        default="supervisor")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.part} %(name)s %(levelname)s %(message)s",
    )
    try:
        state = load(args.dir.resolve())
    except StateError as exc:
        log.error("%s", exc)
        return 1
    if state is None or not state.api_port:
        log.error("no stack in %s: run `supaqueue dev up`", args.dir)
        return 1
    # uvloop: asyncio's API at a fraction of the CPU per socket event, where every request of
    # the stack passes (benchmarks/gateway_bench.py measures it).
    if args.part == "gateway":
        return uvloop.run(serve_gateway(state))
    if args.part == "net-sender":
        return uvloop.run(serve_net_sender(state))
    if args.part == "keeper":
        return serve_keeper(state)
    return Supervisor(state).run()


if __name__ == "__main__":
    sys.exit(main())
