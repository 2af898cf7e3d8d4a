"""An operator lifts a hold by the target's Retry-After early (`supaqueue.lift_hold`): the queue's,
one key's or every key's; the queue dispatches at once, so a job that waited gets its lease in the
same call, and the jobs whose retry waits for the target's Retry-After (those whose answers set the
hold) are made due now (0033), never a job delayed for another reason.
docs/architecture/console.md, "Operator API"; dispatch.md, "Backpressure"."""

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


def _delayed(engine: Engine, queue: str, **kwargs: Any) -> int:
    """retry_after_delayed: how many jobs lift_hold with these arguments would make due now."""
    args = "".join(f", _{name} => %({name})s" for name in kwargs)
    query = f"select supaqueue.retry_after_delayed(%(queue)s{args})"
    return int(engine.one(query, {"queue": queue, **kwargs}))


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
    assert _delayed(engine, q) == 1

    answer = _lift(engine, q)
    assert answer == {
        "queue": q, "name": "held", "key": None, "all_keys": False, "lifted": 1,
        "lifted_queue": True, "lifted_keys": 0, "held_until": None, "held_keys": 0,
        "made_due": 1, "dispatched": 2,
    }  # fmt: skip
    assert _hold(engine, q) is None
    # the two waiting jobs have their leases now, sent by this very call (no tick between)
    assert len(_running(engine, jobs)) == 2 and len(engine.new_requests()) == 2
    # the job whose answer set the hold is due now (its Retry-After no longer stands), behind
    # the two that waited longer: its run_at is now
    assert engine.status(first) == "pending" and engine.job(first)["run_in_s"] <= 0
    engine.end(engine.current_job_of(jobs[2]))
    assert engine.status(first) == "in_progress"


@pytest.mark.parametrize("level", ["key", "queue"])
def test_lifting_a_hold_makes_the_answered_job_due_now(engine: Engine, level: str) -> None:
    """The job whose 429 set the hold is the work the operator lifts it for: it runs now, not
    at its Retry-After an hour away. A keyed job in a queue held whole too: its key's turn,
    moved to its run_at, comes now with it (the update names run_at: _450_job_key_ready)."""
    q = engine.queue(workers=1, hold_on_retry_after=level, backoff_base_ms=0, backoff_jitter=0)
    job = _keyed_job(engine, q, "tenant-a")
    engine.end(engine.current_job_of(job), success=False, _status_code=429,
               _retry_after_seconds=3600)  # fmt: skip
    assert engine.status(job) == "pending" and engine.job(job)["run_in_s"] > 3500
    query = "select due_at > now() from supaqueue.queue_key where queue = %s and key = 'tenant-a'"
    assert engine.one(query, (q,)) is True  # the key's turn: an hour away too

    answer = _lift(engine, q, **({"key": "tenant-a"} if level == "key" else {}))
    # due now, its key's turn now, and sent by this very call
    assert engine.status(job) == "in_progress"
    assert (answer["lifted"], answer["made_due"], answer["dispatched"]) == (1, 1, 1)


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
    # a1, whose 503 set the hold, is due again with a2; b's jobs keep theirs
    assert (answer["held_keys"], answer["made_due"], answer["dispatched"]) == (1, 1, 2)
    assert engine.status(a1) == engine.status(a2) == "in_progress"
    assert engine.status(b2) == "pending" and engine.job(b1)["run_in_s"] > 590
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
    # the keys' answered jobs are due now; the job without a key waits for the queue's hold
    assert keys["made_due"] == 2
    assert [engine.job(j)["run_in_s"] <= 0 for j in (*firsts, plain)] == [True, True, False]
    whole = _lift(engine, q)
    assert (whole["lifted_queue"], whole["held_until"], whole["made_due"]) == (True, None, 1)
    assert whole["dispatched"] == 4  # the four workers; the fifth job is due, next in line
    assert set(waiting) <= set(_running(engine, [*waiting, *firsts, plain]))


