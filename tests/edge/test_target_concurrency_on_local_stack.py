"""At most `workers` calls running at the target, always (issue #21 item 1), on the local stack:
SQL → pg_net (stand-in sender) → gateway → the deployed supaqueue function → gateway → a
deployed relay function → a loopback target server that counts the calls in flight.

The relay stands for a user's function: it keeps running after its caller gave up (as a Supabase
function does until its wall clock), passing the call on to the target server, which records when
each call started and ended. `target_wall_clock_ms` is set above what the relay ever runs, as the
platform's limit is above what a function may run.

Two faults of the issue, each failing before the fix:
- a slow target (`timeout_ms` below its run time): calls abandoned at their timeout kept running
  while their workers took the next jobs (80 calls at once for 20 workers);
- the gateway frozen (SIGSTOP) with calls in flight: the requests it held were forwarded when it
  thawed, although their callers had given up and the attempts had been recorded as failed
  (129-140 calls at once, calls starting 35 s after their attempt failed).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest

from harness.edge_engine import Engine
from harness.engine import install, uninstall
from harness.function_process import DISPATCHER
from harness.target_server import TargetServer, max_in_flight
from supaqueue.edge_source import source_files
from tests.conftest import LocalStack

# The relay answers with what the target server answered; it records when the call reached it
# (this machine's clock, as the database's) in a header the target server keeps.
RELAY = """
Deno.serve(async (request: Request) => {
  const arrived = Date.now();
  const { url } = await request.json();
  const headers = new Headers({ "content-type": "application/json" });
  headers.set("x-relay-arrived-ms", String(arrived));
  for (const name of ["supaqueue-job-id", "supaqueue-attempt", "supaqueue-deadline"]) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  const answer = await fetch(url, { method: "POST", headers, body: "{}" });
  return new Response(await answer.text(), {
    status: answer.status,
    headers: { "content-type": "application/json" },
  });
});
"""


@dataclass
class Stack:
    local: LocalStack
    engine: Engine
    relay: str
    target: TargetServer


def _mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    dispatcher, relay = f"supaqueue-{suffix}", f"relay-{suffix}"
    secret = secrets.token_urlsafe(32)
    db_url = local_stack.env["DB_URL"]
    target = TargetServer().start()
    engine: Engine | None = None
    try:
        local_stack.deploy(
            dispatcher,
            dict(source_files(DISPATCHER)),
            verify_jwt=False,
            import_map="deno.json",
        )
        local_stack.deploy(relay, {"index.ts": RELAY})
        created = _mgmt(
            local_stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}]
        )
        assert created.status_code == 201, created.text
        install(db_url, local_stack.env["FUNCTIONS_URL"], secret, dispatcher_slug=dispatcher)
        engine = Engine(db_url)
        yield Stack(local_stack, engine, relay, target)
    finally:
        if engine is not None:
            engine.close()
        target.stop()
        uninstall(db_url)
        _mgmt(local_stack, "DELETE", "/secrets", ["SUPAQUEUE_SECRET"])
        for slug in (dispatcher, relay):
            _mgmt(local_stack, "DELETE", f"/functions/{slug}")


def _queue(s: Stack, workers: int, **columns: object) -> str:
    names = ["name", "edge_function_name", *columns]
    values = [f"q-{uuid.uuid4().hex[:12]}", s.relay, *columns.values()]
    row = s.engine.conn.execute(
        f"insert into supaqueue.queue ({', '.join(names)})"
        f" values ({', '.join(['%s'] * len(values))}) returning id::text",
        values,
    ).fetchone()
    assert row is not None
    queue_id = str(row["id"])
    s.engine.conn.execute("select supaqueue.set_worker_count(%s, %s)", (queue_id, workers))
    return queue_id


def _enqueue(s: Stack, queue_id: str, jobs: int, sleep_ms: int) -> None:
    url = f"{s.target.url}/functions/v1/slow-{sleep_ms}"
    s.engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('url', %s::text, 'n', g) from generate_series(1, %s) g",
        (queue_id, url, jobs),
    )


def _wait_finished(s: Stack, queue_id: str, jobs: int, slug: str, timeout: float = 240) -> None:
    """Until every job has finished and every call the target got has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = s.engine.conn.execute(
            "select count(*) filter (where finished_at is not null) as done"
            " from supaqueue.job where queue = %s",
            (queue_id,),
        ).fetchone()
        assert row is not None
        calls = s.target.requests_for(slug)
        if row["done"] == jobs and all(c.ended is not None for c in calls):
            return
        time.sleep(0.1)
    states = s.engine.conn.execute(
        "select status::text, count(*) from supaqueue.job where queue = %s group by 1", (queue_id,)
    ).fetchall()
    raise AssertionError(f"jobs of queue {queue_id} not all finished in {timeout} s: {states}")


