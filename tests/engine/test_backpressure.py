"""Backpressure (issue 26 item 3, migration 0027): a 429 or 503 with Retry-After may hold the
whole queue until then (`hold_on_retry_after = 'queue'`); the default, 'job', delays only the
answered job's retry, as before. docs/architecture.md, "Backpressure".

The passing of time is simulated (a hold's `held_until` moved into the past), as make_due does
for a job's run_at; tests/edge/test_backpressure_on_local_stack.py waits for a real 2 s hold."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from harness.engine import Engine, install
from supaqueue import migrations

YEAR_S = 31_536_000


def _hold(engine: Engine, queue: str) -> dict[str, Any] | None:
    row = engine.conn.execute(
        "select since, held_until, reason, extract(epoch from held_until - now())::float as left_s"
        " from supaqueue.queue_hold where queue = %s",
        (queue,),
    ).fetchone()
    return None if row is None else dict(row)


def _setting(engine: Engine, queue: str) -> str:
    query = "select hold_on_retry_after from supaqueue.queue where id = %s"
    return str(engine.one(query, (queue,)))


def _end_hold(engine: Engine, queue: str) -> None:
    """As if the hold's time had passed."""
    engine.conn.execute(
        "update supaqueue.queue_hold set held_until = now() - interval '1 millisecond'"
        " where queue = %s",
        (queue,),
    )


def _jobs(engine: Engine, queue: str, n: int) -> list[str]:
    return [engine.insert_job(queue, {"n": i}) for i in range(n)]


def _running(engine: Engine, jobs: list[str]) -> list[str]:
    return [j for j in jobs if engine.status(j) == "in_progress"]


def test_job_default_delays_only_the_answered_job(engine: Engine) -> None:
    q = engine.queue(workers=1, backoff_base_ms=0, backoff_jitter=0)
    assert _setting(engine, q) == "job"
    first, second, third = _jobs(engine, q, 3)
    assert _running(engine, [first, second, third]) == [first]
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=30)  # fmt: skip
    # the answered job waits 30 s; its freed worker takes the next job at once, as before 0027
    assert engine.job(first)["delay_s"] == pytest.approx(30, abs=0.001)
    assert engine.status(second) == "in_progress"
    assert _hold(engine, q) is None
    engine.end(engine.current_job_of(second), success=False, _status_code=503,
               _retry_after_seconds=30)  # fmt: skip
    assert engine.status(third) == "in_progress" and _hold(engine, q) is None


