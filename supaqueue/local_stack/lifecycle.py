"""`supaqueue dev up/down/status/destroy`: start and stop the cluster and the daemon.

Every failure raises `StackError` with one line that says what failed; `up` undoes whatever
it started before raising, so a failed `up` leaves nothing half-started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from supaqueue.local_stack.edge_runtime import DRAIN_MS
from supaqueue.local_stack.postgres import (
    ADMIN_ROLE,
    USER_ROLE,
    Cluster,
    ClusterError,
    free_port,
    port_in_use,
)
from supaqueue.local_stack.state import STACK_FILE, StackState, StateError, load, load_or_create
from supaqueue.local_stack.toolchain import local_stack_problems

HEALTH_TIMEOUT_S = 15.0
DOWN_TIMEOUT_S = DRAIN_MS / 1000 + 15
EXIT_PORT_TAKEN = 3  # the daemon's exit code when its port is taken


class StackError(Exception):
    """A one-line, user-facing reason why a command failed."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (Postgres adds DETAIL/HINT lines, ClusterError the
    server log), prefixed with its kind when that is not already a StackError."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, StackError | ClusterError):
        return first
    return f"{type(exc).__name__}: {first}" if text else first


def cluster_for(state: StackState) -> Cluster:
    legacy = not state.admin_password  # made before the hosted role model: postgres is superuser
    return Cluster(
        data_dir=state.pgdata,
        port=state.postgres_port,
        password=state.db_password,
        log_file=state.logs_dir / "postgres.log",
        admin_password=state.admin_password,
        admin_user=USER_ROLE if legacy else ADMIN_ROLE,
    )


def _load(state_dir: Path) -> StackState | None:
    try:
        return load(state_dir)
    except StateError as exc:
        raise StackError(str(exc)) from exc


