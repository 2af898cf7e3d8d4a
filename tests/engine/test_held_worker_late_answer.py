"""A held worker is freed by its call's late answer (sql/0029; docs/architecture/dispatch.md,
"Concurrency at the target"). A worker whose call may still run at the target (the operator
cancelled the claimed job, the dispatcher's lease expired) is held until the target's wall clock
has passed; but once the dispatcher reports that call's whole answer (`is_complete` true, through
`end_current_job`, `report_and_claim`, chained or not, or `report_batch`), or refuses the lease
(`refuse_current_job`: it refuses instead of calling), the call is over (or never began) and the
worker is freed at once. The answer itself is still dropped: the job is not touched."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from harness.engine import Engine, install
from supaqueue import migrations
from tests.engine.test_batch import leases_off_their_key
from tests.engine.test_operator_api import in_thread, invariants, joined, wait_until_blocked
from tests.engine.test_target_concurrency import held_queue

WALL_CLOCK_MS = 400_000  # the default: a hold the tests never see end by itself


def _queue(engine: Engine, workers: int = 1, **columns: Any) -> str:
    return held_queue(engine, workers, WALL_CLOCK_MS, **columns)


def _insert(engine: Engine, queue: str, key: str | None = None) -> str:
    return str(
        engine.one(
            "insert into supaqueue.job (queue, payload, key) values (%s, '{}', %s)"
            " returning id::text",
            (queue, key),
        )
    )


def _claimed(engine: Engine, queue: str, key: str | None = None) -> tuple[str, str]:
    """A job dispatched and claimed: the dispatcher is calling the target."""
    job = _insert(engine, queue, key)
    [req] = engine.new_requests()
    assert req.job == job
    assert engine.claim(req.current_job, req.attempt) is not None
    return job, req.current_job


def _cancel(engine: Engine, job: str) -> None:
    assert engine.one("select supaqueue.cancel_job(%s)", (job,)) is True


def _workers(engine: Engine, queue: str) -> list[dict[str, Any]]:
    return list(
        engine.conn.execute(
            "select id::text, locked, retiring, held_until, key from supaqueue.worker"
            " where queue = %s order by created_at, id",
            (queue,),
        ).fetchall()
    )


def _held(engine: Engine, queue: str) -> int:
    return int(
        engine.one(
            "select count(*) from supaqueue.worker where queue = %s and held_until is not null"
            " and locked",
            (queue,),
        )
    )


def _history(engine: Engine, job: str) -> list[tuple[int, str]]:
    rows = engine.conn.execute(
        "select attempt, outcome from supaqueue.job_attempt where job = %s order by id", (job,)
    ).fetchall()
    return [(r["attempt"], r["outcome"]) for r in rows]


def _report_batch(engine: Engine, outcomes: list[dict[str, Any]]) -> list[bool]:
    return list(engine.one("select supaqueue.report_batch(%s)", (Jsonb(outcomes),)))


def _outcome(lease: str, complete: bool = True, successful: bool = True) -> dict[str, Any]:
    return {
        "current_job": lease,
        "is_complete": complete,
        "is_successful": successful,
        "status_code": 200 if successful else 500,
        "result": {"late": True},
    }


def test_a_cancelled_calls_late_answer_frees_its_worker_at_once(engine: Engine) -> None:
    """Failed before 0029: the worker stayed held until the target's wall clock had passed."""
    q = _queue(engine)
    job1, lease1 = _claimed(engine, q)
    job2 = _insert(engine, q)
    _cancel(engine, job1)
    assert _held(engine, q) == 1
    assert engine.new_requests() == []  # the call may still be running

    # the call ends after all: its answer is dropped, its worker is free and takes job2 at once
    assert engine.end(lease1, _status_code=200, _result={"late": True}) is False
    j1 = engine.job(job1)
    assert (j1["status"], j1["result"]) == ("cancelled", None)
    assert _history(engine, job1) == [(1, "cancelled")]
    [req] = engine.new_requests()
    assert req.job == job2 and engine.status(job2) == "in_progress"
    [worker] = _workers(engine, q)
    assert worker["locked"] and worker["held_until"] is None  # locked by job2's lease now
    # a second late answer of the same lease frees nothing more
    assert engine.end(lease1, _status_code=200) is False
    assert engine.in_flight(q) == 1 and engine.new_requests() == []