def test_lifting_the_queue_hold_of_a_queue_held_by_key_leaves_the_keys_answered_jobs(
    engine: Engine,
) -> None:
    """hold_on_retry_after 'key': a keyed job's answer held its key, not the queue; lifting the
    queue's hold (set by a job without a key) makes due that job, not the keyed one."""
    q = engine.queue(workers=2, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    keyed, plain = _keyed_job(engine, q, "a"), _keyed_job(engine, q, None)
    for job in (keyed, plain):
        engine.end(engine.current_job_of(job), success=False, _status_code=503,
                   _retry_after_seconds=3600)  # fmt: skip
    answer = _lift(engine, q)
    assert (answer["lifted_queue"], answer["made_due"], answer["held_keys"]) == (True, 1, 1)
    assert engine.status(plain) == "in_progress"
    assert engine.status(keyed) == "pending" and engine.job(keyed)["run_in_s"] > 3500


def test_only_a_delay_by_the_targets_retry_after_is_made_due(engine: Engine) -> None:
    """Jobs of the lifted key delayed for another reason keep their time: a backoff after a 500,
    after a 429 without Retry-After, a backoff longer than the Retry-After, a user's run_at; so
    do a job of a key not lifted and one whose attempts were used up."""
    q = engine.queue(workers=6, hold_on_retry_after="key", backoff_base_ms=600_000,
                     backoff_max_ms=600_000, backoff_jitter=0, max_attempts=3)  # fmt: skip
    held, after_500, bare_429, short_ra, other_key = (
        _keyed_job(engine, q, key) for key in ("a", "a", "a", "a", "b"))  # fmt: skip
    answers: list[tuple[str, int, int | None]] = [
        (held, 429, 3600),  # sets the hold: its retry waits for the Retry-After
        (after_500, 500, None),  # backoff: 10 minutes
        (bare_429, 429, None),  # the target said nothing of when: our backoff
        (short_ra, 503, 5),  # Retry-After 5 s, shorter than the 10 minutes' backoff
        (other_key, 429, 3600),  # holds key b, not lifted here
    ]
    for job, status, retry_after in answers:
        engine.end(engine.current_job_of(job), success=False, _status_code=status,
                   _retry_after_seconds=retry_after)  # fmt: skip
    # each attempt records its answer's Retry-After (0033): what tells the delays apart
    recorded = "select retry_after_seconds from supaqueue.job_attempt where job = %s"
    assert [engine.one(recorded, (j,)) for j, _, _ in answers] == [3600, None, None, 5, 3600]
    later = str(engine.one(  # a user's run_at
        "insert into supaqueue.job (queue, payload, key, run_at)"
        " values (%s, '{}', 'a', now() + interval '30 minutes') returning id::text",
        (q,),
    ))  # fmt: skip
    delayed = (after_500, bare_429, short_ra, other_key, later)
    before = {j: engine.one("select run_at from supaqueue.job where id = %s", (j,))
              for j in delayed}  # fmt: skip

    # what lift-hold says when it asks: the same rule, for what is held now (a and b)
    assert _delayed(engine, q, key="a") == 1 and _delayed(engine, q, all_keys=True) == 2
    assert _delayed(engine, q) == 0  # the queue itself is not held

    answer = _lift(engine, q, key="a")
    assert (answer["lifted_keys"], answer["made_due"], answer["dispatched"]) == (1, 1, 1)
    assert engine.status(held) == "in_progress"
    assert _delayed(engine, q, key="a") == 0 and _delayed(engine, q, all_keys=True) == 1
    after = {j: engine.one("select run_at from supaqueue.job where id = %s", (j,))
             for j in delayed}  # fmt: skip
    assert after == before
    assert all(engine.status(j) == "pending" for j in delayed)


def test_no_hold_lifted_makes_nothing_due(engine: Engine) -> None:
    """A queue that holds nothing ('job', the default): a 429's Retry-After delays only its job,
    and lift_hold, lifting nothing, leaves it (run_job_now is for one job)."""
    q = engine.queue(workers=1, backoff_base_ms=0, backoff_jitter=0)
    [job] = _jobs(engine, q, 1)
    engine.end(engine.current_job_of(job), success=False, _status_code=429,
               _retry_after_seconds=3600)  # fmt: skip
    answer = _lift(engine, q)
    assert (answer["lifted"], answer["made_due"]) == (0, 0)
    assert engine.job(job)["run_in_s"] > 3500


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
    with pytest.raises(psycopg.Error, match="no queue with id") as info:
        engine.conn.execute("select supaqueue.retry_after_delayed(gen_random_uuid())")
    assert info.value.diag.sqlstate == "SQ005"
    with pytest.raises(psycopg.Error, match="one key or _all_keys") as bad:
        engine.conn.execute("select supaqueue.retry_after_delayed(%s, 'a', true)", (q,))
    assert bad.value.diag.sqlstate == "22023"


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_denied_to_api_roles_allowed_to_service_role(engine: Engine, role: str) -> None:
    q = engine.queue(workers=0)
    with psycopg.connect(engine.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f"set role {role}")
        for fn in ("lift_hold", "retry_after_delayed"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select supaqueue.{fn}(%s)", (q,))
        conn.execute("reset role")
        conn.execute("set role service_role")
        row = conn.execute("select supaqueue.lift_hold(%s) as answer", (q,)).fetchone()
        assert row is not None and row["answer"]["lifted"] == 0
        row = conn.execute("select supaqueue.retry_after_delayed(%s) as n", (q,)).fetchone()
        assert row is not None and row["n"] == 0