# --- the daemon process ---------------------------------------------------------------------
def daemon_pid(state: StackState) -> int | None:
    """The pid of this stack's daemon when it runs (a stale or reused pid does not count)."""
    try:
        pid = int(state.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    if b"supaqueue.local_stack.daemon" in cmdline and str(state.dir).encode() in cmdline:
        return pid
    return None


def healthy(state: StackState, timeout: float = 1.0) -> bool:
    try:
        response = httpx.get(f"{state.api_url}/_local/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _answering(state: StackState, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether this stack's daemon answers within `timeout`: a supervisor that was killed is
    replaced by its keeper (local_stack/daemon.py) within moments, so one not answering yet gets
    that long while it runs."""
    deadline = time.monotonic() + timeout
    while daemon_pid(state) is not None:
        if healthy(state, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return False


def _answering_soon(state: StackState) -> None:
    """Waits (at most HEALTH_TIMEOUT_S) until a daemon writes its pid and answers."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline and _daemon_processes(state):
        if daemon_pid(state) is not None and healthy(state, timeout=0.5):
            return
        time.sleep(0.1)


def _spawn_daemon(state: StackState) -> subprocess.Popen[bytes]:
    state.logs_dir.mkdir(parents=True, exist_ok=True)
    with (state.logs_dir / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supaqueue.local_stack.daemon", "--dir", str(state.dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(state.dir),
            start_new_session=True,  # survives the CLI; `down` signals its process group
        )
    state.pid_file.write_text(f"{proc.pid}\n")
    return proc


def _wait_healthy(state: StackState, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code == EXIT_PORT_TAKEN:
            raise StackError(f"API port {state.api_port} on 127.0.0.1 is already in use")
        if code is not None:
            raise StackError(
                f"the daemon exited with code {code}; see {state.logs_dir / 'daemon.log'}"
            )
        if healthy(state, timeout=0.5):
            return
        time.sleep(0.05)
    raise StackError(f"the daemon did not answer within {HEALTH_TIMEOUT_S:.0f} s")


def _stop_daemon(state: StackState, pid: int, timeout: float = DOWN_TIMEOUT_S) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    # The daemon's session also holds its Deno children: nothing of it may outlive `down`.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    while _alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    state.pid_file.unlink(missing_ok=True)


def _orphaned_functions(state: StackState) -> list[int]:
    """Deno processes of this stack whose daemon died without stopping them (e.g. SIGKILL)."""
    functions_dir = str(state.functions_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cwd.startswith(functions_dir) and b"edge_bootstrap.ts" in cmdline:
            found.append(int(entry.name))
    return found


def _daemon_processes(state: StackState) -> list[int]:
    """Every process of this stack's daemon (supervisor, parts, a keeper taking the supervisor's
    place), whatever `daemon.pid` says: a keeper writes its pid only once it has taken over."""
    mark = str(state.dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"supaqueue.local_stack.daemon" in cmdline
            and mark in cmdline
            and _alive(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def _kill_daemon_leftovers(state: StackState) -> None:
    """After `down` stopped the supervisor: any process of the daemon still there (a keeper that
    was taking a killed supervisor's place, say) is killed, so nothing starts again."""
    deadline = time.monotonic() + 5
    while (left := _daemon_processes(state)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _kill_orphaned_functions(state: StackState) -> None:
    for pid in _orphaned_functions(state):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child (tests): reap it
        return False
    return True


def _check_reachable_by_postgres(state_dir: Path) -> None:
    """As root, Postgres runs as the `postgres` OS user, which must be able to enter the folder."""
    if os.geteuid() != 0:
        return
    for folder in [state_dir, *state_dir.parents]:
        if folder.exists() and not folder.stat().st_mode & 0o001:
            raise StackError(
                f"the postgres OS user cannot enter {folder} (mode "
                f"{oct(folder.stat().st_mode & 0o777)}); chmod o+x it or choose another --dir"
            )


# --- commands -------------------------------------------------------------------------------
def up(state_dir: Path) -> tuple[StackState, bool]:
    """Start the stack; returns (state, True) when it was already running. Any failure is one
    StackError line, and whatever this call started is stopped again."""
    try:
        return _up(state_dir)
    except StackError:
        raise
    except Exception as exc:
        raise StackError(one_line(exc)) from exc


def _up(state_dir: Path) -> tuple[StackState, bool]:
    # What the machine lacks, before anything is made: the state folder included.
    missing = local_stack_problems()
    if missing:
        raise StackError("; ".join(missing))
    try:
        state = load_or_create(state_dir)
    except (StateError, OSError) as exc:
        raise StackError(f"cannot use state folder {state_dir}: {exc}") from exc
    if not state.postgres_port or not state.api_port:
        state.postgres_port = state.postgres_port or free_port()
        state.api_port = state.api_port or free_port()
        state.save()
    if not state.admin_password and not state.pgdata.joinpath("PG_VERSION").exists():
        state.admin_password = secrets.token_hex(16)  # no cluster yet: start on the role model
        state.save()
    _check_reachable_by_postgres(state.dir)
    cluster = cluster_for(state)
    pid = daemon_pid(state)
    pg_running = cluster.is_running()
    if pid is not None and pg_running and healthy(state):
        return state, True
    if not pg_running and port_in_use(state.postgres_port):
        raise StackError(
            f"Postgres port {state.postgres_port} on 127.0.0.1 is already in use "
            f"(kept in {state.stack_file}; free it or edit postgres_port)"
        )
    if pid is None and _daemon_processes(state):
        # A keeper is taking a killed supervisor's place: let it finish rather than start another.
        _answering_soon(state)
        pid = daemon_pid(state)
        if pid is not None and pg_running and healthy(state):
            return state, True
    if pid is None:
        _kill_orphaned_functions(state)
    if pid is None and port_in_use(state.api_port):
        raise StackError(
            f"API port {state.api_port} on 127.0.0.1 is already in use "
            f"(kept in {state.stack_file}; free it or edit api_port)"
        )

    started_pg = False
    proc: subprocess.Popen[bytes] | None = None
    try:
        cluster.init()
        if not pg_running:
            cluster.start()
            started_pg = True
        cluster.bootstrap()
        if pid is not None and not _answering(state):
            pid = daemon_pid(state)  # a keeper that took the supervisor's place has its own
            if pid is not None:
                _stop_daemon(state, pid, timeout=5.0)  # alive but unresponsive: replace it
            pid = None
        if pid is None:
            proc = _spawn_daemon(state)
            _wait_healthy(state, proc)
    except Exception as exc:
        # Anything (a database error while bootstrapping, too): undo what this call started and
        # say in one line what failed, never a traceback.
        if proc is not None:
            _stop_daemon(state, proc.pid, timeout=5.0)
        if started_pg:
            with contextlib.suppress(Exception):
                cluster.stop()
        raise StackError(one_line(exc)) from exc
    return state, False


def down(state_dir: Path) -> bool:
    """Stop everything; False when there was nothing to stop."""
    state = _load(state_dir)
    if state is None:
        return False
    stopped = False
    pid = daemon_pid(state)
    if pid is not None:
        _stop_daemon(state, pid)
        stopped = True
    _kill_daemon_leftovers(state)
    state.pid_file.unlink(missing_ok=True)
    _kill_orphaned_functions(state)
    cluster = cluster_for(state)
    if cluster.is_running():
        try:
            cluster.stop()
        except ClusterError as exc:
            raise StackError(str(exc).splitlines()[0]) from exc
        stopped = True
    return stopped


def running_state(state_dir: Path) -> StackState:
    state = _load(state_dir)
    if state is None:
        raise StackError(f"no local stack in {state_dir}: run `supaqueue dev up`")
    if not cluster_for(state).is_running() or not _answering(state):
        raise StackError(f"the local stack in {state_dir} is not running: run `supaqueue dev up`")
    return state


def destroy(state_dir: Path) -> bool:
    """`down`, then remove the state folder (data included). False when there was none."""
    if not state_dir.exists():
        return False
    if not (state_dir / STACK_FILE).exists() and any(state_dir.iterdir()):
        raise StackError(
            f"{state_dir} holds no local stack ({STACK_FILE} missing); not removing it"
        )
    down(state_dir)
    shutil.rmtree(state_dir)
    return True
