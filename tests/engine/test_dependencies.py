"""Pipelines: jobs that wait for other jobs, receive their results, and are cancelled with them."""

from __future__ import annotations

from tests.engine.harness import Engine


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
    assert req.body["queue"]["id"] == load
    assert req.body["job"]["dependency_results"] == {a: {"rows": 10}, b: {"rows": 5}}


def test_dependency_already_done_at_enqueue(engine: Engine) -> None:
    q = engine.queue(workers=1)
    a = engine.enqueue(q)
    engine.end(engine.current_job_of(a), _result=["done"])
    b = engine.enqueue(q, _depends_on=[a])
    [_, req] = engine.new_requests()
    assert req.job == b and req.body["job"]["dependency_results"] == {a: ["done"]}


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
