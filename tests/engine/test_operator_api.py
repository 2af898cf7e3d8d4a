"""The operator API (sql/0013_operator.sql): retry, cancel, purge, pause/resume, figures, job
list and detail, each keeping the engine's invariants, including races with the tick, with
reports and with the dispatcher's claim on two real connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from harness.engine import Engine

WAIT_SECONDS = 30


def fail_finally(engine: Engine, job: str, error: str = "HTTP 500 Internal Server Error") -> None:
    """Dispatch-and-fail a job until it is failed (its queue has max_attempts attempts)."""
    for _ in range(10):
        if engine.status(job) == "failed":
            return
        if engine.status(job) == "pending":
            engine.make_due(job)
            engine.tick()
        engine.end(engine.current_job_of(job), success=False, _status_code=500, _error=error)
    assert engine.status(job) == "failed"


def call(engine: Engine, query: str, params: Any = None) -> Any:
    return engine.one(query, params)


def invariants(engine: Engine) -> None:
    """What must hold whatever the operator did: a lease per in-progress job and one locked
    worker per lease; finished jobs hold no lease; a locked worker without a lease is held (its
    cancelled call may still run at the target, sql/0017)."""
    bad = engine.conn.execute(
        "select j.id, j.status::text, c.id as lease, w.locked"
        " from supaqueue.job j"
        " left join supaqueue.current_job c on c.job = j.id"
        " left join supaqueue.worker w on w.id = c.worker"
        " where (j.status = 'in_progress') <> (c.id is not null)"
        "    or (c.id is not null and w.locked is not true)"
    ).fetchall()
    assert bad == []
    locked_without_lease = engine.one(
        "select count(*) from supaqueue.worker w where w.locked and w.held_until is null"
        " and not exists (select 1 from supaqueue.current_job c where c.worker = w.id)"
    )
    assert locked_without_lease == 0


def wait_until_blocked(engine: Engine, application_name: str) -> None:
    """Poll until the backend named `application_name` waits for a lock."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if engine.one(
            "select count(*) from pg_stat_activity"
            " where application_name = %s and wait_event_type = 'Lock'",
            (application_name,),
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"{application_name} never waited for a lock")