def test_a_late_failed_answer_frees_too_an_incomplete_one_does_not(engine: Engine) -> None:
    q = _queue(engine, workers=2)
    job1, lease1 = _claimed(engine, q)
    job2, lease2 = _claimed(engine, q)
    _cancel(engine, job1)
    _cancel(engine, job2)
    assert _held(engine, q) == 2

    # is_complete false: the dispatcher gave up on the call, which may still run
    assert engine.end(lease1, success=False, complete=False, _error="Timeout") is False
    assert _held(engine, q) == 2
    # a report of a lease no worker is held for frees nothing
    assert engine.end("00000000-0000-0000-0000-000000000000") is False
    assert _held(engine, q) == 2
    # the whole answer, a failure: the call is over all the same
    assert engine.end(lease2, success=False, _status_code=500) is False
    assert _held(engine, q) == 1
    assert [engine.status(j) for j in (job1, job2)] == ["cancelled", "cancelled"]
    assert _history(engine, job2) == [(1, "cancelled")]
    assert all(not w["locked"] for w in _workers(engine, q) if w["held_until"] is None)


def test_a_lost_dispatchers_late_answer_frees_its_worker_and_leaves_the_retry(
    engine: Engine,
) -> None:
    """The tick expired a claimed lease (the dispatcher seemed lost: it was only slow)."""
    q = _queue(engine, max_attempts=3)
    job, lease1 = _claimed(engine, q)
    engine.expire_lease(lease1)
    assert engine.tick()["expired"] == 1
    assert engine.job(job)["status"] == "pending"  # retried, but its worker is held
    assert _held(engine, q) == 1 and engine.new_requests() == []

    assert engine.end(lease1, _status_code=200, _result={"late": True}) is False
    # the retry runs on the freed worker; the late answer changed nothing of the job
    [req] = engine.new_requests()
    assert (req.job, req.attempt) == (job, 2)
    j = engine.job(job)
    assert (j["status"], j["attempts"], j["result"]) == ("in_progress", 2, None)
    assert _history(engine, job) == [(1, "lease_expired")]
    # and the retry ends on its own
    assert engine.end(req.current_job, _status_code=200, _result={"ok": 1}) is True
    assert engine.job(job)["result"] == {"ok": 1}


def test_a_retried_jobs_running_attempt_is_not_touched(engine: Engine) -> None:
    """The late answer frees the old call's worker; the retry running elsewhere goes on."""
    q = _queue(engine, workers=2, max_attempts=3)
    job, lease1 = _claimed(engine, q)
    engine.expire_lease(lease1)
    engine.tick()
    [req] = engine.new_requests()  # the retry, on the other worker
    assert (req.job, req.attempt) == (job, 2)
    assert engine.end(lease1, _status_code=200) is False
    assert engine.status(job) == "in_progress" and engine.current_job_of(job) == req.current_job
    assert _held(engine, q) == 0
    assert [w["locked"] for w in _workers(engine, q)].count(True) == 1


def test_a_chained_late_answer_frees_its_worker_and_dispatches_through_pg_net(
    engine: Engine,
) -> None:
    q = _queue(engine)
    job1, lease1 = _claimed(engine, q)
    job2 = _insert(engine, q)
    _cancel(engine, job1)
    assert engine.new_requests() == []
    # the chaining dispatcher's report: no next job on a lease no longer current
    assert engine.report_and_claim(lease1, chain_jobs=1) == {"current": False, "next": None}
    [req] = engine.new_requests()
    assert req.job == job2
    assert engine.status(job1) == "cancelled"
    # an incomplete chained report (_is_complete false) frees nothing
    assert engine.claim(req.current_job, req.attempt) is not None
    _cancel(engine, job2)
    assert _held(engine, q) == 1
    assert engine.one(
        "select supaqueue.report_and_claim(%s, false, false, _error => 'Timeout',"
        " _chain_jobs => 2, _chain_elapsed_ms => 10)",
        (req.current_job,),
    ) == {"current": False, "next": None}
    assert _held(engine, q) == 1


