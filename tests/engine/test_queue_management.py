"""What the Pulumi queue provider calls: worker count, unfinished count, drop; and retention."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from harness.engine import Engine


def _workers(engine: Engine, q: str) -> list[dict[str, object]]:
    return list(engine.conn.execute(
        "select locked, retiring from supaqueue.worker where queue = %s order by locked, retiring",
        (q,),
    ).fetchall())  # fmt: skip


def test_set_worker_count_grows_and_shrinks_without_cutting_busy_workers(engine: Engine) -> None:
    q = engine.queue(workers=0)
    jobs = [engine.insert_job(q) for _ in range(6)]
    assert engine.one("select supaqueue.set_worker_count(%s, 3)", (q,)) == 3
    assert len(engine.new_requests()) == 3  # new workers dispatch at once
    engine.conn.execute("select supaqueue.set_worker_count(%s, 1)", (q,))
    # all three are busy: two are marked retiring, none removed, no call cut off
    assert engine.in_flight(q) == 3
    assert sum(1 for w in _workers(engine, q) if w["retiring"]) == 2
    assert engine.one("select workers from supaqueue.queue_stats where queue = %s", (q,)) == 1
    # a retiring worker's completion removes it instead of dispatching
    for job in jobs[:3]:
        engine.end(engine.current_job_of(job))
    assert len(_workers(engine, q)) == 1
    assert engine.in_flight(q) == 1
    # growing again reuses retiring workers first, then adds
    engine.conn.execute("select supaqueue.set_worker_count(%s, 4)", (q,))
    assert len(_workers(engine, q)) == 4 and engine.in_flight(q) == 3
    engine.conn.execute("select supaqueue.set_worker_count(%s, 0)", (q,))
    assert all(w["retiring"] for w in _workers(engine, q))


def test_unfinished_job_count(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    a, b, c = (engine.insert_job(q) for _ in range(3))
    assert engine.one("select supaqueue.unfinished_job_count(%s)", (q,)) == 3
    engine.end(engine.current_job_of(a))
    engine.end(engine.current_job_of(b), success=False)
    assert engine.one("select supaqueue.unfinished_job_count(%s)", (q,)) == 1
    del c


def test_drop_queue_refuses_with_unfinished_jobs_unless_discarding(engine: Engine) -> None:
    q = engine.queue(workers=1, name="orders")
    other = engine.queue(workers=0)
    jobs = [engine.insert_job(q) for _ in range(3)]
    dependent = engine.enqueue(other, _depends_on=[jobs[2]])
    with pytest.raises(psycopg.Error) as info:
        engine.conn.execute("select supaqueue.drop_queue(%s, false)", (q,))
    assert info.value.sqlstate == "SQ001"
    message = str(info.value.diag.message_primary)
    assert '"orders"' in message and "3 unfinished job(s)" in message
    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == 3
    cj = engine.current_job_of(jobs[0])
    assert engine.one("select supaqueue.drop_queue(%s, true)", (q,)) is True
    assert engine.one("select count(*) from supaqueue.queue where id = %s", (q,)) == 0
    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == 0
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 0
    assert engine.status(dependent) == "cancelled"
    # the discarded call's late report changes nothing; dropping again is a no-op
    assert engine.end(cj) is False
    assert engine.one("select supaqueue.drop_queue(%s, false)", (q,)) is False


def test_drop_empty_queue_needs_no_discard(engine: Engine) -> None:
    q = engine.queue(workers=2)
    job = engine.insert_job(q)
    engine.end(engine.current_job_of(job))
    assert engine.one("select supaqueue.drop_queue(%s, false)", (q,)) is True


def test_retention_prunes_old_finished_jobs_and_their_history(engine: Engine) -> None:
    q = engine.queue(workers=5, retention_seconds=60, max_attempts=1)
    keep_forever = engine.queue(workers=1)
    old = [engine.insert_job(q) for _ in range(3)]
    for job in old:
        engine.end(engine.current_job_of(job), success=job != old[2])
    waiting = engine.enqueue(q)  # in flight: never pruned
    kept = engine.insert_job(keep_forever)
    engine.end(engine.current_job_of(kept))
    engine.conn.execute("update supaqueue.job set finished_at = now() - interval '2 minutes'"
                        " where finished_at is not null")  # fmt: skip
    recent = engine.insert_job(q)
    engine.end(engine.current_job_of(recent))
    assert engine.prune() == 3
    remaining = {r["id"] for r in engine.conn.execute("select id::text from supaqueue.job")}
    assert remaining == {waiting, kept, recent}
    history = engine.one(
        "select count(*) from supaqueue.job_attempt where job = any(%s::uuid[])", (old,)
    )
    assert history == 0


def test_retention_keeps_a_result_that_a_waiting_dependent_needs(engine: Engine) -> None:
    q = engine.queue(workers=1, retention_seconds=0)
    a = engine.enqueue(q)
    b = engine.enqueue(q, _run_at="2999-01-01T00:00:00Z")
    c = engine.enqueue(q, _depends_on=[a, b])
    engine.end(engine.current_job_of(a), _result={"x": 1})
    assert engine.prune() == 0
    assert engine.status(a) == "success" and engine.status(c) == "pending"


def test_stats_view(engine: Engine) -> None:
    q = engine.queue(workers=2, max_attempts=2, backoff_base_ms=60_000, name="stats")
    jobs = [engine.insert_job(q) for _ in range(5)]
    engine.end(engine.current_job_of(jobs[0]))
    engine.end(engine.current_job_of(jobs[1]), success=False, _status_code=500)
    engine.conn.execute("update supaqueue.job set created_at = now() - interval '10 minutes'"
                        " where id = %s", (jobs[4],))  # fmt: skip
    row = engine.conn.execute(
        "select * from supaqueue.queue_stats where queue = %s", (q,)
    ).fetchone()
    assert row is not None
    assert row["name"] == "stats" and row["paused"] is False
    # jobs[1] waits for its retry; jobs[2] and [3] are in flight; jobs[4] waits for a worker
    assert (row["pending"], row["in_progress"], row["success"], row["failed"],
            row["cancelled"]) == (2, 2, 1, 0, 0)  # fmt: skip
    assert row["workers"] == 2 and row["busy_workers"] == 2
    assert row["attempts_last_minute"] == 2 and row["failures_last_minute"] == 1
    assert 590 <= row["oldest_pending_age"].total_seconds() <= 700


def test_stats_view_shows_the_operators_pause_after_its_old_columns(engine: Engine) -> None:
    q = engine.queue(workers=1, name="held")
    columns = [
        row["column_name"]
        for row in engine.conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'supaqueue' and table_name = 'queue_stats'"
            " order by ordinal_position"
        ).fetchall()
    ]
    # The columns of 0004 keep their order (a `select *` reader keeps working); the pause follows.
    assert columns == [
        "queue", "name", "paused", "pending", "in_progress", "success", "failed", "cancelled",
        "oldest_pending_age", "workers", "busy_workers", "attempts_last_minute",
        "failures_last_minute", "paused_by_operator_since",
        # 0027: a hold by the target's Retry-After (docs/architecture.md, "Backpressure")
        "held_until", "hold_reason", "held_keys",
    ]  # fmt: skip
    stats = "select paused, paused_by_operator_since from supaqueue.queue_stats where queue = %s"
    assert engine.conn.execute(stats, (q,)).fetchone() == {
        "paused": False,
        "paused_by_operator_since": None,
    }
    paused = engine.one("select supaqueue.pause_queue(%s)", (q,))
    row = engine.conn.execute(stats, (q,)).fetchone()
    assert row is not None and row["paused"] is False
    assert row["paused_by_operator_since"] is not None
    # JSON drops a timestamp's trailing zero digits (…44.72089 for …44.720890): compare instants.
    assert row["paused_by_operator_since"] == datetime.fromisoformat(
        paused["paused_by_operator_since"]
    )
    figures = engine.one(
        "select paused_by_operator_since from supaqueue.queue_figures() where queue = %s", (q,)
    )
    assert row["paused_by_operator_since"] == figures
    engine.one("select supaqueue.resume_queue(%s)", (q,))
    assert (
        engine.one(
            "select paused_by_operator_since from supaqueue.queue_stats where queue = %s", (q,)
        )
        is None
    )


def test_drop_queue_discarding_beside_a_report_does_not_deadlock(engine: Engine) -> None:
    """A report ends its lease first, then its job (end_current_job, report_and_claim,
    report_batch); drop_queue(…, true) locked the jobs first, then the leases: each waited for the
    other and Postgres rolled one back (seen beside keys_bench's last reports). The report's
    order, played by hand, then the drop: both go through."""
    import threading

    q = engine.queue(workers=1)
    job = engine.insert_job(q)
    lease = engine.current_job_of(job)
    outcome: dict[str, object] = {}
    with psycopg.connect(engine.dsn) as reporter:
        # the report's first step: its lease, locked (deleted) in its transaction
        reporter.execute("delete from supaqueue.current_job where id = %s", (lease,))
        pid = reporter.execute("select pg_backend_pid()").fetchone()

        def drop() -> None:
            try:
                with psycopg.connect(engine.dsn, autocommit=True) as conn:
                    row = conn.execute("select supaqueue.drop_queue(%s, true)", (q,)).fetchone()
                    outcome["dropped"] = row[0] if row else None
            except psycopg.Error as exc:
                outcome["drop_error"] = f"{exc.sqlstate}: {exc}"

        dropper = threading.Thread(target=drop)
        dropper.start()
        # until the drop waits for a lock (bounded)
        for _ in range(500):
            waiting = engine.one(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                " and pid <> %s and query like '%%drop_queue%%'",
                (pid[0] if pid else 0,),
            )
            if waiting:
                break
            dropper.join(0.01)
        # the report's second step: its job
        try:
            reporter.execute("select 1 from supaqueue.job where id = %s for update", (job,))
            reporter.commit()
        except psycopg.Error as exc:
            outcome["report_error"] = f"{exc.sqlstate}: {exc}"
        dropper.join(30)
    assert not dropper.is_alive()
    assert outcome == {"dropped": True}, outcome
    assert engine.one("select count(*) from supaqueue.queue where id = %s", (q,)) == 0