def test_queue_hold_stops_dispatch_until_it_ends_by_itself(engine: Engine) -> None:
    q = engine.queue(workers=2, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    jobs = _jobs(engine, q, 5)
    first, second = _running(engine, jobs)
    engine.new_requests()
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    hold = _hold(engine, q)
    assert hold is not None and hold["left_s"] == pytest.approx(2, abs=0.5)
    assert hold["reason"] == f"HTTP 429 with Retry-After: 2 s (job {first})"
    # the freed worker took nothing; the job already running is not affected
    assert engine.in_flight(q) == 1 and engine.status(second) == "in_progress"
    assert engine.end(engine.current_job_of(second))
    assert engine.status(second) == "success"
    # neither that report, nor the tick, nor an enqueue dispatches while the hold lasts
    assert engine.tick()["dispatched"] == 0
    late = engine.insert_job(q)
    assert engine.in_flight(q) == 0 and engine.new_requests() == []
    assert engine.one("select supaqueue.dispatch(%s)", (q,)) == 0
    # its time passed: the next tick dispatches and removes the hold, nobody has to act
    _end_hold(engine, q)
    assert engine.tick()["dispatched"] == 2
    assert _hold(engine, q) is None
    assert len(engine.new_requests()) == 2
    assert engine.job(first)["status"] == "pending"  # its own Retry-After (2 s) still runs
    assert len(_running(engine, [*jobs, late])) == 2


def test_503_holds_too_and_other_answers_do_not(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", max_attempts=10, backoff_base_ms=0,
                     backoff_jitter=0)  # fmt: skip
    jobs = _jobs(engine, q, 6)
    for status, retry_after in [(500, 5), (429, None), (429, 0), (503, None), (200, 5)]:
        [job] = _running(engine, jobs)
        engine.end(engine.current_job_of(job), success=status == 200, _status_code=status,
                   _retry_after_seconds=retry_after)  # fmt: skip
        assert _hold(engine, q) is None, (status, retry_after)
    [job] = _running(engine, jobs)
    engine.end(engine.current_job_of(job), success=False, _status_code=503,
               _retry_after_seconds=1.5)  # fmt: skip
    hold = _hold(engine, q)
    assert hold is not None and "HTTP 503 with Retry-After: 1.5 s" in hold["reason"]
    assert _running(engine, jobs) == []


def test_a_held_queue_chains_nothing(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    first, second, third = _jobs(engine, q, 3)
    answer = engine.report_and_claim(engine.current_job_of(first), success=False,
                                     _status_code=429, _retry_after_seconds=2)  # fmt: skip
    assert answer == {"current": True, "next": None}
    # the chain ended: its worker is free (and took nothing), the next job waits for the hold
    locked = "select bool_or(locked) from supaqueue.worker where queue = %s"
    assert engine.one(locked, (q,)) is False
    assert engine.status(second) == "pending" and engine.in_flight(q) == 0
    # once the hold is over, the same report chains again (as before 0027)
    _end_hold(engine, q)
    engine.tick()
    assert engine.status(second) == "in_progress"
    answer = engine.report_and_claim(engine.current_job_of(second))
    assert answer["next"]["job"]["id"] == third


def test_a_later_shorter_answer_never_shortens_a_hold(engine: Engine) -> None:
    q = engine.queue(workers=3, hold_on_retry_after="queue", backoff_base_ms=0)
    one, two, three = _running(engine, _jobs(engine, q, 3))
    engine.end(engine.current_job_of(one), success=False, _status_code=429,
               _retry_after_seconds=60)  # fmt: skip
    first = _hold(engine, q)
    assert first is not None
    engine.end(engine.current_job_of(two), success=False, _status_code=503,
               _retry_after_seconds=2)  # fmt: skip
    assert _hold(engine, q) == {**first, "left_s": pytest.approx(first["left_s"], abs=1)}
    engine.end(engine.current_job_of(three), success=False, _status_code=429,
               _retry_after_seconds=120)  # fmt: skip
    longer = _hold(engine, q)
    assert longer is not None and longer["left_s"] == pytest.approx(120, abs=1)
    assert longer["since"] == first["since"]  # the same hold, lengthened
    assert f"(job {three})" in longer["reason"]


def test_a_hold_is_capped_at_an_hour_and_the_job_keeps_its_own_delay(engine: Engine) -> None:
    assert engine.one("select supaqueue.max_hold_seconds()") == 3600
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0)
    [job] = _jobs(engine, q, 1)
    engine.end(engine.current_job_of(job), success=False, _status_code=503,
               _retry_after_seconds=5 * YEAR_S)  # fmt: skip
    hold = _hold(engine, q)
    assert hold is not None and hold["left_s"] == pytest.approx(3600, abs=1)
    assert hold["reason"].endswith("; held 3600 s, the longest hold")
    assert engine.job(job)["delay_s"] == pytest.approx(YEAR_S, abs=1)  # as before 0027


def test_an_ended_hold_begins_anew(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    first, second = _jobs(engine, q, 2)
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    engine.conn.execute(
        "update supaqueue.queue_hold set held_until = now() - interval '1 millisecond',"
        " since = now() - interval '1 hour' where queue = %s",
        (q,),
    )
    # past its time the old row holds nothing, even before a tick removes it
    assert engine.one("select supaqueue.dispatch(%s)", (q,)) == 1
    assert engine.status(second) == "in_progress"
    engine.end(engine.current_job_of(second), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    hold = _hold(engine, q)
    assert hold is not None and hold["left_s"] > 1 and f"(job {second})" in hold["reason"]
    assert engine.one(
        "select since > now() - interval '1 minute' from supaqueue.queue_hold where queue = %s",
        (q,),
    )


def test_pause_resume_and_cancel_work_during_a_hold(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    first, second, third = _jobs(engine, q, 3)
    engine.end(engine.current_job_of(first), success=False, _status_code=429,
               _retry_after_seconds=60)  # fmt: skip
    engine.conn.execute("select supaqueue.pause_queue(%s)", (q,))
    assert engine.one("select supaqueue.cancel_job(%s)", (second,)) is True
    assert engine.status(second) == "cancelled"
    # the hold ends while paused: still nothing runs
    _end_hold(engine, q)
    assert engine.tick()["dispatched"] == 0 and engine.in_flight(q) == 0
    # held again, then resumed by the operator: the hold still holds
    engine.conn.execute(
        "insert into supaqueue.queue_hold (queue, held_until, reason)"
        " values (%s, now() + interval '1 hour', 'test') on conflict (queue) do update"
        " set held_until = excluded.held_until",
        (q,),
    )
    resumed = engine.one("select supaqueue.resume_queue(%s)", (q,))
    assert resumed["paused_by_operator_since"] is None
    assert engine.in_flight(q) == 0 and engine.tick()["dispatched"] == 0
    _end_hold(engine, q)
    assert engine.tick()["dispatched"] == 1
    assert engine.status(third) == "in_progress"


def test_queue_stats_shows_a_hold_while_it_lasts(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0)
    [job] = _jobs(engine, q, 1)
    row = engine.conn.execute(
        "select held_until, hold_reason from supaqueue.queue_stats where queue = %s", (q,)
    ).fetchone()
    assert row == {"held_until": None, "hold_reason": None}
    engine.end(engine.current_job_of(job), success=False, _status_code=429,
               _retry_after_seconds=30)  # fmt: skip
    row = engine.conn.execute(
        "select held_until, hold_reason from supaqueue.queue_stats where queue = %s", (q,)
    ).fetchone()
    assert row is not None and row["held_until"] is not None
    assert row["hold_reason"] == f"HTTP 429 with Retry-After: 30 s (job {job})"
    _end_hold(engine, q)  # past its time: shown as not held even before a tick removes it
    row = engine.conn.execute(
        "select held_until, hold_reason from supaqueue.queue_stats where queue = %s", (q,)
    ).fetchone()
    assert row == {"held_until": None, "hold_reason": None}


def test_the_setting_takes_only_known_values(engine: Engine) -> None:
    q = engine.queue(workers=0)
    for bad in ("Queue", "all", ""):
        with pytest.raises(psycopg.errors.CheckViolation, match="queue_hold_on_retry_after_known"):
            engine.conn.execute(
                "update supaqueue.queue set hold_on_retry_after = %s where id = %s", (bad, q)
            )


def test_a_deleted_queue_takes_its_hold_with_it(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", max_attempts=1)
    [job] = _jobs(engine, q, 1)
    engine.end(engine.current_job_of(job), success=False, _status_code=429,
               _retry_after_seconds=30)  # fmt: skip
    assert _hold(engine, q) is not None
    engine.conn.execute("select supaqueue.drop_queue(%s, true)", (q,))
    assert engine.one("select count(*) from supaqueue.queue_hold") == 0


def test_an_upgrade_keeps_existing_queues_on_job(pg_dsn: str) -> None:
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # a release before 0027 (its numbered migrations; its functions as they were then)
        migrations.apply(conn, [m for m in loaded if m.version <= 25])
        conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, backoff_base_ms)"
            " values ('old', 'target', 0)"
        )
    install(pg_dsn)
    engine = Engine(pg_dsn)
    try:
        q = str(engine.one("select id::text from supaqueue.queue where name = 'old'"))
        assert _setting(engine, q) == "job"
        engine.conn.execute("select supaqueue.set_worker_count(%s, 1)", (q,))
        first, second = _jobs(engine, q, 2)
        [job] = _running(engine, [first, second])
        engine.end(engine.current_job_of(job), success=False, _status_code=429,
                   _retry_after_seconds=30)  # fmt: skip
        # as before the upgrade: only that job waits
        assert _hold(engine, q) is None and len(_running(engine, [first, second])) == 1
    finally:
        engine.close()


# ---- key level (hold_on_retry_after = 'key': supaqueue.queue_key of migration 0026) ----------


def _key_hold(engine: Engine, queue: str, key: str) -> dict[str, Any] | None:
    row = engine.conn.execute(
        "select held_until, hold_reason, due_at,"
        " extract(epoch from held_until - now())::float as left_s"
        " from supaqueue.queue_key where queue = %s and key = %s",
        (queue, key),
    ).fetchone()
    return None if row is None else dict(row)


def _keyed_job(engine: Engine, queue: str, key: str | None) -> str:
    return str(
        engine.one(
            "insert into supaqueue.job (queue, payload, key) values (%s, '{}', %s)"
            " returning id::text",
            (queue, key),
        )
    )


def test_key_hold_holds_the_answered_key_only(engine: Engine) -> None:
    q = engine.queue(workers=2, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    a = _keyed_job(engine, q, "tenant-a")
    b = _keyed_job(engine, q, "tenant-b")
    engine.end(engine.current_job_of(a), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    held = _key_hold(engine, q, "tenant-a")
    assert held is not None and held["left_s"] == pytest.approx(2, abs=0.5)
    assert held["hold_reason"] == f"HTTP 429 with Retry-After: 2 s (job {a})"
    # its turn comes no sooner than the hold's end
    assert held["due_at"] is not None and held["due_at"] >= held["held_until"]
    # neither the queue nor the other key is held; tenant-b's call runs on
    assert _hold(engine, q) is None
    assert (_key_hold(engine, q, "tenant-b") or {}).get("held_until") is None
    assert engine.status(b) == "in_progress"
    # shown in queue_stats as a count of held keys
    assert engine.one("select held_keys from supaqueue.queue_stats where queue = %s", (q,)) == 1


def test_key_hold_is_never_shortened_and_capped(engine: Engine) -> None:
    q = engine.queue(workers=3, hold_on_retry_after="key", backoff_base_ms=0)
    one, two, three = (_keyed_job(engine, q, "k") for _ in range(3))
    engine.end(engine.current_job_of(one), success=False, _status_code=503,
               _retry_after_seconds=60)  # fmt: skip
    first = _key_hold(engine, q, "k")
    assert first is not None and first["left_s"] == pytest.approx(60, abs=1)
    engine.end(engine.current_job_of(two), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    # (its turn, due_at, may move: the selection puts a held key's turn at the hold's end)
    kept = _key_hold(engine, q, "k")
    assert kept is not None
    assert (kept["held_until"], kept["hold_reason"]) == (first["held_until"], first["hold_reason"])
    engine.end(engine.current_job_of(three), success=False, _status_code=429,
               _retry_after_seconds=YEAR_S)  # fmt: skip
    capped = _key_hold(engine, q, "k")
    assert capped is not None and capped["left_s"] == pytest.approx(3600, abs=1)
    assert capped["hold_reason"].endswith("; held 3600 s, the longest hold")


def test_key_mode_holds_the_queue_for_a_job_without_a_key(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    plain = _keyed_job(engine, q, None)
    other = _keyed_job(engine, q, "tenant-a")
    engine.end(engine.current_job_of(plain), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    hold = _hold(engine, q)
    assert hold is not None and f"(job {plain})" in hold["reason"]
    assert engine.status(other) == "pending" and engine.in_flight(q) == 0
    assert (_key_hold(engine, q, "tenant-a") or {}).get("held_until") is None


def test_queue_mode_holds_the_queue_for_a_keyed_job(engine: Engine) -> None:
    q = engine.queue(workers=1, hold_on_retry_after="queue", backoff_base_ms=0, backoff_jitter=0)
    a = _keyed_job(engine, q, "tenant-a")
    engine.end(engine.current_job_of(a), success=False, _status_code=429,
               _retry_after_seconds=2)  # fmt: skip
    assert _hold(engine, q) is not None
    assert (_key_hold(engine, q, "tenant-a") or {}).get("held_until") is None


def _end_key_hold(engine: Engine, queue: str, key: str) -> None:
    """As if the key's hold had passed (its turn, moved to the hold's end, has come too)."""
    engine.conn.execute(
        "update supaqueue.queue_key set held_until = now() - interval '1 millisecond',"
        " due_at = least(due_at, now() - interval '1 millisecond')"
        " where queue = %s and key = %s",
        (queue, key),
    )


def test_a_held_key_gets_no_call_while_other_keys_run_on(engine: Engine) -> None:
    q = engine.queue(workers=2, hold_on_retry_after="key", backoff_base_ms=0, backoff_jitter=0)
    a1 = _keyed_job(engine, q, "a")
    b1 = _keyed_job(engine, q, "b")
    assert _running(engine, [a1, b1]) == [a1, b1]
    a_later = [_keyed_job(engine, q, "a") for _ in range(3)]
    b_later = [_keyed_job(engine, q, "b") for _ in range(3)]
    # a's 429: the report's chain takes no job of a; its worker serves b instead
    answer = engine.report_and_claim(engine.current_job_of(a1), success=False,
                                     _status_code=429, _retry_after_seconds=2)  # fmt: skip
    assert answer["current"] is True
    assert answer["next"] is None or answer["next"]["job"]["id"] in b_later
    # b runs on through its reports and chains; a gets nothing, by report, chain or tick
    for _ in range(10):
        running = _running(engine, [*b_later, b1])
        if not running:
            break
        engine.report_and_claim(engine.current_job_of(running[0]))
    engine.tick()
    assert all(engine.status(j) == "success" for j in [b1, *b_later])
    assert all(engine.status(j) == "pending" for j in [a1, *a_later])
    assert engine.in_flight(q) == 0
    # its time passed: the tick serves a again, nobody has to act
    _end_key_hold(engine, q, "a")
    assert engine.tick()["dispatched"] == 2
    assert len(_running(engine, a_later)) == 2
