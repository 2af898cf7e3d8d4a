"""Whatever the target does, the right outcome reaches supaqueue.end_current_job."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import (
    BIG_BODY,
    RETRY_AFTER_DATE_SECONDS,
    TargetServer,
    max_in_flight,
)
from tests.edge.conftest import deliver, function_env

# How long the held target keeps a call open after the 202 (the attempt lasts at least this).
HELD_SECONDS = 0.3


def test_slow_target_still_gets_202_at_once(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """pg_net is answered before the call to the target ends: the target here answers only once
    the test lets it, after the 202 (how fast the 202 comes is a benchmark:
    benchmarks/dispatch_answer_bench.py)."""
    key = uuid.uuid4().hex[:12]
    d = engine.dispatch(f"hold-{key}", timeout_ms=60_000)
    try:
        response = deliver(supaqueue_fn, d)
        assert response.status_code == 202
        assert response.json() == {"accepted": True, "current_job": d.current_job_id}
        [call] = target.wait_for(f"hold-{key}", timeout=30)
        assert call.ended is None  # the target is still holding the call...
        assert engine.job(d.job_id)["status"] == "in_progress"  # ...so the job is running
        time.sleep(HELD_SECONDS)
    finally:
        target.release(key)
    [attempt] = engine.wait_attempts(d.job_id, timeout=30)
    assert attempt["outcome"] == "success"
    assert attempt["duration_ms"] >= HELD_SECONDS * 1000


def test_2xx_json_is_success_with_result(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("status-201")
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"
    assert attempt["status_code"] == 201
    assert attempt["error"] is None
    assert attempt["response_excerpt"] == '{"status": 201}'
    job = engine.job(d.job_id)
    assert job["status"] == "success" and job["result"] == {"status": 201}
    assert not engine.lease_held(d.current_job_id)


def test_4xx_is_a_final_failure(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("status-404", max_attempts=3)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "failure"
    assert attempt["status_code"] == 404
    assert attempt["error"] == "HTTP 404 Not Found"
    assert attempt["response_excerpt"] == '{"status": 404}'
    job = engine.job(d.job_id)
    # 404 is non-retryable by default: failed at once although attempts remain.
    assert job["status"] == "failed" and job["attempts"] == 1 and job["last_status_code"] == 404
    assert job["result"] is None


def test_5xx_is_retried(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("status-500", max_attempts=3)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "failure" and attempt["status_code"] == 500
    assert attempt["error"] == "HTTP 500 Internal Server Error"
    job = engine.job(d.job_id)
    assert job["status"] == "pending" and job["attempts"] == 1 and job["last_status_code"] == 500


def test_redirect_is_not_followed(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    """A target function answers; a 3xx is not success (the payload is never re-sent elsewhere)."""
    d = engine.dispatch("status-302", max_attempts=1)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "failure" and attempt["status_code"] == 302
    assert attempt["error"] == "HTTP 302 Found"


def test_5xx_on_last_attempt_fails_the_job(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("status-503", max_attempts=1)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "failure" and attempt["status_code"] == 503
    assert engine.job(d.job_id)["status"] == "failed"


def test_timeout_is_a_failure_with_the_reason(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """The call is abandoned at its timeout: the failure is recorded while the target still
    holds the call (an order, not a duration), and not before the timeout had passed."""
    key = uuid.uuid4().hex[:12]
    d = engine.dispatch(f"hold-{key}", timeout_ms=500)
    try:
        deliver(supaqueue_fn, d)
        [attempt] = engine.wait_attempts(d.job_id, timeout=60)
        [call] = target.requests_for(f"hold-{key}")  # it was called...
        assert call.ended is None  # ...and abandoned: the target has not answered yet
    finally:
        target.release(key)
    assert attempt["outcome"] == "failure"
    assert attempt["status_code"] is None
    assert attempt["error"] == "Timeout of 500 ms reached"
    assert attempt["duration_ms"] >= 450  # it waited the timeout (how promptly: a benchmark)
    assert engine.job(d.job_id)["status"] == "failed"
    assert len(target.requests_for(f"hold-{key}")) == 1  # called once, not retried


def test_connection_refused_is_a_failure_with_the_reason(
    refused_fn: FunctionProcess, engine: Engine
) -> None:
    d = engine.dispatch("anything", {"token": "payload-value"}, method="GET", max_attempts=2)
    assert deliver(refused_fn, d).status_code == 202
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "failure"
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("request failed: ")
    assert "Connection refused" in attempt["error"]
    assert "/functions/v1/anything" in attempt["error"]
    assert "payload-value" not in attempt["error"]  # the query string stays out of stored errors
    job = engine.job(d.job_id)
    assert job["status"] == "pending" and job["last_error"] == attempt["error"]


def test_non_json_2xx_is_success_without_result(
    supaqueue_fn: FunctionProcess, engine: Engine
) -> None:
    d = engine.dispatch("text")
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"
    assert attempt["response_excerpt"] == "plain words, not JSON"
    job = engine.job(d.job_id)
    assert job["status"] == "success" and job["result"] is None


def test_broken_json_body_does_not_crash_anything(
    supaqueue_fn: FunctionProcess, engine: Engine
) -> None:
    d = engine.dispatch("broken-json")
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"
    assert attempt["response_excerpt"] == '{"truncated": '
    assert engine.job(d.job_id)["result"] is None
    # The function keeps serving.
    d2 = engine.dispatch("status-200")
    assert deliver(supaqueue_fn, d2).status_code == 202
    engine.wait_attempts(d2.job_id)


def test_nul_in_json_result_is_stored(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("nul-json")
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"
    assert engine.job(d.job_id)["result"] == {"a": "xy"}


def test_large_body_is_excerpted(supaqueue_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("big")
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["response_excerpt"] == BIG_BODY[:2000]  # the engine keeps 2000 of our 2048


def _run_at_and_recorded_at(engine: Engine, job_id: str) -> tuple[datetime, datetime]:
    """The retry's run_at and when the failure was recorded (the same transaction's now())."""
    row = engine.conn.execute(
        "select run_at, updated_at from supaqueue.job where id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return row["run_at"], row["updated_at"]


def test_retry_after_seconds_delays_the_retry(
    supaqueue_fn: FunctionProcess, engine: Engine
) -> None:
    d = engine.dispatch("retry-after-seconds", max_attempts=3)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["status_code"] == 429
    assert engine.job(d.job_id)["status"] == "pending"
    # Retry-After: 17, far above the 1 s backoff, counted from when the failure was recorded
    run_at, recorded_at = _run_at_and_recorded_at(engine, d.job_id)
    assert run_at - recorded_at == timedelta(seconds=17)


def test_retry_after_http_date_delays_the_retry(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("retry-after-date", max_attempts=3)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["status_code"] == 503
    assert engine.job(d.job_id)["status"] == "pending"
    [call] = target.requests_for("retry-after-date")
    sent = parsedate_to_datetime(call.answer_headers["Retry-After"])
    run_at, recorded_at = _run_at_and_recorded_at(engine, d.job_id)
    # Not before the date the target named (seconds rounded up), and no later than its
    # RETRY_AFTER_DATE_SECONDS counted from when the failure was recorded (after it was named).
    limit = recorded_at + timedelta(seconds=RETRY_AFTER_DATE_SECONDS)
    assert sent <= run_at <= limit, (sent, run_at, recorded_at)


def test_duplicate_delivery_never_calls_the_target_twice(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """The same dispatch delivered again, while its call runs and after it ended: the claim
    lets exactly one delivery through (one target call per attempt)."""
    d = engine.dispatch("slow-500")
    assert deliver(supaqueue_fn, d).status_code == 202
    assert deliver(supaqueue_fn, d).status_code == 202  # while the first is in flight
    engine.wait_attempts(d.job_id)
    assert deliver(supaqueue_fn, d).status_code == 202  # after it was reported
    deadline = time.monotonic() + 10
    stale: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(stale) < 2:
        stale = [
            e
            for e in supaqueue_fn.events()
            if e.get("event") == "dispatch_not_current" and e.get("current_job") == d.current_job_id
        ]
        time.sleep(0.05)
    assert len(stale) == 2
    assert len(target.requests_for("slow-500")) == 1
    assert len(engine.attempts(d.job_id)) == 1
    assert engine.job(d.job_id)["status"] == "success"


def test_background_work_is_handed_to_wait_until(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    edge_db: str,
    dispatch_secret: str,
    engine: Engine,
) -> None:
    """SIGTERM right after the 202: the runtime drains only work given to EdgeRuntime.waitUntil,
    so the job is still reported and then the process exits cleanly."""
    fn = start_function(function_env(target.url, edge_db, dispatch_secret))
    d = engine.dispatch("slow-1500")
    assert deliver(fn, d).status_code == 202
    assert fn.proc is not None
    fn.proc.send_signal(signal.SIGTERM)
    assert fn.proc.wait(20) == 0
    [attempt] = engine.attempts(d.job_id)
    assert attempt["outcome"] == "success" and attempt["duration_ms"] >= 1500


def test_plain_deno_without_edge_runtime_works(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    edge_db: str,
    dispatch_secret: str,
    engine: Engine,
) -> None:
    """Where EdgeRuntime does not exist the promise just runs; failures never crash the process
    (plain Deno, unlike the Edge runtime, would exit on an unhandled rejection)."""
    fn = start_function(function_env(target.url, edge_db, dispatch_secret), plain=True)
    for slug, outcome in [
        ("status-202", "success"),
        ("text", "success"),
        ("slow-3000", "failure"),
        ("status-500", "failure"),
        ("broken-json", "success"),
    ]:
        # 2 s: the slow target (3 s) still times out, the others finish on a loaded machine
        # (300 ms failed a fast one in a run at load 20)
        d = engine.dispatch(slug, timeout_ms=2000)
        assert deliver(fn, d).status_code == 202
        [attempt] = engine.wait_attempts(d.job_id)
        assert attempt["outcome"] == outcome, (slug, attempt)
    assert fn.alive


def test_logs_hold_no_secrets(
    supaqueue_fn: FunctionProcess, dispatch_secret: str, edge_db: str
) -> None:
    """After every case above, the function's log names jobs, never credentials."""
    from urllib.parse import urlsplit

    from tests.edge.conftest import SERVICE_ROLE_KEY

    log = supaqueue_fn.log()
    assert '"event":"job_reported"' in log
    password = urlsplit(edge_db).password
    assert password
    for secret in (dispatch_secret, SERVICE_ROLE_KEY, password):
        assert secret not in log


def test_many_slow_jobs_in_flight_do_not_slow_the_answer(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """40 dispatches back to back to a target that holds every call until the test releases
    them: each 202 comes while all earlier calls are still open, so no answer waits for a
    job in flight (the 202 latency with 40 in flight: benchmarks/dispatch_answer_bench.py)."""
    key = uuid.uuid4().hex[:12]
    dispatches = [engine.dispatch(f"hold-{key}", timeout_ms=60_000) for _ in range(40)]
    try:
        for d in dispatches:
            assert deliver(supaqueue_fn, d).status_code == 202
        calls = target.wait_for(f"hold-{key}", 40, timeout=60)
        assert all(call.ended is None for call in calls)  # answered, none of them done
        assert max_in_flight(calls) == 40
        assert {engine.job(d.job_id)["status"] for d in dispatches} == {"in_progress"}
    finally:
        target.release(key)
    for d in dispatches:
        [attempt] = engine.wait_attempts(d.job_id, timeout=60)
        assert attempt["outcome"] == "success"
