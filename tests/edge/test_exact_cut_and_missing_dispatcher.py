"""Issue 21 on the whole local stack (Postgres → pg_net stand-in → gateway → the deployed
supaqueue function → a deployed target → the report):
- payload numbers reach the target exactly as Postgres renders them, the answer is stored exactly
  (item 2), also for a pipeline step's `dependency_results`;
- an answer cut short by the target dying mid-body is a failed attempt (item 3);
- a dispatcher deleted behind the stack's back burns no attempts: dispatch holds and says so,
  and the jobs run once it is deployed again (item 6).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.edge_engine import Engine
from harness.engine import install, uninstall
from harness.function_process import DISPATCHER
from supaqueue.edge_source import source_files
from tests.conftest import LocalStack

# Echoes the request body byte for byte as the answer.
RAW_ECHO = """Deno.serve(async (req) => new Response(await req.text(), {
  headers: { "content-type": "application/json" },
}));
"""
# Starts a JSON answer, then the function's process dies mid-body (a killed target). `SIZE`
# announced: Content-Length (over the gateway's whole-body limit, so it is streamed); else chunked.
CUT_TEMPLATE = """const SIZE = %s;
Deno.serve(() => {
  const head = new TextEncoder().encode('{"partial": "' + "x".repeat(1000));
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(head);
      setTimeout(() => Deno.exit(1), 200);
    },
  });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (SIZE !== null) headers["content-length"] = String(SIZE);
  return new Response(body, { headers });
});
"""
PAYLOAD = '{"big": 12345678901234567890123, "huge": 1e1000, "tiny": 1e-400, "x": 0.1}'


@dataclass
class Installed:
    stack: LocalStack
    engine: Engine
    dispatcher: str
    suffix: str


def _mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


def _deploy_dispatcher(inst_stack: LocalStack, slug: str) -> None:
    inst_stack.deploy(
        slug, dict(source_files(DISPATCHER)), verify_jwt=False, import_map="deno.json"
    )


@pytest.fixture(scope="module")
def installed(local_stack: LocalStack) -> Iterator[Installed]:
    suffix = uuid.uuid4().hex[:8]
    dispatcher = f"supaqueue-{suffix}"
    secret = secrets.token_urlsafe(32)
    db_url = local_stack.env["DB_URL"]
    engine: Engine | None = None
    slugs = [dispatcher, f"raw-echo-{suffix}", f"cut-chunked-{suffix}", f"cut-sized-{suffix}"]
    try:
        _deploy_dispatcher(local_stack, dispatcher)
        local_stack.deploy(slugs[1], {"index.ts": RAW_ECHO})
        local_stack.deploy(slugs[2], {"index.ts": CUT_TEMPLATE % "null"})
        local_stack.deploy(slugs[3], {"index.ts": CUT_TEMPLATE % "200000"})
        created = _mgmt(
            local_stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}]
        )
        assert created.status_code == 201, created.text
        install(db_url, local_stack.env["FUNCTIONS_URL"], secret, dispatcher_slug=dispatcher)
        engine = Engine(db_url)
        yield Installed(local_stack, engine, dispatcher, suffix)
    finally:
        if engine is not None:
            engine.close()
        uninstall(db_url)
        _mgmt(local_stack, "DELETE", "/secrets", ["SUPAQUEUE_SECRET"])
        for slug in slugs:
            _mgmt(local_stack, "DELETE", f"/functions/{slug}")


def _enqueue_text(
    inst: Installed, queue_id: str, payload: str, depends_on: str | None = None
) -> str:
    row = inst.engine.conn.execute(
        "select supaqueue.enqueue(%s, %s::jsonb, _depends_on => %s::uuid[]) as id",
        (queue_id, payload, None if depends_on is None else [depends_on]),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def _row(inst: Installed, sql: str, *args: Any) -> dict[str, Any]:
    row = inst.engine.conn.execute(sql, args).fetchone()
    assert row is not None
    return dict(row)


def test_payload_and_result_numbers_are_exact_end_to_end(installed: Installed) -> None:
    queue_id = installed.engine.queue(f"raw-echo-{installed.suffix}")
    job_id = _enqueue_text(installed, queue_id, PAYLOAD)
    [attempt] = installed.engine.wait_attempts(job_id, timeout=60)
    assert attempt["outcome"] == "success", attempt
    sent = _row(installed, "select payload::text as text from supaqueue.job where id = %s", job_id)
    # what the target received, byte for byte (it echoed it): Postgres's rendering of the payload
    assert attempt["response_excerpt"] == sent["text"]
    stored = _row(
        installed,
        "select result::text = payload::text as same, result->>'big' as big,"
        " result->>'tiny' as tiny from supaqueue.job where id = %s",
        job_id,
    )
    assert stored == {
        "same": True,
        "big": "12345678901234567890123",
        "tiny": "0." + "0" * 399 + "1",
    }


def test_pipeline_step_gets_exact_dependency_results(installed: Installed) -> None:
    queue_id = installed.engine.queue(f"raw-echo-{installed.suffix}")
    first = _enqueue_text(installed, queue_id, '{"id": 98765432109876543210987, "f": 1e-30}')
    step = _enqueue_text(installed, queue_id, '{"n": 123456789012345678901}', depends_on=first)
    [attempt] = installed.engine.wait_attempts(step, timeout=60)
    assert attempt["outcome"] == "success", attempt
    expected = _row(
        installed,
        "select (s.payload || jsonb_build_object('dependency_results',"
        " jsonb_build_object(f.id::text, f.result)))::text as text, s.result = (s.payload ||"
        " jsonb_build_object('dependency_results', jsonb_build_object(f.id::text, f.result)))"
        " as stored_exact"
        " from supaqueue.job s, supaqueue.job f where s.id = %s and f.id = %s",
        step,
        first,
    )
    assert attempt["response_excerpt"] == expected["text"]
    assert expected["stored_exact"] is True


@pytest.mark.parametrize("kind", ["chunked", "sized"])
def test_target_dying_mid_body_fails_the_attempt(installed: Installed, kind: str) -> None:
    queue_id = installed.engine.queue(f"cut-{kind}-{installed.suffix}", max_attempts=2)
    # A cut answer's call may still be running at the target, so its worker is held for the
    # target's wall clock (docs/architecture.md, *Concurrency at the target*): keep that short.
    installed.engine.conn.execute(
        "update supaqueue.queue set backoff_base_ms = 0, backoff_jitter = 0,"
        " target_wall_clock_ms = 1000 where id = %s",
        (queue_id,),
    )
    job_id = installed.engine.enqueue(queue_id, {"n": 1})
    attempts = installed.engine.wait_attempts(job_id, count=2, timeout=90)
    assert [a["outcome"] for a in attempts] == ["failure", "failure"], attempts  # retried
    job = installed.engine.job(job_id)
    assert job["status"] == "failed" and job["result"] is None, job
    assert "response body" in (attempts[0]["error"] or "") or "cut short" in (
        attempts[0]["error"] or ""
    ), attempts[0]


def _hold(inst: Installed) -> dict[str, Any] | None:
    row = inst.engine.conn.execute("select * from supaqueue.dispatch_hold").fetchone()
    return None if row is None else dict(row)


def test_missing_dispatcher_burns_no_attempts_and_jobs_run_once_it_is_back(
    installed: Installed,
) -> None:
    queue_id = installed.engine.queue(f"raw-echo-{installed.suffix}", timeout_ms=1000)
    # a short lease, so a dispatch nobody claims would expire (and count) within seconds
    installed.engine.conn.execute(
        "update supaqueue.queue set lease_grace_ms = 1000 where id = %s", (queue_id,)
    )
    deleted = _mgmt(installed.stack, "DELETE", f"/functions/{installed.dispatcher}")
    assert deleted.status_code == 200, deleted.text
    try:
        job_id = installed.engine.enqueue(queue_id, {"n": 7})
        deadline = time.monotonic() + 90
        hold = _hold(installed)
        # several leases given back: each one's 404 was seen and its lease returned
        while (hold is None or hold["returned"] < 4) and time.monotonic() < deadline:
            assert installed.engine.attempts(job_id) == [], "an attempt was counted"
            time.sleep(0.2)
            hold = _hold(installed)
        assert hold is not None and hold["returned"] >= 4, f"dispatch never held: {hold}"
        assert "HTTP 404" in hold["reason"] and installed.dispatcher in hold["reason"]
        assert installed.engine.attempts(job_id) == []
        job = installed.engine.job(job_id)
        assert job["status"] in ("pending", "in_progress") and job["attempts"] <= 1, job
    finally:
        _deploy_dispatcher(installed.stack, installed.dispatcher)
    [attempt] = installed.engine.wait_attempts(job_id, timeout=90)
    assert attempt["outcome"] == "success" and attempt["attempt"] == 1, attempt
    deadline = time.monotonic() + 30
    while _hold(installed) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _hold(installed) is None, "the hold did not end once the dispatcher was back"
