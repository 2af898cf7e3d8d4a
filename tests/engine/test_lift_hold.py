"""An operator lifts a hold by the target's Retry-After early (`supaqueue.lift_hold`): the queue's,
one key's or every key's; the queue dispatches at once, so a job that waited gets its lease in the
same call. docs/architecture/console.md, "Operator API"; dispatch.md, "Backpressure"."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from harness.engine import Engine
from tests.engine.test_backpressure import _hold, _jobs, _key_hold, _keyed_job, _running


def _lift(engine: Engine, queue: str, **kwargs: Any) -> dict[str, Any]:
    args = "".join(f", _{name} => %({name})s" for name in kwargs)
    answer = engine.one(f"select supaqueue.lift_hold(%(queue)s{args})", {"queue": queue, **kwargs})
    assert isinstance(answer, dict)
    return answer


def test_lifting_a_queue_hold_dispatches_at_once(engine: Engine) -> None:
    q = engine.queue(workers=2, hold_on_retry_after="queue", name="held",
                     backoff_base_ms=0, backoff_jitter=0)  # fmt: skip
    jobs = _jobs(engine, q, 4)
    first, second = _running(engine, jobs)
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=3600)  # fmt: skip
    engine.end(engine.current_job_of(second))
    assert _hold(engine, q) is not None and engine.in_flight(q) == 0
    engine.new_requests()

    answer = _lift(engine, q)
    assert answer == {
        "queue": q, "name": "held", "key": None, "all_keys": False, "lifted": 1,
        "lifted_queue": True, "lifted_keys": 0, "held_until": None, "held_keys": 0,
        "dispatched": 2,
    }  # fmt: skip
    assert _hold(engine, q) is None
    # the two waiting jobs have their leases now, sent by this very call (no tick between)
    assert len(_running(engine, jobs)) == 2 and len(engine.new_requests()) == 2
    # the job whose answer set the hold keeps its own retry delay (run_job_now is for that)
    assert engine.status(first) == "pending" and engine.job(first)["delay_s"] > 3500


def test_nothing_held_is_said_not_refused(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="key", name="calm")
    [job] = _jobs(engine, q, 1)
    assert _lift(engine, q)["lifted"] == 0
    answer = _lift(engine, q, key="tenant-a")
    assert (answer["lifted"], answer["lifted_keys"], answer["dispatched"]) == (0, 0, 0)
    assert _lift(engine, q, all_keys=True)["lifted"] == 0
    # a hold whose time has passed (the tick not yet run) is not counted: it held nothing
    engine.conn.execute(
        "insert into supaqueue.queue_hold (queue, held_until, reason)"
        " values (%s, now() - interval '1 second', 'past')",
        (q,),
    )
    assert _lift(engine, q)["lifted"] == 0
    assert _hold(engine, q) is None
    assert engine.status(job) == "in_progress"


def test_lifting_one_key_serves_it_and_leaves_the_others_held(engine: Engine) -> None:
    q = engine.queue(workers=3, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    a1, b1 = _keyed_job(engine, q, "a"), _keyed_job(engine, q, "b")
    for job in (a1, b1):
        engine.end(engine.current_job_of(job), success=False, _status_code=503,
                   _retry_after_seconds=600)  # fmt: skip
    a2, b2 = _keyed_job(engine, q, "a"), _keyed_job(engine, q, "b")
    assert engine.in_flight(q) == 0 and engine.tick()["dispatched"] == 0
    held = _key_hold(engine, q, "a")
    assert held is not None and held["due_at"] >= held["held_until"]  # its turn at the hold's end

    answer = _lift(engine, q, key="a")
    assert (answer["lifted"], answer["lifted_keys"], answer["lifted_queue"]) == (1, 1, False)
    assert (answer["held_keys"], answer["dispatched"]) == (1, 1)
    assert engine.status(a2) == "in_progress" and engine.status(b2) == "pending"
    lifted = _key_hold(engine, q, "a")
    assert lifted is not None and lifted["held_until"] is None and lifted["hold_reason"] is None
    assert _key_hold(engine, q, "b")["held_until"] is not None  # type: ignore[index]
    # lifting it again: nothing held
    assert _lift(engine, q, key="a")["lifted"] == 0


def test_lifting_every_key_and_the_queue_hold_apart(engine: Engine) -> None:
    q = engine.queue(workers=4, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    firsts = [_keyed_job(engine, q, key) for key in ("a", "b")]
    plain = _keyed_job(engine, q, None)  # a job without a key holds the queue
    for job in (*firsts, plain):
        engine.end(engine.current_job_of(job), success=False, _status_code=429,
                   _retry_after_seconds=600)  # fmt: skip
    waiting = [_keyed_job(engine, q, key) for key in ("a", "b")]
    assert _hold(engine, q) is not None

    keys = _lift(engine, q, all_keys=True)
    assert (keys["lifted"], keys["lifted_keys"], keys["lifted_queue"]) == (2, 2, False)
    # the queue's own hold still stops everything, and the answer says until when
    assert keys["held_until"] is not None and keys["held_keys"] == 0
    assert keys["dispatched"] == 0 and engine.in_flight(q) == 0
    whole = _lift(engine, q)
    assert (whole["lifted_queue"], whole["held_until"], whole["dispatched"]) == (True, None, 2)
    assert _running(engine, waiting) == waiting


def test_a_paused_queue_stays_paused_when_its_hold_is_lifted(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    first, second = _jobs(engine, q, 2)
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=60)  # fmt: skip
    engine.conn.execute("select supaqueue.pause_queue(%s)", (q,))
    answer = _lift(engine, q)
    assert answer["lifted"] == 1 and answer["dispatched"] == 0
    assert engine.status(second) == "pending"
    engine.conn.execute("select supaqueue.resume_queue(%s)", (q,))
    assert engine.status(second) == "in_progress"


def test_unknown_queue_and_bad_arguments(engine: Engine) -> None:
    q = engine.queue(workers=0)
    with pytest.raises(psycopg.Error, match="no queue with id") as info:
        engine.conn.execute("select supaqueue.lift_hold(gen_random_uuid())")
    assert info.value.diag.sqlstate == "SQ005"  # as pause_queue, resume_queue, purge_jobs
    with pytest.raises(psycopg.Error, match="one key or _all_keys") as bad:
        engine.conn.execute("select supaqueue.lift_hold(%s, 'a', true)", (q,))
    assert bad.value.diag.sqlstate == "22023"


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_denied_to_api_roles_allowed_to_service_role(engine: Engine, role: str) -> None:
    q = engine.queue(workers=0)
    with psycopg.connect(engine.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select supaqueue.lift_hold(%s)", (q,))
        conn.execute("reset role")
        conn.execute("set role service_role")
        row = conn.execute("select supaqueue.lift_hold(%s) as answer", (q,)).fetchone()
        assert row is not None and row["answer"]["lifted"] == 0