def in_thread(
    dsn: str, name: str, fn: Callable[[psycopg.Connection], Any]
) -> tuple[threading.Thread, dict[str, Any]]:
    """Run fn on its own autocommit connection (application_name = name) in a thread."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, application_name=name) as conn:
                out["value"] = fn(conn)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: dict[str, Any]) -> Any:
    thread.join(WAIT_SECONDS)
    assert not thread.is_alive(), "the other connection never finished"
    if "error" in out:
        raise out["error"]
    return out.get("value")


# --- retry --------------------------------------------------------------------------------


def test_retry_gives_a_failed_job_fresh_attempts_and_brings_its_dependents_back(
    engine: Engine,
) -> None:
    q = engine.queue(workers=1, max_attempts=2)
    a = engine.enqueue(q, {"step": 1})
    b = engine.enqueue(q, {"step": 2}, _depends_on=[a])
    c = engine.enqueue(q, {"step": 3}, _depends_on=[b])
    fail_finally(engine, a)
    assert [engine.status(x) for x in (a, b, c)] == ["failed", "cancelled", "cancelled"]

    assert call(engine, "select supaqueue.retry_job(%s)", (a,)) is True
    job = engine.job(a)
    assert job["status"] == "in_progress"  # dispatched at once: a worker was free
    assert job["attempts"] == 1  # fresh attempts: the counter restarted
    assert engine.one("select count(*) from supaqueue.job_attempt where job = %s", (a,)) == 2
    assert [engine.status(x) for x in (b, c)] == ["pending", "pending"]
    assert engine.job(b)["pending_dependencies"] == 1 and engine.job(c)["pending_dependencies"] == 1
    invariants(engine)

    # the pipeline runs to the end
    engine.end(engine.current_job_of(a), _status_code=200, _result={"a": 1})
    engine.end(engine.current_job_of(b), _status_code=200)
    engine.end(engine.current_job_of(c), _status_code=200)
    assert [engine.status(x) for x in (a, b, c)] == ["success"] * 3
    # a second retry (of a job that is no longer failed) changes nothing
    assert call(engine, "select supaqueue.retry_job(%s)", (a,)) is False


def test_retry_refuses_clearly(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    a = engine.enqueue(q)
    b = engine.enqueue(q, _depends_on=[a])
    fail_finally(engine, a)
    with pytest.raises(psycopg.Error) as refused:
        engine.conn.execute("select supaqueue.retry_job(%s)", (b,))
    assert refused.value.diag.sqlstate == "SQ006"
    assert a in str(refused.value) and a in (refused.value.diag.message_hint or "")
    with pytest.raises(psycopg.Error) as unknown:
        engine.conn.execute("select supaqueue.retry_job(gen_random_uuid())")
    assert unknown.value.diag.sqlstate == "SQ005"
    # a pending job is not retried
    p = engine.enqueue(q)
    assert call(engine, "select supaqueue.retry_job(%s)", (p,)) is False


def test_retry_refuses_when_the_dedup_key_is_taken(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    first = engine.enqueue(q, _dedup_key="order-1")
    fail_finally(engine, first)
    holder = engine.enqueue(q, _dedup_key="order-1")
    with pytest.raises(psycopg.Error) as refused:
        engine.conn.execute("select supaqueue.retry_job(%s)", (first,))
    assert refused.value.diag.sqlstate == "SQ007" and holder in str(refused.value)
    assert engine.status(first) == "failed"


def test_retry_of_every_failed_job_leaves_a_dedup_conflict_failed(engine: Engine) -> None:
    q = engine.queue(workers=0, max_attempts=1)
    twins = [engine.insert_job(q) for _ in range(2)]
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now(), dedup_key = 'same'"
        " where id = any(%s::uuid[])",
        (twins,),
    )
    assert call(engine, "select supaqueue.retry_failed_jobs(%s)", (q,)) == 1
    assert sorted(engine.status(t) for t in twins) == ["failed", "pending"]


def test_retry_does_not_bring_back_a_dependent_the_operator_cancelled(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    a = engine.enqueue(q)
    kept_cancelled = engine.enqueue(q, _depends_on=[a])
    revived = engine.enqueue(q, _depends_on=[a])
    assert call(engine, "select supaqueue.cancel_job(%s)", (kept_cancelled,)) is True
    fail_finally(engine, a)
    assert engine.status(revived) == "cancelled"
    assert call(engine, "select supaqueue.retry_job(%s)", (a,)) is True
    assert engine.status(revived) == "pending"
    assert engine.status(kept_cancelled) == "cancelled"


def test_retry_failed_jobs_of_a_queue_by_time_and_error(engine: Engine) -> None:
    q = engine.queue(workers=0, max_attempts=1)
    jobs = [engine.insert_job(q) for _ in range(4)]
    errors = ["HTTP 500 boom", "Timeout of 30000 ms reached", "HTTP 503 busy", "HTTP 500 boom"]
    engine.conn.execute(
        "update supaqueue.job j set status = 'failed', attempts = 1, last_error = e.err,"
        " finished_at = now() - (e.n || ' hours')::interval"
        " from (select unnest(%s::uuid[]) as id, unnest(%s::text[]) as err,"
        "       generate_series(0, 3) as n) e where j.id = e.id",
        (jobs, errors),
    )
    other = engine.queue(workers=0, max_attempts=1)
    elsewhere = engine.insert_job(other)
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now() where id = %s",
        (elsewhere,),
    )
    dry = "select supaqueue.retry_failed_jobs(%s, _error_contains => 'TIMEOUT', _dry_run => true)"
    assert call(engine, dry, (q,)) == 1 and engine.status(jobs[1]) == "failed"
    retried = call(
        engine,
        "select supaqueue.retry_failed_jobs(%s, _error_contains => 'TIMEOUT')",
        (q,),
    )
    assert retried == 1 and engine.status(jobs[1]) == "pending"
    retried = call(
        engine,
        "select supaqueue.retry_failed_jobs(%s, _since => now() - interval '150 minutes')",
        (q,),
    )
    assert retried == 2  # jobs[0] and jobs[2]; jobs[3] failed 3 hours ago
    assert [engine.status(j) for j in jobs] == ["pending", "pending", "pending", "failed"]
    assert call(engine, "select supaqueue.retry_failed_jobs(%s)", (q,)) == 1
    assert engine.status(elsewhere) == "failed"  # another queue's jobs are left alone


def test_retry_racing_the_retention_keeps_the_job(engine_dsn: str, engine: Engine) -> None:
    """The retention (its own cron job since 0029) skips a job an operator's retry holds, rather
    than waiting for it, and must never delete it once retried."""
    q = engine.queue(workers=0, max_attempts=1, retention_seconds=0)
    job = engine.insert_job(q)
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', attempts = 1, finished_at = now() - interval"
        " '1 hour' where id = %s",
        (job,),
    )
    with psycopg.connect(engine_dsn, application_name="retrier") as retrier:
        assert retrier.execute("select supaqueue.retry_job(%s)", (job,)).fetchone() == (True,)
        assert engine.prune() == 0  # returns at once: the row is the retrier's until it commits
        retrier.commit()
    assert engine.prune() == 0
    assert engine.status(job) == "pending"


# --- cancel -------------------------------------------------------------------------------


def test_cancel_a_pending_job_cancels_its_dependents(engine: Engine) -> None:
    q = engine.queue(workers=0)
    a = engine.enqueue(q)
    b = engine.enqueue(q, _depends_on=[a])
    c = engine.enqueue(q, _depends_on=[b])
    assert call(engine, "select supaqueue.cancel_job(%s)", (a,)) is True
    assert [engine.status(x) for x in (a, b, c)] == ["cancelled"] * 3
    assert "operator" in engine.job(b)["last_error"]
    assert call(engine, "select supaqueue.cancel_job(%s)", (a,)) is False
    with pytest.raises(psycopg.Error) as unknown:
        engine.conn.execute("select supaqueue.cancel_job(gen_random_uuid())")
    assert unknown.value.diag.sqlstate == "SQ005"


def test_cancel_an_in_progress_job_frees_its_worker_and_its_late_report_changes_nothing(
    engine: Engine,
) -> None:
    q = engine.queue(workers=1)
    running = engine.enqueue(q, {"n": 1})
    waiting = engine.enqueue(q, {"n": 2})
    lease = engine.current_job_of(running)
    assert call(engine, "select supaqueue.cancel_job(%s)", (running,)) is True
    assert engine.status(running) == "cancelled"
    history = engine.conn.execute(
        "select outcome, attempt from supaqueue.job_attempt where job = %s", (running,)
    ).fetchall()
    assert [(h["outcome"], h["attempt"]) for h in history] == [("cancelled", 1)]
    # the freed worker took the next job at once
    assert engine.status(waiting) == "in_progress"
    invariants(engine)
    before = engine.snapshot(running)
    assert engine.end(lease, _status_code=200, _result={"late": True}) is False
    assert engine.snapshot(running) == before
    assert engine.job(running)["result"] is None


def test_cancel_of_a_job_on_a_retiring_worker_removes_that_worker(engine: Engine) -> None:
    q = engine.queue(workers=1)
    job = engine.enqueue(q)
    engine.conn.execute("select supaqueue.set_worker_count(%s, 0)", (q,))
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 1
    assert call(engine, "select supaqueue.cancel_job(%s)", (job,)) is True
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 0
    invariants(engine)


@pytest.mark.parametrize("report_succeeds", [True, False])
def test_a_report_in_flight_wins_over_a_cancel_that_waits_for_it(
    engine_dsn: str, engine: Engine, report_succeeds: bool
) -> None:
    q = engine.queue(workers=1, max_attempts=3)
    job = engine.enqueue(q)
    lease = engine.current_job_of(job)
    with psycopg.connect(engine_dsn, application_name="reporter") as reporter:
        reporter.execute(
            "select supaqueue.end_current_job(%s, true, %s, %s)",
            (lease, report_succeeds, 200 if report_succeeds else 500),
        )
        thread, out = in_thread(
            engine_dsn,
            "canceller",
            lambda c: c.execute("select supaqueue.cancel_job(%s)", (job,)).fetchone(),
        )
        wait_until_blocked(engine, "canceller")
        reporter.commit()
    cancelled = joined(thread, out)
    if report_succeeds:
        assert cancelled == (False,) and engine.status(job) == "success"
    else:
        # the report put it back to pending for a retry: the cancel then cancels that
        assert cancelled == (True,) and engine.status(job) == "cancelled"
    outcomes = engine.conn.execute(
        "select outcome from supaqueue.job_attempt where job = %s order by id", (job,)
    ).fetchall()
    assert [o["outcome"] for o in outcomes] == ["success" if report_succeeds else "failure"]
    invariants(engine)


def test_a_cancel_in_flight_wins_over_a_report_that_waits_for_it(
    engine_dsn: str, engine: Engine
) -> None:
    q = engine.queue(workers=1)
    job = engine.enqueue(q)
    lease = engine.current_job_of(job)
    with psycopg.connect(engine_dsn, application_name="canceller") as canceller:
        assert canceller.execute("select supaqueue.cancel_job(%s)", (job,)).fetchone() == (True,)
        thread, out = in_thread(
            engine_dsn,
            "reporter",
            lambda c: c.execute(
                "select supaqueue.end_current_job(%s, true, true, 200)", (lease,)
            ).fetchone(),
        )
        wait_until_blocked(engine, "reporter")
        canceller.commit()
    assert joined(thread, out) == (False,)
    assert engine.status(job) == "cancelled"
    invariants(engine)


def test_cancel_racing_the_dispatchers_claim(engine_dsn: str, engine: Engine) -> None:
    """The claim (sql/0010) that waits for nothing and the cancel that waits for it: the cancel
    takes the claimed lease, so the function's report changes nothing; after a cancel, a late
    claim gets nothing, so the target is never called."""
    q = engine.queue(workers=2)
    claimed_job = engine.enqueue(q)
    lease = engine.current_job_of(claimed_job)
    with psycopg.connect(engine_dsn, application_name="claimer") as claimer:
        row = claimer.execute("select supaqueue.claim_current_job(%s)", (lease,)).fetchone()
        assert row is not None and row[0] is not None
        thread, out = in_thread(
            engine_dsn,
            "canceller",
            lambda c: c.execute("select supaqueue.cancel_job(%s)", (claimed_job,)).fetchone(),
        )
        wait_until_blocked(engine, "canceller")
        claimer.commit()
    assert joined(thread, out) == (True,)
    assert engine.end(lease, _status_code=200) is False
    assert engine.status(claimed_job) == "cancelled"

    late_job = engine.enqueue(q)
    late_lease = engine.current_job_of(late_job)
    assert call(engine, "select supaqueue.cancel_job(%s)", (late_job,)) is True
    assert call(engine, "select supaqueue.claim_current_job(%s)", (late_lease,)) is None
    invariants(engine)


def test_cancels_racing_reports_and_dispatches_keep_every_invariant(
    engine_dsn: str, engine: Engine
) -> None:
    """Many jobs, each cancelled while dispatches and reports run on other connections: no
    deadlock, no lost worker, no job both cancelled and reported."""
    q = engine.queue(workers=4, max_attempts=2)
    jobs = [engine.insert_job(q, {"i": i}) for i in range(60)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def reporter() -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                deadline = time.monotonic() + 120
                i = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    rows = conn.execute("select id from supaqueue.current_job").fetchall()
                    for (cj,) in rows:
                        i += 1
                        conn.execute(
                            "select supaqueue.end_current_job(%s, true, %s, %s)",
                            (cj, i % 3 != 0, 200 if i % 3 else 500),
                        )
                    conn.execute("select supaqueue.tick()")
        except BaseException as exc:
            errors.append(exc)

    def canceller(part: list[str]) -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                for job in part:
                    conn.execute("select supaqueue.cancel_job(%s)", (job,))
        except BaseException as exc:
            errors.append(exc)

    helpers = [threading.Thread(target=reporter) for _ in range(2)]
    cancellers = [threading.Thread(target=canceller, args=(jobs[k::3],)) for k in range(3)]
    for t in [*helpers, *cancellers]:
        t.start()
    for t in cancellers:
        t.join(120)
    stop.set()
    for t in helpers:
        t.join(120)
    assert errors == []
    statuses = engine.conn.execute(
        "select status::text as s, count(*) as n from supaqueue.job where queue = %s group by 1",
        (q,),
    ).fetchall()
    assert {r["s"] for r in statuses} <= {"success", "failed", "cancelled"}
    invariants(engine)
    # a cancelled job never also got a success recorded
    assert (
        engine.one(
            "select count(*) from supaqueue.job j where j.status = 'cancelled' and exists"
            " (select 1 from supaqueue.job_attempt a where a.job = j.id and a.outcome = 'success')"
        )
        == 0
    )
    assert (
        engine.one("select count(*) from supaqueue.worker where queue = %s and not locked", (q,))
        == 4
    )


# --- purge --------------------------------------------------------------------------------


def test_purge_deletes_finished_jobs_by_state_and_age_and_keeps_what_others_wait_for(
    engine: Engine,
) -> None:
    q = engine.queue(workers=0)
    old_ok, new_ok, old_failed, pending = (engine.insert_job(q) for _ in range(4))
    engine.conn.execute(
        "update supaqueue.job set status = 'success', finished_at = now() - interval '2 days'"
        " where id = %s",
        (old_ok,),
    )
    engine.conn.execute(
        "update supaqueue.job set status = 'success', finished_at = now() where id = %s", (new_ok,)
    )
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now() - interval '2 days'"
        " where id = %s",
        (old_failed,),
    )
    needed = engine.insert_job(q)
    engine.conn.execute(
        "update supaqueue.job set status = 'success', finished_at = now() - interval '2 days'"
        " where id = %s",
        (needed,),
    )
    dependent = engine.enqueue(engine.queue(workers=0, paused=True), _depends_on=[needed])
    day_ago = "now() - interval '1 day'"
    assert (
        call(
            engine,
            f"select supaqueue.purge_jobs(%s, array['success']::supaqueue.job_status[], {day_ago},"
            " _dry_run => true)",
            (q,),
        )
        == 1
    )
    assert engine.status(old_ok) == "success"
    assert (
        call(
            engine,
            f"select supaqueue.purge_jobs(%s, array['success']::supaqueue.job_status[], {day_ago})",
            (q,),
        )
        == 1
    )
    gone = engine.one(
        "select array_agg(id::text) from supaqueue.job where id = any(%s::uuid[])",
        ([old_ok, new_ok, old_failed, pending, needed, dependent],),
    )
    assert set(gone) == {new_ok, old_failed, pending, needed, dependent}
    assert call(engine, "select supaqueue.purge_jobs(%s)", (q,)) == 2  # new_ok, old_failed
    with pytest.raises(psycopg.Error) as refused:
        engine.conn.execute(
            "select supaqueue.purge_jobs(%s, array['pending']::supaqueue.job_status[])", (q,)
        )
    assert refused.value.diag.sqlstate == "22023" and "finished" in str(refused.value)
    assert engine.status(pending) == "pending"


def test_purge_racing_a_retry_keeps_the_retried_job(engine_dsn: str, engine: Engine) -> None:
    q = engine.queue(workers=0, max_attempts=1)
    job = engine.insert_job(q)
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now() - interval '1 hour'"
        " where id = %s",
        (job,),
    )
    with psycopg.connect(engine_dsn, application_name="retrier") as retrier:
        retrier.execute("select supaqueue.retry_job(%s)", (job,))
        thread, out = in_thread(
            engine_dsn,
            "purger",
            lambda c: c.execute("select supaqueue.purge_jobs(%s)", (q,)).fetchone(),
        )
        wait_until_blocked(engine, "purger")
        retrier.commit()
    assert joined(thread, out) == (0,)
    assert engine.status(job) == "pending"


# --- pause / resume -----------------------------------------------------------------------


def test_operator_pause_holds_dispatch_and_survives_the_stack_writing_paused(
    engine: Engine,
) -> None:
    q = engine.queue(workers=2)
    state = call(engine, "select supaqueue.pause_queue(%s)", (q,))
    assert state["paused_by_stack"] is False and state["paused_by_operator_since"]
    job = engine.enqueue(q)
    engine.tick()
    assert engine.status(job) == "pending"
    # what `pulumi up` does with a queue declared unpaused: the operator's pause stays
    engine.conn.execute("update supaqueue.queue set paused = false where id = %s", (q,))
    engine.tick()
    assert engine.status(job) == "pending"
    state = call(engine, "select supaqueue.resume_queue(%s)", (q,))
    assert state["paused_by_operator_since"] is None
    assert engine.status(job) == "in_progress"  # resumed: dispatched at once


def test_resume_leaves_a_queue_the_stack_declares_paused_paused(engine: Engine) -> None:
    q = engine.queue(workers=1, paused=True)
    call(engine, "select supaqueue.pause_queue(%s)", (q,))
    state = call(engine, "select supaqueue.resume_queue(%s)", (q,))
    assert state["paused_by_stack"] is True
    job = engine.enqueue(q)
    engine.tick()
    assert engine.status(job) == "pending"
    with pytest.raises(psycopg.Error) as unknown:
        engine.conn.execute("select supaqueue.pause_queue(gen_random_uuid())")
    assert unknown.value.diag.sqlstate == "SQ005"


# --- figures, list, detail ----------------------------------------------------------------


def test_queue_figures_and_series(engine: Engine) -> None:
    q = engine.queue(workers=3, rate_limit_per_second=5, name="figures")
    ok = [engine.enqueue(q, {"i": i}) for i in range(2)]
    for job in ok:
        engine.end(engine.current_job_of(job), _status_code=200, _duration_ms=100)
    failing = engine.enqueue(q)
    engine.end(engine.current_job_of(failing), success=False, _status_code=404, _duration_ms=300)
    running = engine.enqueue(q)
    engine.conn.execute("select supaqueue.pause_queue(%s)", (q,))
    waiting = engine.enqueue(q)
    rows = engine.conn.execute(
        "select * from supaqueue.queue_figures(interval '1 hour') where queue = %s", (q,)
    ).fetchall()
    assert len(rows) == 1
    f = rows[0]
    assert (f["name"], f["workers"], f["busy_workers"]) == ("figures", 3, 1)
    assert f["rate_limit_per_second"] == 5 and f["paused_by_operator_since"] is not None
    assert (f["pending"], f["in_progress"], f["ready"]) == (1, 1, 1)
    assert (f["succeeded"], f["failed"], f["attempts"], f["failed_attempts"]) == (2, 1, 3, 1)
    assert f["succeeded_per_minute"] == pytest.approx(2 / 60)
    assert f["attempt_p50_ms"] == 100 and 100 < f["attempt_p95_ms"] <= 300
    assert f["oldest_pending_age_seconds"] >= 0
    assert running and waiting
    series = engine.conn.execute(
        "select sum(succeeded) as s, sum(failed) as f, sum(failed_attempts) as fa"
        " from supaqueue.queue_series(interval '1 hour', 60) where queue = %s",
        (q,),
    ).fetchone()
    assert series is not None and (series["s"], series["f"], series["fa"]) == (2, 1, 1)


def test_queue_series_rebuilds_the_depth_of_the_last_hour(engine: Engine) -> None:
    q = engine.queue(workers=0, name="depth")
    # (created, finished) in minutes ago; None = unfinished now
    spans = [(30, 10), (20, None), (120, 5), (120, 90), (3, None), (50, 49)]
    # one transaction: one now() for the spans and the series, however slow the machine
    with engine.conn.transaction():
        for created, finished in spans:
            job = engine.insert_job(q)
            engine.conn.execute(
                "update supaqueue.job set created_at = now() - %s * interval '1 minute',"
                " status = (case when %s::int is null then 'pending' else 'success' end)"
                "::supaqueue.job_status,"
                " finished_at = now() - %s * interval '1 minute' where id = %s",
                (created, finished, finished, job),
            )
        rows = engine.conn.execute(
            "select bucket, depth, succeeded, extract(epoch from now() - bucket) / 60 as ago"
            " from supaqueue.queue_series(interval '1 hour', 60) where queue = %s"
            " order by bucket",
            (q,),
        ).fetchall()
    assert len(rows) in (60, 61)  # every minute of the hour, empty ones too
    for row in rows:
        end = row["ago"] - 1  # minutes ago at the bucket's end
        expected = sum(1 for c, f in spans if c > end and (f is None or f <= end))
        assert row["depth"] == expected, (row, expected)
    assert rows[-1]["depth"] == 2 and sum(r["succeeded"] for r in rows) == 3


def test_list_jobs_pages_by_keyset_through_every_job_once(engine: Engine) -> None:
    q = engine.queue(workers=0, name="listed")
    other = engine.queue(workers=0)
    engine.conn.execute(
        "insert into supaqueue.job (queue, created_at) select %s, now() - (g %% 7) * interval '1 s'"
        " from generate_series(1, 53) g",
        (q,),
    )
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now(), last_error ="
        " 'HTTP 503 Service Unavailable' where id in (select id from supaqueue.job"
        " where queue = %s limit 10)",
        (q,),
    )
    engine.insert_job(other)

    def pages(**filters: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        cursor: tuple[Any, Any] = (None, None)
        for _ in range(100):
            rows = engine.conn.execute(
                "select * from supaqueue.list_jobs(_queue => %(queue)s,"
                " _statuses => %(statuses)s::supaqueue.job_status[],"
                " _error_contains => %(error)s, _before_created => %(c)s, _before_id => %(i)s,"
                " _limit => 8)",
                {
                    "queue": filters.get("queue"),
                    "statuses": filters.get("statuses"),
                    "error": filters.get("error"),
                    "c": cursor[0],
                    "i": cursor[1],
                },
            ).fetchall()
            if not rows:
                return seen
            seen += rows
            cursor = (rows[-1]["created_at"], rows[-1]["id"])
        raise AssertionError("paging never ended")

    every = pages(queue=q)
    assert len(every) == 53 and len({r["id"] for r in every}) == 53
    keys = [(r["created_at"], r["id"]) for r in every]
    assert keys == sorted(keys, reverse=True)
    assert len(pages()) == 54
    failed = pages(queue=q, statuses=["failed"])
    assert len(failed) == 10 and {r["queue_name"] for r in failed} == {"listed"}
    assert len(pages(error="service unavailable")) == 10
    assert len(pages(statuses=["pending", "failed"])) == 54
    # a time range: created within [newest - 3 s, newest), strictly before its upper bound
    newest = every[0]["created_at"]
    window = engine.conn.execute(
        "select count(*) as n from supaqueue.list_jobs(_queue => %s,"
        " _created_after => %s::timestamptz - interval '3 s', _created_before => %s,"
        " _limit => 100)",
        (q, newest, newest),
    ).fetchone()
    expected = sum(
        1
        for r in every
        if (newest - r["created_at"]).total_seconds() <= 3 and r["created_at"] < newest
    )
    assert window is not None and window["n"] == expected > 0


def test_job_detail_shows_attempts_and_pipeline(engine: Engine) -> None:
    q = engine.queue(workers=1, name="detail")
    a = engine.enqueue(q, {"step": 1})
    engine.end(
        engine.current_job_of(a),
        success=False,
        _status_code=503,
        _error="HTTP 503 x",
        _response_excerpt="busy",
    )
    engine.make_due(a)
    engine.tick()
    engine.end(engine.current_job_of(a), _status_code=200, _result={"ok": 1})
    b = engine.enqueue(q, {"step": 2}, _depends_on=[a])
    detail = call(engine, "select supaqueue.job_detail(%s)", (a,))
    assert detail["status"] == "success" and detail["payload"] == {"step": 1}
    assert detail["result"] == {"ok": 1} and detail["queue_name"] == "detail"
    assert [h["outcome"] for h in detail["attempt_history"]] == ["failure", "success"]
    assert detail["attempt_history"][0]["response_excerpt"] == "busy"
    assert [d["id"] for d in detail["dependents"]] == [b] and detail["depends_on"] == []
    detail_b = call(engine, "select supaqueue.job_detail(%s)", (b,))
    assert [d["id"] for d in detail_b["depends_on"]] == [a]
    assert detail_b["lease"] is not None  # b runs now
    assert call(engine, "select supaqueue.job_detail(gen_random_uuid())") is None


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_operator_functions_are_denied_to_api_roles(engine: Engine, role: str) -> None:
    with psycopg.connect(engine.dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(f"set role {role}")
        for fn in (
            "supaqueue.queue_figures()",
            "supaqueue.retry_job(gen_random_uuid())",
            "supaqueue.pause_queue(gen_random_uuid())",
            "supaqueue.lift_hold(gen_random_uuid())",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select {fn}")


def test_service_role_may_operate(engine: Engine) -> None:
    q = engine.queue(workers=0)
    job = engine.insert_job(q)
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        conn.execute("set role service_role")
        assert conn.execute("select supaqueue.cancel_job(%s)", (job,)).fetchone() == (True,)
        assert conn.execute("select count(*) from supaqueue.queue_figures()").fetchone() == (1,)