def test_a_retiring_held_worker_goes_at_its_calls_late_answer(engine: Engine) -> None:
    q = _queue(engine)
    job, lease = _claimed(engine, q)
    _insert(engine, q)
    _cancel(engine, job)
    assert engine.one("select supaqueue.set_worker_count(%s, 0)", (q,)) == 0
    [worker] = _workers(engine, q)
    assert worker["locked"] and worker["retiring"] and worker["held_until"] is not None
    assert engine.end(lease, _status_code=200) is False
    assert _workers(engine, q) == []
    assert engine.new_requests() == []


def test_a_keyed_held_worker_frees_its_key_at_the_late_answer(engine: Engine) -> None:
    """The held worker counts against its call's key until its answer comes; then the key's
    next job runs on a worker that takes the key, and no key is over workers_per_key."""
    q = _queue(engine, workers=3, workers_per_key=1)
    a1, lease_a1 = _claimed(engine, q, "a")
    a2 = _insert(engine, q, "a")
    assert engine.new_requests() == []  # key a is at workers_per_key
    _cancel(engine, a1)
    # the held worker keeps key a: a2 still waits, though two workers are free
    assert engine.new_requests() == []
    assert engine.status(a2) == "pending"
    held = [w for w in _workers(engine, q) if w["held_until"] is not None]
    assert [w["key"] for w in held] == ["a"]
    b1 = _insert(engine, q, "b")
    [req_b] = engine.new_requests()
    assert req_b.job == b1

    assert engine.end(lease_a1, _status_code=200) is False
    [req_a] = engine.new_requests()
    assert req_a.job == a2 and engine.status(a2) == "in_progress"
    busy = engine.conn.execute(
        "select key, count(*)::int as n from supaqueue.worker where queue = %s and locked"
        " group by key order by key",
        (q,),
    ).fetchall()
    assert [(r["key"], r["n"]) for r in busy] == [("a", 1), ("b", 1)]
    assert _held(engine, q) == 0
    # every lease's worker counts against its job's key
    assert leases_off_their_key(engine, q) == 0


def _batch(engine: Engine, queue: str, n: int) -> tuple[list[str], list[str]]:
    """n jobs in one statement, dispatched as one batch and claimed: (jobs, leases)."""
    engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('n', i) from generate_series(1, %s) i",
        (queue, n),
    )
    [req] = engine.new_requests()
    claimed = engine.one("select supaqueue.claim_batch(%s)", (req.body["batch"]["id"],))["jobs"]
    assert len(claimed) == n
    return [c["job"]["id"] for c in claimed], [c["current_job"]["id"] for c in claimed]


def test_a_batch_reports_late_successes_and_frees_their_workers(engine: Engine) -> None:
    """report_batch's set-based successes: a success of a lease no longer current frees the
    worker held for it; the current ones end as before; the queue then dispatches."""
    q = _queue(engine, workers=3, batch_size=3)
    jobs, leases = _batch(engine, q, 3)
    _cancel(engine, jobs[1])
    _cancel(engine, jobs[2])
    assert _held(engine, q) == 2
    waiting = _insert(engine, q)
    assert engine.new_requests() == []

    assert _report_batch(engine, [_outcome(lease) for lease in leases]) == [True, False, False]
    assert _held(engine, q) == 0
    assert [engine.status(j) for j in jobs] == ["success", "cancelled", "cancelled"]
    assert all(engine.job(j)["result"] is None for j in jobs[1:])
    [req] = engine.new_requests()
    assert set(req.body) == {"batch"}
    assert engine.status(waiting) == "in_progress"