def test_calls_abandoned_at_their_timeout_do_not_add_to_the_workers(stack: Stack) -> None:
    workers, jobs, sleep_ms = 3, 9, 3000
    slug = f"slow-{sleep_ms}"
    before = len(stack.target.requests_for(slug))
    q = _queue(stack, workers, timeout_ms=1000, max_attempts=1, target_wall_clock_ms=5000)
    _enqueue(stack, q, jobs, sleep_ms)
    _wait_finished(stack, q, jobs, slug)

    calls = stack.target.requests_for(slug)[before:]
    errors = stack.engine.conn.execute(
        "select a.error, count(*) as n from supaqueue.job_attempt a where a.queue = %s group by 1",
        (q,),
    ).fetchall()
    assert errors == [{"error": "Timeout of 1000 ms reached", "n": jobs}]
    assert len(calls) == jobs
    most = max_in_flight(calls)
    print(f"\nslow target: workers {workers}, max calls in flight at the target {most}")
    assert most <= workers, f"{most} calls ran at the target at once, for {workers} workers"
    # every call said when the dispatcher stops waiting for it
    for call in calls:
        deadline = datetime.fromisoformat(call.headers["supaqueue-deadline"])
        assert deadline.tzinfo is not None


def _gateway_pid(local: LocalStack) -> int:
    parts = json.loads((local.dir / "parts.json").read_text())
    pid = parts.get("pids", {}).get("gateway")
    assert isinstance(pid, int), f"no gateway in {parts}"
    return pid


def test_a_frozen_gateway_forwards_no_call_whose_caller_gave_up(stack: Stack) -> None:
    workers, jobs, sleep_ms = 4, 16, 1000
    slug = f"slow-{sleep_ms}"
    before = len(stack.target.requests_for(slug))
    q = _queue(
        stack,
        workers,
        timeout_ms=1500,
        lease_grace_ms=2000,
        max_attempts=20,
        backoff_base_ms=100,
        backoff_max_ms=500,
        target_wall_clock_ms=4000,
    )
    _enqueue(stack, q, jobs, sleep_ms)
    stack.target.wait_for(slug, before + workers)  # calls in flight
    gateway = _gateway_pid(stack.local)
    os.kill(gateway, signal.SIGSTOP)
    try:
        # Frozen until the dispatcher has given up on calls it sent and pg_net on dispatches
        # (its 5 s timeout), as the database records.
        deadline = time.monotonic() + 120
        while True:
            row = stack.engine.conn.execute(
                "select count(*) filter (where outcome = 'failure') as failed,"
                " count(*) filter (where outcome = 'lease_expired') as expired"
                " from supaqueue.job_attempt where queue = %s",
                (q,),
            ).fetchone()
            assert row is not None
            if row["failed"] >= 1 and row["expired"] >= 1:
                break
            assert time.monotonic() < deadline, f"no attempt failed while frozen: {row}"
            time.sleep(0.1)
        time.sleep(2)  # more dispatches and calls pile up in the frozen gateway
    finally:
        os.kill(gateway, signal.SIGCONT)
    _wait_finished(stack, q, jobs, slug)

    calls = stack.target.requests_for(slug)[before:]
    most = max_in_flight(calls)
    failed_at = {
        (str(r["job"]), int(r["attempt"])): r["ended_at"].timestamp()
        for r in stack.engine.conn.execute(
            "select job, attempt, ended_at from supaqueue.job_attempt"
            " where queue = %s and outcome <> 'success'",
            (q,),
        ).fetchall()
    }
    late = []
    for call in calls:
        key = (call.headers["supaqueue-job-id"], int(call.headers["supaqueue-attempt"]))
        arrived = int(call.headers["x-relay-arrived-ms"]) / 1000
        if key in failed_at and arrived >= failed_at[key]:
            late.append(round(arrived - failed_at[key], 3))
    statuses = stack.engine.conn.execute(
        "select status::text, count(*) as n from supaqueue.job where queue = %s group by 1",
        (q,),
    ).fetchall()
    print(
        f"\nfrozen gateway: workers {workers}, max calls in flight at the target {most},"
        f" calls started after their attempt failed {len(late)} (by up to"
        f" {max(late, default=0)} s), calls {len(calls)}, jobs {statuses}"
    )
    assert statuses == [{"status": "success", "n": jobs}]  # nothing lost
    assert late == [], f"{len(late)} calls started after their attempt was recorded failed"
    assert most <= workers, f"{most} calls ran at the target at once, for {workers} workers"


