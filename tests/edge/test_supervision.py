"""The local stack looks after itself: under load, kill -9 the pg_net sender, the gateway and a
function's Deno process in turn; each comes back (or is started again on the next call) and
every job still finishes. Killing the supervisor leaves no part of the stack running.

A stack of its own (killing parts of the session's stack would disturb other tests).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from harness import procs
from harness.edge_engine import Engine
from harness.engine import install
from harness.function_process import DISPATCHER, EDGE
from supaqueue.edge_source import source_files
from tests.conftest import LocalStack, supaqueue_dev

T = TypeVar("T")
JOBS = 40
DEADLINE_S = 300.0  # generous: a loaded machine, and a lost dispatch waits out its lease


def wait_for(what: str, fetch: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def parts(stack: LocalStack) -> dict[str, Any]:
    try:
        return dict(json.loads((stack.dir / "parts.json").read_text()))
    except (OSError, ValueError):
        return {}


def stack_processes(stack: LocalStack) -> list[int]:
    """Every process of the stack but Postgres (daemon, parts, functions)."""
    return procs.mentioning(stack.dir, but_postgres=True)


def healthy(stack: LocalStack) -> bool:
    try:
        return httpx.get(f"{stack.env['API_URL']}/_local/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


@pytest.fixture(scope="module")
def own_stack() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-supervision-"))
    os.chmod(root, 0o755)
    state_dir = root / "stack"
    try:
        started = supaqueue_dev("up", "--dir", str(state_dir))
        assert started.returncode == 0, started.stderr
        status = supaqueue_dev("status", "-o", "env", "--dir", str(state_dir))
        env = dict(line.split("=", 1) for line in status.stdout.splitlines() if "=" in line)
        yield LocalStack(state_dir, env)
    finally:
        supaqueue_dev("destroy", "--dir", str(state_dir))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(own_stack: LocalStack) -> Iterator[Engine]:
    secret = secrets.token_urlsafe(32)
    own_stack.deploy(
        "supaqueue", dict(source_files(DISPATCHER)), verify_jwt=False,
        import_map="deno.json",
    )  # fmt: skip
    own_stack.deploy("demo-target", dict(source_files(EDGE / "demo-target")),
                     import_map="deno.json")  # fmt: skip
    created = mgmt(own_stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}])
    assert created.status_code == 201, created.text
    install(own_stack.env["DB_URL"], own_stack.env["FUNCTIONS_URL"], secret)
    eng = Engine(own_stack.env["DB_URL"])
    try:
        yield eng
    finally:
        eng.close()


def deno_of(stack: LocalStack, slug: str) -> list[int]:
    return procs.working_in(stack.dir / "functions" / slug)


@pytest.mark.timeout(600)
def test_killing_each_part_under_load_loses_no_job(own_stack: LocalStack, engine: Engine) -> None:
    queue = engine.queue("demo-target", timeout_ms=5000, max_attempts=50)
    # A dispatch lost with a killed part is retried once its lease (timeout + grace) expires; a
    # call cut off with the gateway keeps its worker for the target's wall clock (sql/0017), here
    # a small one: the demo target runs 300 ms.
    engine.conn.execute(
        "update supaqueue.queue set lease_grace_ms = 1000, backoff_base_ms = 200,"
        " backoff_max_ms = 2000, target_wall_clock_ms = 2000 where id = %s",
        (queue,),
    )
    engine.conn.execute("select supaqueue.set_worker_count(%s, 4)", (queue,))
    jobs = [engine.enqueue(queue, {"sleep_ms": 300, "n": n}) for n in range(JOBS)]

    def done() -> int:
        row = engine.conn.execute(
            "select count(*) as n from supaqueue.job where id = any(%s::uuid[])"
            " and status = 'success'",
            (jobs,),
        ).fetchone()
        return int(row["n"]) if row else 0

    wait_for("a first job done", lambda: done() >= 1, timeout=120)

    # 1. the pg_net sender (the stand-in's; the real pg_net's worker is Postgres's own)
    before = parts(own_stack)
    if before["net_sender"] == "not needed":
        warnings.warn(NO_SENDER, UserWarning, stacklevel=1)
    else:
        sender = before["pids"]["net_sender"]
        os.kill(sender, signal.SIGKILL)
        wait_for(
            "the sender restarted",
            lambda: (
                (p := parts(own_stack))["pids"]["net_sender"] not in (None, sender)
                and p["restarts"]["net_sender"] > before["restarts"]["net_sender"]
            ),
        )
        assert parts(own_stack)["net_sender"] == "running"

    # 2. the gateway (and with it the Management API); its Deno children die with it
    progress = done()
    wait_for("more jobs done", lambda: done() > progress, timeout=120)
    gateway = parts(own_stack)["pids"]["gateway"]
    functions = procs.children(gateway)
    assert functions, "the gateway runs the functions' processes"
    os.kill(gateway, signal.SIGKILL)
    wait_for("the gateway's functions ended with it",
             lambda: not any(procs.alive(p) for p in functions), timeout=30)  # fmt: skip
    wait_for(
        "the gateway restarted",
        lambda: parts(own_stack)["pids"]["gateway"] not in (None, gateway) and healthy(own_stack),
    )
    assert mgmt(own_stack, "GET", "/functions").status_code == 200

    # 3. a function's process: the next call starts another
    progress = done()
    wait_for("more jobs done", lambda: done() > progress, timeout=120)
    dispatcher = wait_for("the dispatcher's process", lambda: deno_of(own_stack, "supaqueue"))
    for pid in dispatcher:
        os.kill(pid, signal.SIGKILL)

    wait_for(f"all {JOBS} jobs done", lambda: done() == JOBS, timeout=DEADLINE_S)
    statuses = engine.conn.execute(
        "select status, count(*) as n from supaqueue.job where id = any(%s::uuid[])"
        " group by status",
        (jobs,),
    ).fetchall()
    assert [(r["status"], r["n"]) for r in statuses] == [("success", JOBS)]


NO_SENDER = (
    "NOT TESTED HERE: the real pg_net provides net, so the stack runs no stand-in sender to kill,"
    " stop or start"
)


def test_the_sender_can_be_stopped_and_started_on_purpose(own_stack: LocalStack) -> None:
    if parts(own_stack)["net_sender"] == "not needed":
        warnings.warn(NO_SENDER, UserWarning, stacklevel=1)
        pytest.skip(NO_SENDER)
    hook = f"{own_stack.env['API_URL']}/_local/net-sender"
    auth = {"Authorization": f"Bearer {own_stack.env['ACCESS_TOKEN']}"}
    assert httpx.put(hook, json={"running": False}, timeout=5).status_code == 401
    stopped = httpx.put(hook, json={"running": False}, headers=auth, timeout=30)
    assert stopped.status_code == 200 and stopped.json() == {"net_sender": "stopped"}
    time.sleep(2)  # several supervisor rounds: it is not restarted
    assert parts(own_stack)["net_sender"] == "stopped"
    assert parts(own_stack)["pids"]["net_sender"] is None
    with psycopg.connect(own_stack.env["DB_URL"], autocommit=True) as conn:
        request = conn.execute(
            "select net.http_get(%s)", (f"{own_stack.env['API_URL']}/_local/health",)
        ).fetchone()
        assert request is not None
        time.sleep(1.5)
        assert conn.execute(
            "select count(*) from net._http_response where id = %s", request
        ).fetchone() == (0,)
        started = httpx.put(hook, json={"running": True}, headers=auth, timeout=30)
        assert started.status_code == 200 and started.json() == {"net_sender": "running"}
        wait_for(
            "the queued request sent",
            lambda: conn.execute(
                "select status_code from net._http_response where id = %s", request
            ).fetchone(),
            timeout=30,
        )


def _call_demo(stack: LocalStack) -> None:
    called = httpx.post(
        f"{stack.env['FUNCTIONS_URL']}/demo-target",
        json={"hello": 1},
        headers={"Authorization": f"Bearer {stack.env['ANON_KEY']}"},
        timeout=60,
    )
    assert called.status_code == 200, called.text


def test_a_killed_supervisor_comes_back(own_stack: LocalStack, engine: Engine) -> None:
    """kill -9 of the supervisor itself: its keeper takes its place (issue 21 item 7); the old
    parts end with it, new ones start, and the stack serves again without any command."""
    assert healthy(own_stack)
    _call_demo(own_stack)
    supervisor = int((own_stack.dir / "daemon.pid").read_text())
    old = parts(own_stack)
    old_parts = [p for p in old["pids"].values() if isinstance(p, int) and p != supervisor]
    assert old.get("keeper"), old
    os.kill(supervisor, signal.SIGKILL)
    wait_for("the old parts ended", lambda: not any(procs.alive(p) for p in old_parts))

    def replaced() -> int | None:
        pid = int((own_stack.dir / "daemon.pid").read_text())
        new = parts(own_stack)
        running = pid != supervisor and procs.alive(pid) and new.get("pids", {}).get("supervisor")
        return pid if running == pid and new.get("keeper") and healthy(own_stack) else None

    new_supervisor = wait_for("a new supervisor serving", replaced)
    assert new_supervisor == old["keeper"], "the keeper took the supervisor's place"
    _call_demo(own_stack)
    status = supaqueue_dev("status", "--dir", str(own_stack.dir))
    assert status.returncode == 0, status.stderr
    job_id = engine.enqueue(engine.queue("demo-target"), {"after": "restart"})
    [attempt] = engine.wait_attempts(job_id, timeout=120)
    assert attempt["outcome"] == "success", attempt


def test_killing_the_supervisor_and_its_keeper_leaves_nothing(
    own_stack: LocalStack, engine: Engine
) -> None:
    """kill -9 of the whole process group (supervisor and keeper at once): nothing is left, and
    `dev up` starts the stack again."""
    assert healthy(own_stack)
    _call_demo(own_stack)
    assert deno_of(own_stack, "demo-target"), "the function runs a process"
    supervisor = int((own_stack.dir / "daemon.pid").read_text())
    before = stack_processes(own_stack)
    assert len(before) >= 3, before  # the daemon, its keeper and at least one function
    os.killpg(supervisor, signal.SIGKILL)
    wait_for("every part ended", lambda: stack_processes(own_stack) == [], timeout=30)
    again = supaqueue_dev("up", "--dir", str(own_stack.dir))
    assert again.returncode == 0, again.stderr
    assert healthy(own_stack)
