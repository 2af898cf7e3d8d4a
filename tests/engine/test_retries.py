"""The end of an attempt: retry policy, leases, late and duplicate reports, history."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from harness.engine import Engine


def _fail_once(engine: Engine, job: str, **kwargs: Any) -> dict[str, Any]:
    assert engine.end(engine.current_job_of(job), success=False, **kwargs)
    return engine.job(job)


def test_backoff_is_exponential_and_capped(engine: Engine) -> None:
    q = engine.queue(
        workers=1, max_attempts=5, backoff_base_ms=2000, backoff_max_ms=5000, backoff_jitter=0
    )
    job = engine.insert_job(q)
    delays = []
    for attempt in range(1, 5):
        state = _fail_once(engine, job, _status_code=500, _error="boom")
        assert state["status"] == "pending" and state["attempts"] == attempt
        delays.append(state["delay_s"])
        engine.make_due(job)
        engine.tick()
        assert engine.status(job) == "in_progress"
    assert delays == pytest.approx([2.0, 4.0, 5.0, 5.0], abs=0.001)
    state = _fail_once(engine, job, _status_code=500)
    assert state["status"] == "failed" and state["attempts"] == 5


def test_jitter_spreads_delays_within_bounds(engine: Engine) -> None:
    q = engine.queue(
        workers=50, max_attempts=2, backoff_base_ms=10_000, backoff_max_ms=60_000,
        backoff_jitter=0.5,
    )  # fmt: skip
    jobs = [engine.insert_job(q) for _ in range(50)]
    delays = [_fail_once(engine, j, _status_code=503)["delay_s"] for j in jobs]
    assert all(5.0 <= d <= 15.0 for d in delays), delays
    assert max(delays) - min(delays) > 2.0, "jitter should spread the retries"


def test_defaults_three_attempts_then_failed(engine: Engine) -> None:
    q = engine.queue(workers=1, backoff_base_ms=0, backoff_jitter=0)
    job = engine.insert_job(q)
    for _ in range(2):
        # base 0: the retry is due at once and the freed worker takes it in the same call
        assert _fail_once(engine, job, _status_code=502)["status"] == "in_progress"
    state = _fail_once(engine, job, _status_code=502, _error="bad gateway")
    assert state["status"] == "failed" and state["attempts"] == 3
    assert state["last_error"] == "bad gateway" and state["last_status_code"] == 502


def test_non_retryable_statuses_fail_at_once(engine: Engine) -> None:
    # default: every 4xx but 408 and 429; a long backoff keeps retries out of the way
    q = engine.queue(workers=1, max_attempts=5, backoff_base_ms=60_000)
    for code, final in [(400, True), (401, True), (404, True), (422, True), (499, True),
                        (408, False), (429, False), (500, False), (503, False)]:  # fmt: skip
        job = engine.insert_job(q)
        state = _fail_once(engine, job, _status_code=code)
        assert state["status"] == ("failed" if final else "pending"), (code, state)
    custom = engine.queue(workers=1, max_attempts=5, backoff_base_ms=60_000,
                          non_retryable_statuses=[500])  # fmt: skip
    job = engine.insert_job(custom)
    assert _fail_once(engine, job, _status_code=500)["status"] == "failed"
    job = engine.insert_job(custom)
    assert _fail_once(engine, job, _status_code=404)["status"] == "pending"


def test_retry_after_is_honoured(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=3, backoff_base_ms=1000, backoff_jitter=0)
    job = engine.insert_job(q)
    state = _fail_once(engine, job, _status_code=429, _retry_after_seconds=30)
    assert state["status"] == "pending" and state["delay_s"] == pytest.approx(30, abs=0.001)
    assert engine.tick()["dispatched"] == 0
    # Retry-After shorter than the backoff: the backoff wins (never earlier than either).
    engine.make_due(job)
    engine.tick()
    state = _fail_once(engine, job, _status_code=503, _retry_after_seconds=0.5)
    assert state["delay_s"] == pytest.approx(2.0, abs=0.001)


def test_incomplete_attempt_counts_as_failure(engine: Engine) -> None:
    q = engine.queue(workers=1, backoff_base_ms=0, max_attempts=2)
    job = engine.insert_job(q)
    assert engine.end(engine.current_job_of(job), complete=False, success=True,
                      _error="connection lost")  # fmt: skip
    # failed and due at once; its call may still run at the target, so it waits for the worker
    # (sql/0017), held until the target's wall clock has passed (moved into the past here)
    assert engine.job(job)["attempts"] == 1 and engine.job(job)["status"] == "pending"
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second' where queue = %s",
        (q,),
    )
    engine.tick()
    assert engine.job(job)["attempts"] == 2  # retried
    [a] = engine.conn.execute("select outcome, error from supaqueue.job_attempt").fetchall()
    assert a == {"outcome": "failure", "error": "connection lost"}


def test_expired_lease_is_retried_and_its_late_report_ignored(engine: Engine) -> None:
    q = engine.queue(workers=1, backoff_base_ms=0, backoff_jitter=0)
    job = engine.insert_job(q)
    [first] = engine.new_requests()
    engine.expire_lease(first.current_job)
    result = engine.tick()
    assert result["expired"] == 1
    # the worker was freed and the retry dispatched under a new lease
    [second] = engine.new_requests()
    assert second.job == job and second.current_job != first.current_job
    assert second.attempt == 2
    history = engine.conn.execute(
        "select attempt, outcome, error from supaqueue.job_attempt where job = %s", (job,)
    ).fetchall()
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "lease_expired")]
    assert "lease expired" in history[0]["error"]
    # The first call's report finally arrives: nothing changes.
    before = engine.snapshot(job)
    assert engine.end(first.current_job, success=True, _result={"late": True}) is False
    assert engine.snapshot(job) == before
    assert engine.in_flight(q) == 1
    assert engine.end(second.current_job, success=True, _result={"ok": 1}) is True
    assert engine.job(job)["result"] == {"ok": 1}


def test_duplicate_reports_change_nothing(engine: Engine) -> None:
    q = engine.queue(workers=1)
    job = engine.insert_job(q)
    cj = engine.current_job_of(job)
    assert engine.end(cj, success=True, _status_code=200) is True
    before = engine.snapshot(job)
    assert engine.end(cj, success=False, _status_code=500) is False
    assert engine.snapshot(job) == before and before["status"] == "success"
    assert engine.one("select count(*) from supaqueue.job_attempt") == 1
    assert engine.end("00000000-0000-0000-0000-000000000000") is False


def test_concurrent_duplicate_reports_only_one_wins(engine_dsn: str, engine: Engine) -> None:
    q = engine.queue(workers=1)
    job = engine.insert_job(q)
    cj = engine.current_job_of(job)
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def report() -> None:
        with psycopg.connect(engine_dsn, autocommit=True) as conn:
            barrier.wait()
            row = conn.execute(
                "select supaqueue.end_current_job(%s, true, true, 200)", (cj,)
            ).fetchone()
            assert row is not None
            results.append(bool(row[0]))

    threads = [threading.Thread(target=report) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True]
    assert engine.one("select count(*) from supaqueue.job_attempt") == 1


def test_history_records_each_attempt(engine: Engine) -> None:
    q = engine.queue(workers=1, backoff_base_ms=0)
    job = engine.insert_job(q)
    engine.end(engine.current_job_of(job), success=False, _status_code=500,
               _response_excerpt="x" * 5000, _error="upstream 500", _duration_ms=1234)  # fmt: skip
    engine.end(engine.current_job_of(job), success=True, _status_code=201,
               _response_excerpt='{"ok":true}', _result={"ok": True})  # fmt: skip
    rows = engine.conn.execute(
        "select attempt, outcome, status_code, error, duration_ms, length(response_excerpt) as n,"
        " started_at <= ended_at as ordered from supaqueue.job_attempt where job = %s order by id",
        (job,),
    ).fetchall()
    assert [(r["attempt"], r["outcome"], r["status_code"]) for r in rows] == [
        (1, "failure", 500), (2, "success", 201),
    ]  # fmt: skip
    assert rows[0]["error"] == "upstream 500" and rows[0]["duration_ms"] == 1234
    assert rows[0]["n"] == 2000, "response excerpts are truncated"
    assert rows[1]["duration_ms"] is not None and all(r["ordered"] for r in rows)


def test_huge_retry_after_is_capped_not_an_error(engine: Engine) -> None:
    # A target answering `Retry-After: 10000000000000` (or an HTTP date far ahead) must not make
    # the report fail (timestamp out of range), which would lose the attempt's outcome and keep
    # the worker busy until the lease expires. The delay is capped at one year.
    q = engine.queue(workers=1, max_attempts=3, backoff_jitter=0)
    job = engine.insert_job(q)
    state = _fail_once(engine, job, _status_code=503, _retry_after_seconds=10**13)
    assert state["status"] == "pending" and state["last_status_code"] == 503
    assert state["delay_s"] == pytest.approx(365 * 86400, abs=0.001)
    assert engine.in_flight(q) == 0
    free = engine.one("select count(*) from supaqueue.worker where queue = %s and not locked", (q,))
    assert free == 1
