"""Every call carries its deadline, and the dispatcher never starts one past it (issue #21 item 1):
the real function in Deno, the real engine, a loopback target."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta

import psycopg

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer
from tests.edge.conftest import deliver


def _worker(engine: Engine, job_id: str) -> dict[str, object]:
    row = engine.conn.execute(
        "select w.locked, w.held_until from supaqueue.worker w"
        " join supaqueue.job j on j.queue = w.queue where j.id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def test_the_target_gets_the_calls_deadline(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("status-200", timeout_ms=7000)
    deliver(supaqueue_fn, d)
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"
    [call] = [
        c
        for c in target.requests_for("status-200")
        if c.headers.get("supaqueue-job-id") == d.job_id
    ]
    sent = datetime.fromisoformat(call.headers["supaqueue-deadline"].replace("Z", "+00:00"))
    started = engine.conn.execute(
        "select started_at from supaqueue.job_attempt where job = %s", (d.job_id,)
    ).fetchone()
    assert started is not None
    # claimed_at + timeout_ms, to the millisecond (the claim is after the dispatch's start)
    assert started["started_at"] + timedelta(milliseconds=7000) <= sent + timedelta(milliseconds=1)
    assert sent - started["started_at"] < timedelta(milliseconds=7000 + 60_000)
    assert _worker(engine, d.job_id) == {"locked": False, "held_until": None}


def test_no_call_starts_past_its_deadline(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """The claim is held up (a lock) past the call's deadline: the function does not call."""
    slug = f"status-2{uuid.uuid4().int % 100:02d}"
    d = engine.dispatch(slug, timeout_ms=200, max_attempts=1)
    calls_before = len(target.requests_for(slug))
    with psycopg.connect(engine.dsn, autocommit=False) as holder:
        holder.execute(
            "select 1 from supaqueue.current_job where id = %s for update", (d.current_job_id,)
        )
        sent = threading.Thread(target=deliver, args=(supaqueue_fn, d))
        sent.start()
        deadline = time.monotonic() + 60
        while True:
            row = engine.conn.execute(  # its own transaction: activity is read afresh
                "select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock'"
                " and query like '%%claim_current_job%%')"
            ).fetchone()
            if row is not None and row["exists"]:
                break
            assert time.monotonic() < deadline, "the function's claim never waited for the lock"
            time.sleep(0.01)
        time.sleep(0.3)  # past the call's 200 ms deadline, counted from before the claim waited
        holder.rollback()
        sent.join(30)
    [attempt] = engine.wait_attempts(d.job_id, timeout=60)
    assert attempt["outcome"] == "failure"
    assert attempt["error"].startswith("not started: the deadline passed"), attempt["error"]
    assert len(target.requests_for(slug)) == calls_before  # never called
    # nothing ran, so nothing holds the worker
    assert _worker(engine, d.job_id) == {"locked": False, "held_until": None}


def test_a_timed_out_call_keeps_its_worker(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    key = uuid.uuid4().hex[:12]
    d = engine.dispatch(f"hold-{key}", timeout_ms=300)
    try:
        deliver(supaqueue_fn, d)
        [attempt] = engine.wait_attempts(d.job_id, timeout=60)
        assert attempt["error"] == "Timeout of 300 ms reached"
        worker = _worker(engine, d.job_id)
        # the call may still run at the target: the worker waits for its wall clock
        assert worker["locked"] is True and worker["held_until"] is not None
    finally:
        target.release(key)


def test_a_refused_connection_frees_the_worker(refused_fn: FunctionProcess, engine: Engine) -> None:
    d = engine.dispatch("anything", max_attempts=1)
    deliver(refused_fn, d)
    [attempt] = engine.wait_attempts(d.job_id, timeout=60)
    assert attempt["error"].startswith("request failed:")
    assert _worker(engine, d.job_id) == {"locked": False, "held_until": None}