def test_a_batch_reports_late_failures_and_incomplete_outcomes_lease_by_lease(
    engine: Engine,
) -> None:
    q = _queue(engine, workers=3, batch_size=3)
    jobs, leases = _batch(engine, q, 3)
    for j in jobs:
        _cancel(engine, j)
    assert _held(engine, q) == 3
    report = [
        _outcome(leases[0], successful=False),  # over: frees
        _outcome(leases[1], complete=False, successful=False),  # may still run: held
        _outcome("00000000-0000-0000-0000-000000000000"),  # never held: nothing
    ]
    assert _report_batch(engine, report) == [False, False, False]
    assert _held(engine, q) == 2
    # a report naming a lease twice goes lease by lease (not set-based): still frees it
    assert _report_batch(engine, [_outcome(leases[2]), _outcome(leases[2])]) == [False, False]
    assert _held(engine, q) == 1
    assert [engine.status(j) for j in jobs] == ["cancelled"] * 3


def _refuse(engine: Engine, lease: str) -> bool:
    """The dispatcher's refusal of a lease it claimed: the claimed document cannot be sent (a
    header HTTP cannot carry; edge/handler.ts `accept`), so it never calls the target."""
    return bool(engine.one("select supaqueue.refuse_current_job(%s, 'invalid header')", (lease,)))


def test_a_refusal_of_a_cancelled_claimed_lease_frees_its_worker_at_once(engine: Engine) -> None:
    """Failed before: refuse_current_job of a lease no longer current changed nothing, so the
    worker stayed held for a call that never began until the target's wall clock had passed."""
    q = _queue(engine)
    job1, lease1 = _claimed(engine, q)
    job2 = _insert(engine, q)
    _cancel(engine, job1)
    assert _held(engine, q) == 1 and engine.new_requests() == []

    # the dispatcher refuses the claimed job instead of calling: the worker is free, job2 runs
    assert _refuse(engine, lease1) is False
    assert _held(engine, q) == 0
    [req] = engine.new_requests()
    assert req.job == job2 and engine.status(job2) == "in_progress"
    # the cancelled job is not touched: no refused attempt, no final failure
    assert engine.status(job1) == "cancelled"
    assert _history(engine, job1) == [(1, "cancelled")]
    # a second refusal (a retried call) frees nothing more: job2's worker stays busy
    assert _refuse(engine, lease1) is False
    assert engine.in_flight(q) == 1 and engine.new_requests() == []
    invariants(engine)


def test_a_refusal_of_an_expired_claimed_lease_frees_its_worker_for_the_retry(
    engine: Engine,
) -> None:
    """The tick expired the claimed lease of a slow dispatcher, which then refuses the job: the
    retry runs at once on the freed worker, and the refusal does not end the retried job."""
    q = _queue(engine, max_attempts=3)
    job, lease1 = _claimed(engine, q)
    engine.expire_lease(lease1)
    assert engine.tick()["expired"] == 1
    assert _held(engine, q) == 1 and engine.new_requests() == []

    assert _refuse(engine, lease1) is False
    [req] = engine.new_requests()
    assert (req.job, req.attempt) == (job, 2)
    assert engine.status(job) == "in_progress"
    assert _history(engine, job) == [(1, "lease_expired")]


def test_a_refusal_in_a_batch_frees_only_its_own_held_worker(engine: Engine) -> None:
    """A batch's dispatcher refuses one claimed job and calls the target with the others: only
    the refused lease's call never began, so only its worker is freed; a retiring one goes."""
    q = _queue(engine, workers=3, batch_size=3)
    jobs, leases = _batch(engine, q, 3)
    for j in jobs[:2]:
        _cancel(engine, j)
    assert _held(engine, q) == 2
    assert _refuse(engine, leases[0]) is False
    assert _held(engine, q) == 1  # leases[1]'s call may still run
    # a refusal of a lease no worker is held for (never claimed here) frees nothing
    assert _refuse(engine, "00000000-0000-0000-0000-000000000000") is False
    assert _held(engine, q) == 1
    # the current lease is refused as before: a final failure, its worker freed
    assert _refuse(engine, leases[2]) is True
    assert engine.status(jobs[2]) == "failed"
    # the remaining held worker, retiring (a lowered count), goes at its lease's refusal
    assert engine.one("select supaqueue.set_worker_count(%s, 0)", (q,)) == 0
    assert _refuse(engine, leases[1]) is False
    assert _workers(engine, q) == []


