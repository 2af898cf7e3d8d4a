"""The whole chain on the local stack: SQL enqueue → pg_net (stand-in sender) → gateway →
the deployed supaqueue function → the deployed demo target → end_current_job.

Uses the session's `local_stack` (tests/conftest.py). Everything installed here (functions,
the SUPAQUEUE_SECRET function secret, the schema, the Vault entry) is removed afterwards, so
other tests find the stack as they expect it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from harness.edge_engine import Engine
from harness.engine import install, uninstall
from harness.function_process import edge_source
from supaqueue.edge_source import source_files
from tests.conftest import LocalStack


@dataclass
class Installed:
    stack: LocalStack
    engine: Engine
    dispatcher: str
    demo: str


def _mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


def _files(slug: str) -> dict[str, str | bytes]:
    return dict(source_files(edge_source(slug)))


@pytest.fixture(scope="module")
def installed(local_stack: LocalStack) -> Iterator[Installed]:
    suffix = uuid.uuid4().hex[:8]
    dispatcher, demo = f"supaqueue-{suffix}", f"demo-target-{suffix}"
    secret = secrets.token_urlsafe(32)
    db_url = local_stack.env["DB_URL"]
    engine: Engine | None = None
    try:
        # The dispatcher authenticates with its secret (verify_jwt off, as the Pulumi program
        # deploys it); the demo target keeps the gateway's JWT check, which the service-role
        # bearer the dispatcher sends must pass.
        local_stack.deploy(
            dispatcher, _files("supaqueue"), verify_jwt=False, import_map="deno.json"
        )
        local_stack.deploy(demo, _files("demo-target"), import_map="deno.json")
        created = _mgmt(
            local_stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}]
        )
        assert created.status_code == 201, created.text
        install(db_url, local_stack.env["FUNCTIONS_URL"], secret, dispatcher_slug=dispatcher)
        engine = Engine(db_url)
        yield Installed(local_stack, engine, dispatcher, demo)
    finally:
        if engine is not None:
            engine.close()
        uninstall(db_url)
        _mgmt(local_stack, "DELETE", "/secrets", ["SUPAQUEUE_SECRET"])
        for slug in (dispatcher, demo):
            _mgmt(local_stack, "DELETE", f"/functions/{slug}")


def _enqueue(inst: Installed, payload: dict[str, object], **queue: object) -> tuple[str, int]:
    """(job id, pg_net request id) of a job enqueued with a plain INSERT."""
    queue_id = inst.engine.queue(inst.demo, **queue)  # type: ignore[arg-type]
    # Read the request id in the enqueue's own transaction: pg_net sends after the commit, and a
    # fast target can finish the job (its current_job row gone) before a later read.
    with inst.engine.conn.transaction():
        job_id = inst.engine.enqueue(queue_id, payload)
        row = inst.engine.conn.execute(
            "select request_id from supaqueue.current_job where job = %s", (job_id,)
        ).fetchone()
    assert row is not None and row["request_id"] is not None, inst.engine.job(job_id)
    return job_id, int(row["request_id"])


def _pg_net_answer(inst: Installed, request_id: int, timeout: float = 15) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = inst.engine.conn.execute(
            "select status_code, content, timed_out, error_msg from net._http_response"
            " where id = %s",
            (request_id,),
        ).fetchone()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"pg_net never recorded an answer to request {request_id}")


def test_job_succeeds_through_the_whole_stack(installed: Installed) -> None:
    payload = {"hello": "stack", "n": 3}
    job_id, request_id = _enqueue(installed, payload)
    [attempt] = installed.engine.wait_attempts(job_id, timeout=60)
    assert attempt["outcome"] == "success" and attempt["status_code"] == 200
    assert _pg_net_answer(installed, request_id)["status_code"] == 202
    job = installed.engine.job(job_id)
    assert job["status"] == "success"
    assert job["result"]["echo"] == payload
    assert job["result"]["job_id"] == job_id and job["result"]["attempt"] == 1


def test_get_queue_and_a_failure_as_asked(installed: Installed) -> None:
    job_id, _ = _enqueue(installed, {"status": 503}, method="GET", max_attempts=1)
    [attempt] = installed.engine.wait_attempts(job_id, timeout=60)
    assert attempt["outcome"] == "failure" and attempt["status_code"] == 503
    assert "demo failure with status 503" in attempt["response_excerpt"]
    assert installed.engine.job(job_id)["status"] == "failed"


def test_timeout_through_the_whole_stack(installed: Installed) -> None:
    job_id, _ = _enqueue(installed, {"sleep_ms": 5000}, timeout_ms=1000, max_attempts=1)
    [attempt] = installed.engine.wait_attempts(job_id, timeout=60)
    assert attempt["outcome"] == "failure" and attempt["error"] == "Timeout of 1000 ms reached"


def test_slow_target_does_not_hold_up_pg_net(installed: Installed) -> None:
    """pg_net waits for its whole batch; the dispatcher answers at once, so a slow job does not
    delay a fast job of another queue dispatched right after it. Asserted as an order on the
    database's clock (how fast: benchmarks/dispatch_answer_bench.py); the slow job's 8 s are
    only room for a loaded machine to run the fast one."""
    slow_id, slow_request = _enqueue(installed, {"sleep_ms": 8000}, timeout_ms=60_000)
    fast_id, _ = _enqueue(installed, {"fast": True})
    answer = _pg_net_answer(installed, slow_request, timeout=60)
    assert answer["status_code"] == 202 and answer["timed_out"] is False
    [fast] = installed.engine.wait_attempts(fast_id, timeout=60)
    assert fast["outcome"] == "success"
    [slow] = installed.engine.wait_attempts(slow_id, timeout=60)
    assert slow["outcome"] == "success" and slow["duration_ms"] >= 8000
    order = installed.engine.conn.execute(
        "select (select created from net._http_response where id = %s) as answered,"
        " (select ended_at from supaqueue.job_attempt where job = %s) as fast_done,"
        " (select ended_at from supaqueue.job_attempt where job = %s) as slow_done",
        (slow_request, fast_id, slow_id),
    ).fetchone()
    assert order is not None
    assert order["answered"] < order["slow_done"], "pg_net waited for the slow call"
    assert order["fast_done"] < order["slow_done"], "the fast job waited for the slow one"


def _pg_net_requests_so_far(inst: Installed) -> int:
    row = inst.engine.conn.execute(
        "select case when is_called then last_value else 0 end as n"
        " from net.http_request_queue_id_seq"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def _invocations(inst: Installed) -> dict[str, int]:
    reply = httpx.get(f"{inst.stack.env['API_URL']}/_local/invocations", timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_a_busy_worker_runs_its_jobs_in_one_chain(installed: Installed) -> None:
    """Issue #11 on the real stack: 30 jobs for one worker cost one pg_net request and one
    dispatcher invocation (the chain), and 30 target invocations, one at a time."""
    queue_id = installed.engine.queue(installed.demo, max_attempts=1)
    requests_before, calls_before = _pg_net_requests_so_far(installed), _invocations(installed)
    installed.engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('n', g) from generate_series(1, 30) g",
        (queue_id,),
    )
    deadline = time.monotonic() + 120
    succeeded = 0
    while time.monotonic() < deadline:
        row = installed.engine.conn.execute(
            "select count(*) filter (where status = 'success') as ok,"
            " count(*) filter (where status in ('failed', 'cancelled')) as bad"
            " from supaqueue.job where queue = %s",
            (queue_id,),
        ).fetchone()
        assert row is not None and row["bad"] == 0
        succeeded = int(row["ok"])
        if succeeded == 30:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"only {succeeded} of 30 jobs succeeded in 120 s")
    calls = _invocations(installed)
    assert calls.get(installed.dispatcher, 0) - calls_before.get(installed.dispatcher, 0) == 1
    assert calls.get(installed.demo, 0) - calls_before.get(installed.demo, 0) == 30
    assert _pg_net_requests_so_far(installed) - requests_before == 1
    overlap = installed.engine.conn.execute(
        "select count(*) as n from supaqueue.job_attempt a join supaqueue.job_attempt b"
        " on a.queue = b.queue and a.id < b.id"
        " and a.started_at < b.ended_at and b.started_at < a.ended_at"
        " where a.queue = %s",
        (queue_id,),
    ).fetchone()
    assert overlap is not None and overlap["n"] == 0  # one worker: never two calls at once
