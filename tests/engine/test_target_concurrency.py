"""At most `workers` calls at the target (issue #21 item 1, sql/0017): a call that may still be
running there (abandoned at its deadline, its dispatcher lost, cancelled while running) keeps its
worker until the target's wall clock has passed, while its attempt ends (and is retried) at once.
The hold's end is moved into the past by the test (as `expire_lease` does for a lease), so no
test waits for a wall clock."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from harness.engine import Engine

TIMEOUT_MS = 2000
WALL_CLOCK_MS = 5000


def held_queue(
    engine: Engine, workers: int = 1, wall_clock_ms: int = WALL_CLOCK_MS, **columns: Any
) -> str:
    columns.setdefault("timeout_ms", TIMEOUT_MS)
    columns.setdefault("lease_grace_ms", 3000)
    columns.setdefault("backoff_base_ms", 0)
    columns.setdefault("backoff_jitter", 0)
    return engine.queue(workers=workers, target_wall_clock_ms=wall_clock_ms, **columns)


def _dispatched_and_claimed(engine: Engine, queue: str, payload: Any = None) -> tuple[str, str]:
    job = engine.insert_job(queue, payload)
    [req] = engine.new_requests()
    assert engine.claim(req.current_job, req.attempt) is not None
    return job, req.current_job


def _workers(engine: Engine, queue: str) -> list[dict[str, Any]]:
    return list(
        engine.conn.execute(
            "select id::text, locked, retiring, held_until from supaqueue.worker"
            " where queue = %s order by created_at, id",
            (queue,),
        ).fetchall()
    )


def _end_hold(engine: Engine, queue: str) -> None:
    """As if the target's wall clock had passed."""
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second'"
        " where queue = %s and held_until is not null",
        (queue,),
    )


def _abandon(engine: Engine, current_job: str, chain: bool = False) -> dict[str, Any]:
    """The dispatcher's report of a call it abandoned at its deadline (`_is_complete` false)."""
    chained = ", _chain_jobs => 1, _chain_elapsed_ms => 10" if chain else ""
    return dict(
        engine.one(
            "select supaqueue.report_and_claim(%s, false, false, null, null,"
            f" 'Timeout of {TIMEOUT_MS} ms reached'{chained})",
            (current_job,),
        )
    )


def test_an_abandoned_call_holds_its_worker_while_its_job_is_retried(engine: Engine) -> None:
    q = held_queue(engine)
    job1, cj1 = _dispatched_and_claimed(engine, q, {"n": 1})
    job2 = engine.insert_job(q, {"n": 2})
    claimed_at = engine.one("select claimed_at from supaqueue.current_job where id = %s", (cj1,))

    assert _abandon(engine, cj1) == {"current": True, "next": None}
    # the attempt is failed and retried as before ...
    assert engine.job(job1)["status"] == "pending"
    outcomes = engine.conn.execute(
        "select outcome from supaqueue.job_attempt where job = %s", (job1,)
    ).fetchall()
    assert outcomes == [{"outcome": "failure"}]
    # ... but no other call starts while the abandoned one may still run at the target
    assert engine.new_requests() == []
    [worker] = _workers(engine, q)
    assert worker["locked"] and not worker["retiring"]
    held = worker["held_until"] - claimed_at
    assert held == timedelta(milliseconds=TIMEOUT_MS + WALL_CLOCK_MS)
    assert engine.tick()["dispatched"] == 0
    assert engine.new_requests() == []

    _end_hold(engine, q)
    assert engine.tick()["dispatched"] == 1
    [req] = engine.new_requests()
    assert req.job in (job1, job2)
    [worker] = _workers(engine, q)
    assert worker["locked"] and worker["held_until"] is None


def test_a_report_with_an_answer_frees_the_worker_at_once(engine: Engine) -> None:
    q = held_queue(engine)
    _job1, cj1 = _dispatched_and_claimed(engine, q)
    job2 = engine.insert_job(q)
    assert engine.end(cj1, success=False, _status_code=500) is True
    [req] = engine.new_requests()
    assert req.job == job2
    assert _workers(engine, q)[0]["held_until"] is None


def test_an_abandoned_call_never_chains_onto_its_worker(engine: Engine) -> None:
    q = held_queue(engine)
    _job1, cj1 = _dispatched_and_claimed(engine, q)
    engine.insert_job(q)
    assert _abandon(engine, cj1, chain=True) == {"current": True, "next": None}
    assert engine.in_flight(q) == 0
    assert engine.new_requests() == []
    [worker] = _workers(engine, q)
    assert worker["locked"] and worker["held_until"] is not None


