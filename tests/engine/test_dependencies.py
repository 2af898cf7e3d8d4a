"""Pipelines: jobs that wait for other jobs, receive their results, and are cancelled with them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from harness.engine import Engine


def test_job_waits_for_all_dependencies_and_receives_their_results(engine: Engine) -> None:
    extract = engine.queue(workers=2)
    load = engine.queue(workers=1)
    a = engine.enqueue(extract, {"step": "a"})
    b = engine.enqueue(extract, {"step": "b"})
    c = engine.enqueue(load, {"step": "c"}, _depends_on=[a, b, a])
    assert engine.job(c)["pending_dependencies"] == 2
    assert {r.job for r in engine.new_requests()} == {a, b}
    engine.end(engine.current_job_of(a), _result={"rows": 10})
    assert engine.status(c) == "pending" and engine.new_requests() == []
    engine.end(engine.current_job_of(b), _result={"rows": 5})
    # the last dependency's completion dispatches the dependent, in its own queue
    [req] = engine.new_requests()
    assert req.job == c
    claimed = engine.claim(req.current_job, req.attempt)
    assert claimed["queue"]["id"] == load
    assert claimed["job"]["dependency_results"] == {a: {"rows": 10}, b: {"rows": 5}}


def test_dependency_already_done_at_enqueue(engine: Engine) -> None:
    q = engine.queue(workers=1)
    a = engine.enqueue(q)
    engine.end(engine.current_job_of(a), _result=["done"])
    b = engine.enqueue(q, _depends_on=[a])
    [_, req] = engine.new_requests()
    assert req.job == b
    assert engine.claim(req.current_job)["job"]["dependency_results"] == {a: ["done"]}


def test_final_failure_cancels_dependents_transitively(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    root = engine.enqueue(q)
    child = engine.enqueue(q, _depends_on=[root])
    grandchild = engine.enqueue(q, _depends_on=[child])
    unrelated = engine.enqueue(q)
    sibling_root = engine.enqueue(q)
    joined = engine.enqueue(q, _depends_on=[sibling_root, child])
    engine.end(engine.current_job_of(root), success=False, _status_code=500)
    assert engine.status(root) == "failed"
    for job in (child, grandchild, joined):
        state = engine.job(job)
        assert state["status"] == "cancelled", job
        assert root in state["last_error"]
    assert engine.status(unrelated) == "in_progress"
    # enqueueing after the failure: cancelled at once
    late = engine.enqueue(q, _depends_on=[root])
    assert engine.status(late) == "cancelled"


def test_retried_dependency_keeps_dependents_waiting(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=2, backoff_base_ms=60_000)
    a = engine.enqueue(q)
    b = engine.enqueue(q, _depends_on=[a])
    engine.end(engine.current_job_of(a), success=False, _status_code=503)
    assert engine.status(a) == "pending" and engine.status(b) == "pending"


def _start_blocked(engine: Engine, action: Callable[[], None]) -> Callable[[], None]:
    """Start `action` in a thread and return once it waits for a lock (an open transaction of
    the caller's); the returned function joins it and re-raises what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # re-raised by join()
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not engine.one(
        "select count(*) from pg_stat_activity"
        " where datname = current_database() and wait_event_type = 'Lock'"
    ):
        assert time.monotonic() < deadline, "the action never waited for the open transaction"
        time.sleep(0.02)

    def join() -> None:
        thread.join(10)
        assert not thread.is_alive()
        if errors:
            raise errors[0]

    return join


def test_dependent_enqueued_while_its_dependency_is_being_cancelled_is_cancelled(
    engine_dsn: str, engine: Engine
) -> None:
    # root -> child already exist; a transaction enqueues grandchild (depending on child) and
    # is still open when root fails for good. The cancellation waits for that transaction (its
    # FOR SHARE on child) and must then also cancel grandchild, not leave it pending forever.
    q = engine.queue(workers=1, max_attempts=1)
    root = engine.enqueue(q)
    child = engine.enqueue(q, _depends_on=[root])
    root_lease = engine.current_job_of(root)
    with psycopg.connect(engine_dsn) as other:
        grandchild = str(other.execute(
            "select supaqueue.enqueue(%s, '{}', _depends_on => array[%s]::uuid[])::text",
            (q, child),
        ).fetchone()[0])  # type: ignore[index]  # fmt: skip

        def fail_root() -> None:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                conn.execute(
                    "select supaqueue.end_current_job(%s, true, false, 400)", (root_lease,)
                )

        join = _start_blocked(engine, fail_root)
        other.commit()
    join()
    assert engine.status(root) == "failed"
    assert engine.status(child) == "cancelled"
    assert engine.status(grandchild) == "cancelled"


def test_dependent_enqueued_while_its_queue_is_dropped_is_cancelled(
    engine_dsn: str, engine: Engine
) -> None:
    # A job in another queue is being enqueued (still open) with a dependency on a job of the
    # queue being dropped with its unfinished jobs: it must end cancelled, not pending forever.
    doomed = engine.queue(workers=0)
    other_q = engine.queue(workers=0)
    dep = engine.enqueue(doomed)
    with psycopg.connect(engine_dsn) as other:
        dependent = str(other.execute(
            "select supaqueue.enqueue(%s, '{}', _depends_on => array[%s]::uuid[])::text",
            (other_q, dep),
        ).fetchone()[0])  # type: ignore[index]  # fmt: skip

        def drop() -> None:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                conn.execute("select supaqueue.drop_queue(%s, true)", (doomed,))

        join = _start_blocked(engine, drop)
        other.commit()
    join()
    assert engine.one("select count(*) from supaqueue.queue where id = %s", (doomed,)) == 0
    assert engine.status(dependent) == "cancelled"
