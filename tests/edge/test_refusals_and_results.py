"""What the function cannot run is reported as a final failure with the reason (issue #14.1);
whatever a 200 answer holds, its status is recorded (issue #14.2); pipelines fan in large results
without anything large going through pg_net (issue #15.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer, json_of_size
from tests.edge.conftest import deliver

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Key": "Bearer tok€n"}, "queue.default_headers.X-Key is not a valid HTTP header"),
        ({"X-Key\n": "v"}, "is not a valid HTTP header"),
    ],
    ids=["non-latin-1-value", "name-ending-in-newline"],
)
def test_header_http_cannot_carry_is_a_final_failure_with_the_reason(
    supaqueue_fn: FunctionProcess,
    engine: Engine,
    target: TargetServer,
    headers: dict[str, str],
    reason: str,
) -> None:
    """Preview refuses such headers (tests/unit/test_queue_spec.py); one written into the table
    by hand is refused by the function at once, never left to expire and be retried."""
    slug = f"refused-header-{len(next(iter(headers)))}"
    d = engine.dispatch(slug, headers=headers, max_attempts=3)
    assert deliver(supaqueue_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id, timeout=60)
    assert attempt["outcome"] == "failure" and attempt["status_code"] is None
    assert attempt["error"].startswith("refused by the dispatcher: ") and reason in attempt["error"]
    job = engine.job(d.job_id)
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert not engine.lease_held(d.current_job_id)
    assert target.requests_for(slug) == []
    assert "Bearer tok" not in supaqueue_fn.log()  # header values are never logged


def test_get_queue_with_a_non_object_payload_is_refused(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("refused-get", [1, 2], method="GET", max_attempts=3)
    assert deliver(supaqueue_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id, timeout=60)
    assert "job.payload must be an object (or null) for GET" in attempt["error"]
    assert engine.job(d.job_id)["status"] == "failed"
    assert target.requests_for("refused-get") == []


def _result_text(engine: Engine, job_id: str) -> Any:
    # As text: Python's json module could not read a very deep result back.
    row = engine.conn.execute(
        "select status::text, result::text as r, jsonb_typeof(result) as t"
        " from supaqueue.job where id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row


def test_lone_surrogate_in_a_200_answer_is_stored_repaired(
    supaqueue_fn: FunctionProcess, engine: Engine
) -> None:
    d = engine.dispatch("lone-surrogate", max_attempts=3)
    assert deliver(supaqueue_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id, timeout=60)
    assert attempt["outcome"] == "success" and attempt["status_code"] == 200
    assert attempt["error"] == "result stored with lone surrogates replaced by U+FFFD"
    job = engine.job(d.job_id)
    assert job["status"] == "success" and job["attempts"] == 1
    assert job["result"] == {"summary": "Great job \ufffd"}


@pytest.mark.parametrize("depth", [3_000, 200_000])
def test_very_deep_json_keeps_the_status_and_the_result(
    supaqueue_fn: FunctionProcess, engine: Engine, depth: int
) -> None:
    slug = f"deep-json-{depth}"
    d = engine.dispatch(slug, max_attempts=3)
    assert deliver(supaqueue_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id, timeout=30)
    assert attempt["outcome"] == "success" and attempt["status_code"] == 200
    sent = "[" * depth + "]" * depth
    stored = _result_text(engine, d.job_id)
    assert stored["status"] == "success"
    if stored["t"] == "array":  # stored as JSON
        assert stored["r"].replace(" ", "") == sent and attempt["error"] is None
    else:  # kept as text, with a note saying so
        assert stored["t"] == "string" and json.loads(stored["r"]) == sent
        assert attempt["error"].startswith("result kept as text"), attempt["error"]
    print(f"\ndepth {depth}: stored as {stored['t']}; note: {attempt['error']}")


def test_answer_over_the_result_limit_is_success_with_a_note(
    supaqueue_fn: FunctionProcess, engine: Engine
) -> None:
    limit = engine.conn.execute("select supaqueue.max_result_bytes() as n").fetchone()
    assert limit is not None
    d = engine.dispatch(f"json-of-{limit['n'] + 1}-bytes")
    assert deliver(supaqueue_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id, timeout=30)
    assert attempt["outcome"] == "success"
    assert attempt["error"] == f"result not stored: the answer is over {limit['n']} bytes"
    assert engine.job(d.job_id)["result"] is None


def test_fan_in_of_eleven_one_mib_results(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """The case from issue #14.1 that could never run: a step depending on 11 jobs with 1 MiB
    results. pg_net carries references only; the function reads the results from the database."""
    slug = f"json-of-{MIB}-bytes"
    deps_queue = engine.queue(slug, max_attempts=1)
    step_queue = engine.queue("fan-in-step", max_attempts=1)
    deps = [engine.enqueue(deps_queue, {"part": i}) for i in range(11)]
    step_row = engine.conn.execute(
        'select supaqueue.enqueue(%s, \'{"step": "merge"}\'::jsonb, _depends_on => %s::uuid[])'
        " as id",
        (step_queue, deps),
    ).fetchone()
    assert step_row is not None
    step = str(step_row["id"])
    # one worker: the first job comes through pg_net, the function chains the other ten
    assert deliver(supaqueue_fn, engine.dispatched(deps[0])).status_code == 202
    for dep in deps:
        [attempt] = engine.wait_attempts(dep, timeout=60)
        assert attempt["outcome"] == "success", attempt
    d = engine.dispatched(step)
    bodies = engine.conn.execute(
        "select max(octet_length(body)) as n from net.http_request_queue"
    ).fetchone()
    assert bodies is not None and bodies["n"] < 200, bodies  # nothing large through pg_net
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for("fan-in-step", timeout=60)
    received = seen.json()
    assert isinstance(received, dict) and received["step"] == "merge"
    results = received["dependency_results"]
    assert sorted(results) == sorted(deps)
    assert all(results[dep] == json.loads(json_of_size(MIB)) for dep in deps)
    print(f"\nfan-in: step got {len(seen.body)} bytes; largest pg_net body {bodies['n']} bytes")
    [attempt] = engine.wait_attempts(step, timeout=30)
    assert attempt["outcome"] == "success"
    assert engine.job(step)["status"] == "success"
