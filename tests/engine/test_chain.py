"""Chained dispatch (issue #11): a report claims the same worker's next ready job in the same
call (supaqueue.report_and_claim), within the chain budget; everything that holds for a pg_net
dispatch holds for a chained claim."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from harness.engine import Engine


def _cj(claimed: dict[str, Any]) -> str:
    return str(claimed["current_job"]["id"])


def _first(engine: Engine, queue: str, payload: Any = None) -> tuple[str, str]:
    """(job, current_job) of a job dispatched through pg_net and claimed, as the function does."""
    job = engine.insert_job(queue, payload)
    [req] = engine.new_requests()
    assert engine.claim(req.current_job, req.attempt) is not None
    return job, req.current_job


def test_report_claims_the_next_job_of_the_same_worker_without_pg_net(engine: Engine) -> None:
    q = engine.queue(workers=1, timeout_ms=2000, lease_grace_ms=3000)
    job1, cj1 = _first(engine, q, {"n": 1})
    job2 = engine.insert_job(q, {"n": 2})
    assert engine.new_requests() == []  # the only worker is busy
    worker = engine.one("select worker::text from supaqueue.current_job where id = %s", (cj1,))

    reported = engine.report_and_claim(cj1, chain_jobs=1, elapsed_ms=10, _result={"ok": 1})
    assert reported["current"] is True
    nxt = reported["next"]
    assert nxt["job"]["id"] == job2 and nxt["job"]["payload"] == {"n": 2}
    assert nxt["current_job"]["worker"] == worker and _cj(nxt) != cj1
    assert engine.status(job1) == "success" and engine.status(job2) == "in_progress"
    assert engine.new_requests() == []  # no pg_net request for the chained job
    row = engine.conn.execute(
        "select request_id, claimed_at is not null as claimed,"
        " extract(epoch from lease_expires_at - claimed_at)::float as lease_s"
        " from supaqueue.current_job where id = %s",
        (_cj(nxt),),
    ).fetchone()
    # its own lease, claimed already (a second claim of it gets nothing), timeout + grace long
    assert row == {"request_id": None, "claimed": True, "lease_s": pytest.approx(5.0, abs=0.01)}
    assert engine.claim(_cj(nxt)) is None

    # nothing more to do: the chain ends, the worker is free again and idle
    last = engine.report_and_claim(_cj(nxt), chain_jobs=2, elapsed_ms=20)
    assert last == {"current": True, "next": None}
    assert engine.in_flight(q) == 0
    locked = engine.one("select bool_or(locked) from supaqueue.worker where queue = %s", (q,))
    assert locked is False
    # an idle worker is dispatched through pg_net again, at once
    engine.insert_job(q)
    assert len(engine.new_requests()) == 1


def test_jobs_budget_ends_the_chain_and_pg_net_takes_over(engine: Engine) -> None:
    engine.set_setting("chain_max_jobs", "3")
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    for _ in range(5):
        engine.insert_job(q)
    for done in (1, 2):
        cj = _cj(engine.report_and_claim(cj, chain_jobs=done)["next"])
    assert engine.new_requests() == []
    # the third job was the budget's last: no chained claim, the freed worker goes via pg_net
    assert engine.report_and_claim(cj, chain_jobs=3) == {"current": True, "next": None}
    assert len(engine.new_requests()) == 1 and engine.in_flight(q) == 1


def test_seconds_budget_counts_the_next_jobs_timeout(engine: Engine) -> None:
    engine.set_setting("chain_max_seconds", "60")
    q = engine.queue(workers=1, timeout_ms=30_000)
    _, cj = _first(engine, q)
    engine.insert_job(q)
    engine.insert_job(q)
    # 30 s old + a 30 s timeout fits in 60 s; 30.001 s old does not
    cj = _cj(engine.report_and_claim(cj, chain_jobs=1, elapsed_ms=30_000)["next"])
    assert engine.report_and_claim(cj, chain_jobs=2, elapsed_ms=30_001)["next"] is None
    assert len(engine.new_requests()) == 1  # back to pg_net


@pytest.mark.parametrize("off", ["0", "1"])
def test_chaining_off_reports_like_end_current_job(engine: Engine, off: str) -> None:
    engine.set_setting("chain_max_jobs", off)
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    engine.insert_job(q)
    assert engine.report_and_claim(cj, chain_jobs=1) == {"current": True, "next": None}
    assert len(engine.new_requests()) == 1


def test_without_chain_arguments_nothing_is_claimed(engine: Engine) -> None:
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    engine.insert_job(q)
    assert engine.report_and_claim(cj, chain_jobs=None, elapsed_ms=None)["next"] is None
    assert len(engine.new_requests()) == 1
    # end_current_job still answers a boolean and dispatches through pg_net
    engine.insert_job(q)
    cj2 = engine.one("select id::text from supaqueue.current_job")
    assert engine.end(cj2) is True
    assert len(engine.new_requests()) == 1


def test_never_more_than_workers_in_flight(engine: Engine) -> None:
    q = engine.queue(workers=2)
    for _ in range(12):
        engine.insert_job(q)
    leases = [r.current_job for r in engine.new_requests()]
    assert len(leases) == 2
    for lease in leases:
        assert engine.claim(lease) is not None
    done = 0
    while leases:
        lease = leases.pop(0)
        reported = engine.report_and_claim(lease, chain_jobs=1)
        done += 1
        assert engine.in_flight(q) <= 2
        assert (
            engine.one(
                "select count(*) from supaqueue.job where queue = %s and status = 'in_progress'",
                (q,),
            )
            <= 2
        )
        if reported["next"] is not None:
            leases.append(_cj(reported["next"]))
    assert done == 12 and engine.new_requests() == []


def test_chained_claim_takes_a_rate_limit_token(engine: Engine) -> None:
    # burst 3, a refill too slow to matter here: three jobs in all, then the chain ends
    q = engine.queue(workers=1, rate_limit_per_second=0.001, rate_limit_burst=3)
    _, cj = _first(engine, q)
    for _ in range(4):
        engine.insert_job(q)
    cj = _cj(engine.report_and_claim(cj)["next"])
    cj = _cj(engine.report_and_claim(cj)["next"])
    assert engine.one("select tokens from supaqueue.queue_bucket where queue = %s", (q,)) < 0.01
    assert engine.report_and_claim(cj) == {"current": True, "next": None}
    assert engine.new_requests() == [] and engine.in_flight(q) == 0


def test_chain_follows_priority_and_run_at(engine: Engine) -> None:
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    low = engine.enqueue(q, {"p": "low"}, _priority=0)
    high = engine.enqueue(q, {"p": "high"}, _priority=5)
    later = engine.conn.execute(
        "select supaqueue.enqueue(%s, '{}', _run_at => now() + interval '1 hour', _priority => 9)",
        (q,),
    ).fetchone()
    assert later is not None
    first = engine.report_and_claim(cj)["next"]
    assert first["job"]["id"] == high
    second = engine.report_and_claim(_cj(first))["next"]
    assert second["job"]["id"] == low
    assert engine.report_and_claim(_cj(second))["next"] is None  # the delayed one is not due


def test_a_failed_job_backs_off_and_the_chain_takes_the_next(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=3, backoff_base_ms=60_000)
    failing, cj = _first(engine, q)
    other = engine.insert_job(q)
    reported = engine.report_and_claim(cj, success=False, _status_code=503)
    assert reported["next"]["job"]["id"] == other
    state = engine.job(failing)
    assert state["status"] == "pending" and state["delay_s"] >= 54  # 60 s less the 10 % jitter


def test_non_retryable_status_fails_at_once_and_the_chain_goes_on(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=5)
    failing, cj = _first(engine, q)
    other = engine.insert_job(q)
    reported = engine.report_and_claim(cj, success=False, _status_code=404)
    assert engine.status(failing) == "failed"
    assert reported["next"]["job"]["id"] == other


def test_retry_after_delays_the_job_even_in_a_chain(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=3, backoff_base_ms=10)
    limited, cj = _first(engine, q)
    reported = engine.report_and_claim(
        cj, success=False, _status_code=429, _retry_after_seconds=120
    )
    assert reported == {"current": True, "next": None}  # not claimed again right away
    state = engine.job(limited)
    assert state["status"] == "pending" and state["delay_s"] == 120


def test_pause_ends_the_chain(engine: Engine) -> None:
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    waiting = engine.insert_job(q)
    engine.conn.execute("update supaqueue.queue set paused = true where id = %s", (q,))
    assert engine.report_and_claim(cj) == {"current": True, "next": None}
    assert engine.status(waiting) == "pending" and engine.new_requests() == []
    engine.conn.execute("update supaqueue.queue set paused = false where id = %s", (q,))
    assert len(engine.new_requests()) == 1  # resumed: dispatched through pg_net


def test_lowered_worker_count_ends_a_retiring_workers_chain(engine: Engine) -> None:
    q = engine.queue(workers=2)
    for _ in range(6):
        engine.insert_job(q)
    leases = [r.current_job for r in engine.new_requests()]
    for lease in leases:
        engine.claim(lease)
    engine.conn.execute("select supaqueue.set_worker_count(%s, 1)", (q,))
    assert engine.one("select count(*) from supaqueue.worker where queue = %s and retiring", (q,))
    nexts = [engine.report_and_claim(lease)["next"] for lease in leases]
    # the retiring worker's chain ended (and the worker is gone); the other one goes on
    assert sum(n is None for n in nexts) == 1
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 1
    assert engine.in_flight(q) == 1 and engine.new_requests() == []


def test_dependency_result_reaches_the_chained_step(engine: Engine) -> None:
    q = engine.queue(workers=1)
    step1 = engine.enqueue(q, {"step": 1})
    [req] = engine.new_requests()
    engine.claim(req.current_job)
    step2 = engine.enqueue(q, {"step": 2}, _depends_on=[step1])
    reported = engine.report_and_claim(req.current_job, _result={"made": "by step 1"})
    nxt = reported["next"]
    assert nxt["job"]["id"] == step2
    assert nxt["job"]["dependency_results"] == {step1: {"made": "by step 1"}}


def test_a_chained_lease_expires_alone_and_its_late_report_claims_nothing(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=2, backoff_base_ms=0)
    _, cj = _first(engine, q)
    chained_job = engine.insert_job(q)
    follower = engine.insert_job(q)
    chained = _cj(engine.report_and_claim(cj)["next"])
    engine.expire_lease(chained)  # the function died mid-chain
    assert engine.tick()["expired"] == 1
    [attempt] = engine.conn.execute(
        "select outcome from supaqueue.job_attempt where job = %s", (chained_job,)
    ).fetchall()
    assert attempt["outcome"] == "lease_expired"
    # its call may still be running at the target: the worker is held until the target's wall
    # clock has passed (sql/0017; moved into the past here), then freed by the tick, which
    # dispatches through pg_net (the expired job or the follower)
    assert engine.new_requests() == []
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second' where queue = %s",
        (q,),
    )
    engine.tick()
    assert len(engine.new_requests()) == 1
    before = engine.snapshot(follower)
    assert engine.report_and_claim(chained, chain_jobs=2) == {"current": False, "next": None}
    assert engine.snapshot(follower) == before


def test_a_chained_job_over_the_limits_is_refused(engine: Engine) -> None:
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    step = engine.insert_job(q)
    engine.insert_job(q)
    # grown in place past the payload limit after enqueue: the chained claim refuses it
    engine.conn.execute(
        "update supaqueue.job set payload = jsonb_build_object('x', repeat('y', %s)) where id = %s",
        (engine.one("select supaqueue.max_payload_bytes()"), step),
    )
    nxt = engine.report_and_claim(cj)["next"]
    assert "over the limit" in nxt["refused"]
    assert engine.status(step) == "failed"
    # the worker was freed by the refusal and went back to pg_net for the other job
    assert len(engine.new_requests()) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [("chain_max_jobs", "many"), ("chain_max_jobs", "1001"), ("chain_max_seconds", "0"),
     ("chain_max_seconds", "121"), ("chain_max_seconds", "-5")],
)  # fmt: skip
def test_bad_budget_settings_are_refused_naming_the_key(
    engine: Engine, key: str, value: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=f"settings_{key}_valid"):
        engine.set_setting(key, value)


def test_budget_defaults_and_settings(engine: Engine) -> None:
    assert engine.conn.execute("select * from supaqueue.chain_budget()").fetchone() == {
        "max_jobs": 50,
        "max_seconds": 60,
    }
    engine.set_setting("chain_max_jobs", "200")
    engine.set_setting("chain_max_seconds", "120")
    assert engine.conn.execute("select * from supaqueue.chain_budget()").fetchone() == {
        "max_jobs": 200,
        "max_seconds": 120,
    }


def test_a_chained_report_stays_durable(engine: Engine) -> None:
    """The claim lets its own commit skip the WAL flush (0010); a report that claims the next job
    in its transaction must not inherit that: it commits as durably as end_current_job."""
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    engine.insert_job(q)
    with engine.conn.transaction():
        engine.conn.execute("set local synchronous_commit = on")  # test clusters run with off
        assert engine.report_and_claim(cj)["next"] is not None
        assert engine.one("show synchronous_commit") == "on"


def test_chains_and_pg_net_dispatches_together_run_each_job_once_within_workers(
    engine_dsn: str, engine: Engine
) -> None:
    """Four function invocations at a time, each running its chain on its own connection, while
    jobs keep arriving and the tick runs: every job runs exactly once, never more than `workers`
    leases at once, and every pg_net dispatch starts a chain."""
    workers, batches, per_batch = 4, 20, 10
    q = engine.queue(workers=workers)
    deadline = time.monotonic() + 120
    errors: list[BaseException] = []
    ran: list[str] = []
    most = [0]
    lock = threading.Lock()
    deliveries: queue.Queue[str | None] = queue.Queue()

    def invocation() -> None:  # one function invocation at a time per thread: claim, then chain
        try:
            with psycopg.connect(engine_dsn, autocommit=True, row_factory=dict_row) as conn:
                while (lease := deliveries.get(timeout=60)) is not None:
                    claimed = conn.execute(
                        "select supaqueue.claim_current_job(%s) as c", (lease,)
                    ).fetchone()
                    doc = claimed["c"] if claimed else None
                    jobs = 0
                    while doc is not None and time.monotonic() < deadline:
                        jobs += 1
                        with lock:
                            ran.append(doc["job"]["id"])
                        row = conn.execute(
                            "select supaqueue.report_and_claim(%s, true, true, 200,"
                            " _chain_jobs => %s, _chain_elapsed_ms => 0) as r",
                            (doc["current_job"]["id"], jobs),
                        ).fetchone()
                        assert row is not None and row["r"]["current"] is True
                        doc = row["r"]["next"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=invocation) for _ in range(workers)]
    for t in threads:
        t.start()
    seen = 0
    try:
        for b in range(batches):
            engine.conn.execute(
                "insert into supaqueue.job (queue, payload)"
                " select %s, jsonb_build_object('b', %s, 'k', k) from generate_series(1, %s) k",
                (q, b, per_batch),
            )
            for _ in range(3):  # pg_net's part: deliver what the engine dispatched
                engine.tick()
                for req in engine.new_requests():
                    deliveries.put(req.current_job)
                    seen += 1
                most[0] = max(most[0], engine.in_flight(q))
                time.sleep(0.005)
        while time.monotonic() < deadline and not errors:
            engine.tick()
            for req in engine.new_requests():
                deliveries.put(req.current_job)
                seen += 1
            most[0] = max(most[0], engine.in_flight(q))
            left = engine.one(
                "select count(*) from supaqueue.job where queue = %s and status <> 'success'",
                (q,),
            )
            if left == 0:
                break
            time.sleep(0.01)
    finally:
        for _ in threads:
            deliveries.put(None)
        for t in threads:
            t.join(30)
    assert errors == []
    total = batches * per_batch
    assert sorted(ran) == sorted(set(ran)) and len(ran) == total  # each job once
    assert engine.one("select count(*) from supaqueue.job_attempt where queue = %s", (q,)) == total
    assert most[0] <= workers
    assert 1 <= seen < total  # chains carried most jobs; pg_net only started them


def test_operator_pause_ends_the_chain(engine: Engine) -> None:
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    waiting = engine.insert_job(q)
    engine.conn.execute("select supaqueue.pause_queue(%s)", (q,))
    assert engine.report_and_claim(cj) == {"current": True, "next": None}
    assert engine.status(waiting) == "pending" and engine.new_requests() == []
    engine.conn.execute("select supaqueue.resume_queue(%s)", (q,))
    assert len(engine.new_requests()) == 1


def test_an_operator_cancel_mid_chain_ends_it(engine: Engine) -> None:
    q = engine.queue(workers=1)
    running, cj = _first(engine, q)
    engine.insert_job(q)
    assert engine.one("select supaqueue.cancel_job(%s)", (running,)) is True
    # the report of the cancelled attempt is late: nothing changes, nothing is claimed
    assert engine.report_and_claim(cj) == {"current": False, "next": None}
    assert engine.status(running) == "cancelled"


def test_a_chain_leaves_its_worker_row_alone_until_it_ends(engine: Engine) -> None:
    """0015: a chained report keeps its worker locked instead of freeing it and locking it again
    (two row versions per job of a small, hot table): the row is written once, when the chain
    ends."""
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    for _ in range(3):
        engine.insert_job(q)
    version = "select xmin::text || ctid::text from supaqueue.worker where queue = %s"
    first = engine.one(version, (q,))
    for done in (1, 2, 3):
        cj = _cj(engine.report_and_claim(cj, chain_jobs=done)["next"])
        assert engine.one(version, (q,)) == first  # the same row version: not written
        assert engine.one("select locked from supaqueue.worker where queue = %s", (q,)) is True
    assert engine.report_and_claim(cj, chain_jobs=4) == {"current": True, "next": None}
    assert engine.one(version, (q,)) != first
    assert engine.one("select locked from supaqueue.worker where queue = %s", (q,)) is False


def test_a_resize_during_a_chained_report_ends_the_chain(engine_dsn: str, engine: Engine) -> None:
    """A lowered worker count committed while a chained report waits for the worker row: the
    report then sees the worker retiring, ends the chain and removes the worker."""
    q = engine.queue(workers=1)
    _, cj = _first(engine, q)
    waiting = engine.insert_job(q)
    results: list[Any] = []
    with psycopg.connect(engine_dsn, autocommit=True) as resize:
        with resize.transaction():
            resize.execute("select supaqueue.set_worker_count(%s, 0)", (q,))
            reporter = threading.Thread(
                target=lambda: results.append(engine.report_and_claim(cj, chain_jobs=1))
            )
            reporter.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the report waits for the resize's row lock
                resize.execute("select pg_stat_clear_snapshot()")  # fresh within a transaction
                row = resize.execute(
                    "select count(*) from pg_stat_activity"
                    " where wait_event_type = 'Lock' and query like '%%report_and_claim%%'"
                ).fetchone()
                if row and row[0] == 1:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the chained report never waited for the resize")
        reporter.join(timeout=60)
    assert results == [{"current": True, "next": None}]
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 0
    assert engine.status(waiting) == "pending" and engine.in_flight(q) == 0
