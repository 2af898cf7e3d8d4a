"""The claim: a dispatch's first database call, the only way to a target call (issue #15.1), and
the limits refused at the door or at the claim (issue #14.1, #15.4)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine

MIB = 1024 * 1024


def _big(bytes_: int) -> dict[str, str]:
    """A JSON object whose text is exactly `bytes_` bytes long."""
    return {"x": "y" * (bytes_ - len('{"x": ""}'))}


def _lease(engine: Engine, current_job: str) -> dict[str, object]:
    row = engine.conn.execute(
        "select claimed_at, extract(epoch from lease_expires_at - coalesce(claimed_at, started_at))"
        "::float as lease_s from supaqueue.current_job where id = %s",
        (current_job,),
    ).fetchone()
    assert row is not None
    return dict(row)


def test_claim_once_restarts_the_deadline_and_returns_the_job(engine: Engine) -> None:
    q = engine.queue(workers=1, timeout_ms=2000, lease_grace_ms=3000)
    job = engine.insert_job(q, {"hello": "claim"})
    [req] = engine.new_requests()
    assert _lease(engine, req.current_job) == {"claimed_at": None, "lease_s": pytest.approx(5.0)}
    claimed = engine.claim(req.current_job, req.attempt)
    assert claimed["job"]["id"] == job and claimed["job"]["payload"] == {"hello": "claim"}
    assert claimed["queue"]["timeout_ms"] == 2000
    lease = _lease(engine, req.current_job)
    assert lease["claimed_at"] is not None and lease["lease_s"] == pytest.approx(5.0)
    # A second delivery of the same dispatch claims nothing: one target call per attempt.
    assert engine.claim(req.current_job, req.attempt) is None
    assert engine.end(req.current_job) is True
    assert engine.status(job) == "success"


def test_a_lease_that_is_not_current_cannot_be_claimed(engine: Engine) -> None:
    q = engine.queue(workers=3, backoff_base_ms=0, backoff_jitter=0, max_attempts=5)
    expired_job = engine.insert_job(q)
    ended_job = engine.insert_job(q)
    other_job = engine.insert_job(q)
    expired, ended, other = engine.new_requests()
    # Expired by the database's clock, even before the tick reclaimed it.
    engine.expire_lease(expired.current_job)
    assert engine.claim(expired.current_job) is None
    engine.tick()
    assert engine.claim(expired.current_job) is None
    [retry] = engine.new_requests()
    assert retry.job == expired_job and retry.attempt == 2
    # The attempt the old dispatch named is over: never claimed, and it says so.
    [attempt] = engine.conn.execute(
        "select outcome, error from supaqueue.job_attempt where job = %s", (expired_job,)
    ).fetchall()
    assert attempt["outcome"] == "lease_expired" and "never claimed" in attempt["error"]
    # Ended (reported by another delivery, or by an operator): not claimable.
    assert engine.end(ended.current_job) is True and engine.status(ended_job) == "success"
    assert engine.claim(ended.current_job) is None
    # The attempt named must be the job's current attempt.
    assert engine.claim(other.current_job, other.attempt + 1) is None
    assert engine.claim(other.current_job, other.attempt)["job"]["id"] == other_job
    assert engine.claim(retry.current_job, 2)["job"]["attempts"] == 2


def test_a_claimed_lease_that_expires_is_not_marked_never_claimed(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    job = engine.insert_job(q)
    [req] = engine.new_requests()
    assert engine.claim(req.current_job) is not None
    engine.expire_lease(req.current_job)
    assert engine.tick()["expired"] == 1
    [attempt] = engine.conn.execute(
        "select outcome, error from supaqueue.job_attempt where job = %s", (job,)
    ).fetchall()
    assert attempt["outcome"] == "lease_expired" and "never claimed" not in attempt["error"]


def test_refusal_is_a_final_failure_with_the_reason(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=5)
    job = engine.enqueue(q)
    dependent = engine.enqueue(q, _depends_on=[job])
    [req] = engine.new_requests()
    # Only a claimed lease can be refused: nobody can fail a job by naming its lease.
    assert engine.one("select supaqueue.refuse_current_job(%s, 'x')", (req.current_job,)) is False
    engine.claim(req.current_job)
    reason = "queue.default_headers.X-Key is not a valid HTTP header"
    refused = engine.one("select supaqueue.refuse_current_job(%s, %s)", (req.current_job, reason))
    assert refused is True
    state = engine.job(job)
    assert state["status"] == "failed" and state["attempts"] == 1
    assert state["last_error"] == f"refused by the dispatcher: {reason}"
    [attempt] = engine.conn.execute(
        "select outcome, error from supaqueue.job_attempt where job = %s", (job,)
    ).fetchall()
    assert attempt == {"outcome": "failure", "error": f"refused by the dispatcher: {reason}"}
    assert engine.status(dependent) == "cancelled"
    assert engine.in_flight(q) == 0
    # A repeated refusal, or a report, of the ended lease changes nothing.
    assert engine.one("select supaqueue.refuse_current_job(%s, 'x')", (req.current_job,)) is False
    assert engine.end(req.current_job) is False


def test_payload_size_is_refused_at_enqueue(engine: Engine) -> None:
    limit = engine.one("select supaqueue.max_payload_bytes()")
    assert limit == MIB
    q = engine.queue(workers=1)
    at_limit = engine.insert_job(q, _big(limit))
    assert engine.one(
        "select octet_length(payload::text) from supaqueue.job where id = %s", (at_limit,)
    ) == limit  # fmt: skip
    for enqueue in (engine.insert_job, engine.enqueue):
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as refused:
            enqueue(q, _big(limit + 1))
        message = str(refused.value)
        assert f"is {limit + 1} bytes, over the limit of {limit} bytes" in message
        assert "yyyy" not in message  # the payload itself is never echoed
    # One oversized row fails the whole statement: nothing half-inserted.
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        engine.conn.execute(
            "insert into supaqueue.job (queue, payload) select %s, jsonb_build_object('x',"
            " repeat('y', case when g = 3 then 2 * 1024 * 1024 else 1 end))"
            " from generate_series(1, 5) g",
            (q,),
        )
    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == 1


def test_dispatch_body_does_not_grow_with_payload_or_results(engine: Engine) -> None:
    """What goes through pg_net: references only, whatever the payload and dependency results."""
    q = engine.queue(workers=4)
    deps = [engine.enqueue(q, {"i": i}) for i in range(3)]
    for dep in deps:
        engine.end(engine.current_job_of(dep), _result=_big(MIB))
    step = engine.enqueue(q, _big(MIB - 100), _depends_on=deps)
    sizes = engine.conn.execute(
        "select octet_length(body) as n from net.http_request_queue order by id"
    ).fetchall()
    assert len(sizes) == 4 and max(r["n"] for r in sizes) < 200, sizes
    [*_, req] = engine.new_requests()
    assert req.job == step
    claimed = engine.claim(req.current_job)
    assert set(claimed["job"]["dependency_results"]) == set(deps)
    assert claimed["job"]["dependency_results"][deps[0]] == _big(MIB)


def test_dependency_results_over_the_limit_are_refused_at_the_claim(engine: Engine) -> None:
    limit = engine.one("select supaqueue.max_dependency_results_bytes()")
    q = engine.queue(workers=1, max_attempts=3)
    count = limit // MIB + 1
    deps = [engine.enqueue(q, {"i": i}) for i in range(count)]
    for dep in deps:
        engine.end(engine.current_job_of(dep), _result=_big(MIB))
    step = engine.enqueue(q, {"fan": "in"}, _depends_on=deps)
    [*_, req] = engine.new_requests()
    assert req.job == step
    claimed = engine.claim(req.current_job)
    reason = (
        f"the results of the jobs it depends on total {count * MIB} bytes,"
        f" over the limit of {limit} bytes"
    )
    assert claimed == {"refused": reason}
    state = engine.job(step)
    assert state["status"] == "failed" and state["attempts"] == 1
    assert state["last_error"] == f"refused by the dispatcher: {reason}"


def test_payload_grown_in_place_is_refused_at_the_claim(engine: Engine) -> None:
    """Enqueue refuses large payloads; one updated in place afterwards is refused, final, with
    the reason, when its dispatch is claimed."""
    q = engine.queue(workers=0, max_attempts=3)
    job = engine.insert_job(q)
    engine.conn.execute(
        "update supaqueue.job set payload = %s where id = %s", (Jsonb(_big(2 * MIB)), job)
    )
    engine.conn.execute("select supaqueue.set_worker_count(%s, 1)", (q,))
    [req] = engine.new_requests()
    reason = f"the payload is {2 * MIB} bytes, over the limit of {MIB} bytes"
    assert engine.claim(req.current_job) == {"refused": reason}
    state = engine.job(job)
    assert (
        state["status"] == "failed"
        and state["last_error"] == f"refused by the dispatcher: {reason}"
    )