def test_a_claimed_lease_that_expires_holds_its_worker_an_unclaimed_one_does_not(
    engine: Engine,
) -> None:
    q = held_queue(engine, workers=2)
    job1, cj1 = _dispatched_and_claimed(engine, q)
    job2 = engine.insert_job(q)
    [req2] = engine.new_requests()  # dispatched, never delivered (never claimed)
    engine.expire_lease(cj1)
    engine.expire_lease(req2.current_job)

    assert engine.tick()["expired"] == 2
    # the unclaimed lease's worker took one of the two retried jobs at once; the claimed one's
    # dispatcher may still be calling the target, so its worker is held
    [again] = engine.new_requests()
    assert again.job in (job1, job2)
    held = [w for w in _workers(engine, q) if w["held_until"] is not None]
    assert len(held) == 1 and held[0]["locked"]
    assert engine.in_flight(q) == 1


def test_cancelling_a_claimed_job_holds_its_worker(engine: Engine) -> None:
    q = held_queue(engine)
    job1, _cj1 = _dispatched_and_claimed(engine, q)
    job2 = engine.insert_job(q)
    assert engine.one("select supaqueue.cancel_job(%s)", (job1,)) is True
    assert engine.status(job1) == "cancelled"
    assert engine.new_requests() == []  # the call may still be running
    _end_hold(engine, q)
    engine.tick()
    [req] = engine.new_requests()
    assert req.job == job2


def test_cancelling_an_unclaimed_job_frees_its_worker(engine: Engine) -> None:
    q = held_queue(engine)
    job1 = engine.insert_job(q)
    engine.new_requests()
    job2 = engine.insert_job(q)
    assert engine.one("select supaqueue.cancel_job(%s)", (job1,)) is True
    [req] = engine.new_requests()
    assert req.job == job2


def test_a_held_worker_of_a_lowered_worker_count_goes_when_released(engine: Engine) -> None:
    q = held_queue(engine, workers=1)
    _job1, cj1 = _dispatched_and_claimed(engine, q)
    _abandon(engine, cj1)
    assert engine.one("select supaqueue.set_worker_count(%s, 0)", (q,)) == 0
    # it stays (retiring, not replaced) while its call may run, then goes
    [worker] = _workers(engine, q)
    assert worker["locked"] and worker["retiring"] and worker["held_until"] is not None
    engine.tick()
    assert len(_workers(engine, q)) == 1
    _end_hold(engine, q)
    engine.tick()
    assert _workers(engine, q) == []


def test_a_paused_queue_releases_held_workers_and_dispatches_nothing(engine: Engine) -> None:
    q = held_queue(engine)
    _job1, cj1 = _dispatched_and_claimed(engine, q)
    _abandon(engine, cj1)
    engine.conn.execute("update supaqueue.queue set paused = true where id = %s", (q,))
    _end_hold(engine, q)
    assert engine.tick()["dispatched"] == 0
    [worker] = _workers(engine, q)
    assert not worker["locked"] and worker["held_until"] is None
    assert engine.new_requests() == []


def test_the_claim_carries_the_calls_deadline(engine: Engine) -> None:
    q = held_queue(engine)
    engine.insert_job(q)
    [req] = engine.new_requests()
    claimed = engine.claim(req.current_job, req.attempt)
    cj = claimed["current_job"]
    row = engine.conn.execute(
        "select claimed_at + interval '2 seconds' as deadline from supaqueue.current_job"
        " where id = %s",
        (req.current_job,),
    ).fetchone()
    assert row is not None
    assert datetime.fromisoformat(cj["deadline"]) == row["deadline"]
    assert 0 < cj["deadline_in_ms"] <= TIMEOUT_MS


def test_a_claim_answered_after_its_deadline_says_no_time_is_left(engine: Engine) -> None:
    """The claim's clock starts before it waits for a lock: the time left can be none."""
    q = held_queue(engine, timeout_ms=100)
    engine.insert_job(q)
    [req] = engine.new_requests()
    box: dict[str, Any] = {}
    with (
        psycopg.connect(engine.dsn, autocommit=False) as holder,
        psycopg.connect(engine.dsn, autocommit=True) as watcher,  # reads activity afresh
    ):
        holder.execute(
            "select 1 from supaqueue.current_job where id = %s for update", (req.current_job,)
        )
        thread = threading.Thread(target=lambda: box.update(c=engine.claim(req.current_job)))
        thread.start()
        deadline = time.monotonic() + 30
        while not watcher.execute(
            "select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock'"
            " and query like '%%claim_current_job%%')"
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the claim never waited for the lock"
            time.sleep(0.01)
        time.sleep(0.2)  # past the claim's 100 ms deadline, counted from before the wait
        holder.rollback()
        thread.join(30)
    assert box["c"]["current_job"]["deadline_in_ms"] == 0


@pytest.mark.parametrize("bad", [999, 3_600_001])
def test_the_wall_clock_setting_is_bounded(engine: Engine, bad: int) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="queue_target_wall_clock_range"):
        engine.queue(workers=0, target_wall_clock_ms=bad)