def _late_answer_behind(engine: Engine, lease: str, holder_sql: str, queue: str) -> bool:
    """The late answer of `lease` while another transaction holds its worker's row (the tick
    releasing it, a resize): it waits, then sees what that transaction did."""
    with psycopg.connect(engine.dsn, autocommit=False) as holder:
        holder.execute(
            "select 1 from supaqueue.worker where queue = %s and held_for = %s for update",
            (queue, lease),
        )
        thread, out = in_thread(
            engine.dsn,
            "late-answer",
            lambda c: c.execute(
                "select supaqueue.end_current_job(%s, true, true)", (lease,)
            ).fetchone()[0],  # type: ignore[index]
        )
        wait_until_blocked(engine, "late-answer")
        holder.execute(holder_sql, (queue,))
        holder.commit()
    return bool(joined(thread, out))


def test_a_late_answer_behind_the_ticks_release_frees_nothing_more(engine: Engine) -> None:
    q = _queue(engine)
    job, lease = _claimed(engine, q)
    _cancel(engine, job)
    waiting = _insert(engine, q)
    # as _release_held_workers frees it (and the tick then dispatches: not here)
    release = (
        "update supaqueue.worker set locked = false, held_until = null, held_for = null,"
        " key = null where queue = %s"
    )
    assert _late_answer_behind(engine, lease, release, q) is False
    [worker] = _workers(engine, q)
    assert not worker["locked"] and worker["held_until"] is None
    assert engine.status(waiting) == "pending"  # the answer found nothing held: no dispatch
    engine.tick()
    assert engine.status(waiting) == "in_progress"
    invariants(engine)


def test_a_late_answer_behind_a_resize_removes_the_now_retiring_worker(engine: Engine) -> None:
    q = _queue(engine)
    job, lease = _claimed(engine, q)
    _cancel(engine, job)
    # as set_worker_count(q, 0) marks a locked worker retiring
    retire = "update supaqueue.worker set retiring = true where queue = %s"
    assert _late_answer_behind(engine, lease, retire, q) is False
    assert _workers(engine, q) == []
    invariants(engine)


def test_a_worker_held_before_the_upgrade_is_freed_by_the_tick_as_before(pg_dsn: str) -> None:
    """An installation at 0028 with a held worker (no lease named): after the upgrade nothing
    frees it early, the tick frees it at held_until, and new holds name their lease."""
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, [m for m in loaded if m.version <= 28])
        queue = conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, timeout_ms)"
            " values ('old', 'target', 2000) returning id"
        ).fetchone()
        assert queue is not None
        conn.execute(
            "insert into supaqueue.worker (queue, locked, held_until, key)"
            " values (%s, true, now() + interval '1 hour', 'k')",
            (queue[0],),
        )
    install(pg_dsn)
    engine = Engine(pg_dsn)
    try:
        q = str(engine.one("select id::text from supaqueue.queue where name = 'old'"))
        assert engine.one("select held_for from supaqueue.worker where queue = %s", (q,)) is None
        job = _insert(engine, q)
        engine.tick()
        assert engine.new_requests() == [] and engine.status(job) == "pending"
        assert engine.end("00000000-0000-0000-0000-000000000000") is False
        assert _held(engine, q) == 1
        engine.conn.execute(
            "update supaqueue.worker set held_until = now() - interval '1 second' where queue = %s",
            (q,),
        )
        assert engine.tick()["dispatched"] == 1
        [req] = engine.new_requests()
        assert req.job == job
        # a hold made after the upgrade names its lease, and its late answer frees it
        assert engine.claim(req.current_job, req.attempt) is not None
        _cancel(engine, job)
        assert (
            engine.one("select held_for::text from supaqueue.worker where queue = %s", (q,))
            == req.current_job
        )
        assert engine.end(req.current_job) is False
        assert _held(engine, q) == 0
    finally:
        engine.close()