def _raw_request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("connection", ["new", "kept-alive"])
def test_a_frozen_gateway_drops_a_request_whose_client_has_gone(
    stack: Stack, connection: str
) -> None:
    """Like a real proxy: a request whose client closed its connection while the gateway could
    not run (SIGSTOP) is never forwarded once it runs again."""
    import socket
    from urllib.parse import urlsplit

    api = urlsplit(stack.local.env["API_URL"])
    port = api.port or 80
    path = f"/functions/v1/{stack.relay}"
    marker = 1 + uuid.uuid4().int % 899  # slugs of this test alone, sleeps under 2 s
    gone, after = f"slow-{100 + marker}", f"slow-{1000 + marker}"
    bearer = stack.local.env["SERVICE_ROLE_KEY"]

    def body(slug: str) -> bytes:
        return json.dumps({"url": f"{stack.target.url}/functions/v1/{slug}"}).encode()

    def request(slug: str) -> bytes:
        raw = _raw_request(port, path, body(slug))
        return raw.replace(b"\r\n\r\n", f"\r\nAuthorization: Bearer {bearer}\r\n\r\n".encode(), 1)

    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        if connection == "kept-alive":  # accepted and served once before the freeze
            client.sendall(request("status-200"))
            assert client.recv(65536).startswith(b"HTTP/1.1 200"), "the warm-up call failed"
        gateway = _gateway_pid(stack.local)
        os.kill(gateway, signal.SIGSTOP)
        try:
            client.sendall(request(gone))
        finally:
            client.close()  # the client gives up while the gateway is frozen
            time.sleep(0.2)  # the close reaches the gateway's socket
            os.kill(gateway, signal.SIGCONT)
    finally:
        client.close()
    # A request sent after the thaw gets through; the dropped one, sent before it, never does.
    reply = httpx.post(
        f"{stack.local.env['API_URL']}{path}",
        content=body(after),
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert stack.target.requests_for(after), "the call after the thaw did not arrive"
    assert stack.target.requests_for(gone) == [], "a request whose client had gone was forwarded"


def test_a_keyed_queue_holds_each_key_to_its_workers_at_the_target(stack: Stack) -> None:
    """Keys (issue 26): key_from takes each job's key from its payload; workers_per_key holds
    at the target, through the real dispatcher (chaining on), not only in the database."""
    workers, per_key, jobs, sleep_ms = 4, 1, 12, 400
    slug = f"slow-{sleep_ms}"
    before = len(stack.target.requests_for(slug))
    q = _queue(stack, workers, key_from="$.tenant", workers_per_key=per_key, max_attempts=1)
    url = f"{stack.target.url}/functions/v1/{slug}"
    stack.engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('url', %s::text, 'tenant', 't' || (g %% 3))"
        " from generate_series(1, %s) g",
        (q, url, jobs),
    )
    _wait_finished(stack, q, jobs, slug)
    calls = stack.target.requests_for(slug)[before:]
    keys = {
        str(r["id"]): r["key"]
        for r in stack.engine.conn.execute(
            "select id, key from supaqueue.job where queue = %s and status = 'success'", (q,)
        ).fetchall()
    }
    assert len(keys) == jobs and set(keys.values()) == {"t0", "t1", "t2"}
    assert len(calls) == jobs
    per = {k: max_in_flight([c for c in calls if keys[c.headers["supaqueue-job-id"]] == k])
           for k in ("t0", "t1", "t2")}  # fmt: skip
    print(f"\nkeyed queue: workers {workers}, per key {per_key}, most in flight per key {per}")
    assert all(n <= per_key for n in per.values()), per
    assert max_in_flight(calls) <= workers
