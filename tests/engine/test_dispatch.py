"""Dispatch: what a job's start sends, in what order, and when nothing may be sent."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from harness.engine import FUNCTIONS_URL, SECRET, Engine
from supaqueue.providers.queue.spec import MAX_RATE_PER_SECOND, MAX_TIMEOUT_MS


def test_seed_statements_dispatch_one_post_with_the_contract_body(engine: Engine) -> None:
    # The seed README's statements, unchanged.
    queue_id = engine.one(
        "insert into supaqueue.queue (name, edge_function_name) values ('emails', 'send-email')"
        " returning id::text"
    )
    engine.conn.execute("insert into supaqueue.worker (queue) values (%s)", (queue_id,))
    job_id = engine.one(
        'insert into supaqueue.job (queue, payload) values (%s, \'{"arg1": "val"}\'::jsonb)'
        " returning id::text",
        (queue_id,),
    )
    [req] = engine.new_requests()
    assert req.url == f"{FUNCTIONS_URL}/supaqueue"
    assert req.headers == {"Content-Type": "application/json", "supaqueue-secret": SECRET}
    cj = engine.conn.execute(
        "select id::text, worker::text, lease_expires_at from supaqueue.current_job"
    ).fetchone()
    assert cj is not None
    # pg_net carries references only (docs/architecture.md, "Dispatch body").
    assert req.body == {"current_job": {"id": cj["id"], "job": job_id, "attempt": 1}}
    # Until claimed, the lease (for the delivery) is queue timeout + grace from the dispatch.
    lease_s = engine.one(
        "select extract(epoch from lease_expires_at - started_at)::float from supaqueue.current_job"
    )
    assert lease_s == pytest.approx(60.0)
    # The function's claim returns the rest, read from the database.
    claimed = engine.claim(cj["id"], 1)
    assert claimed["current_job"]["id"] == cj["id"] and claimed["current_job"]["job"] == job_id
    assert claimed["current_job"]["worker"] == cj["worker"]
    assert claimed["job"] == {
        "id": job_id, "queue": queue_id, "payload": {"arg1": "val"}, "attempts": 1,
        "dependency_results": {}, "body": '{"arg1": "val"}',
    }  # fmt: skip
    assert claimed["queue"] == {
        "id": queue_id, "name": "emails", "edge_function_name": "send-email", "method": "POST",
        "default_headers": {}, "timeout_ms": 30000,
    }  # fmt: skip
    assert claimed["limits"] == {"max_result_bytes": 1048576}
    assert engine.status(job_id) == "in_progress"
    assert engine.one("select locked from supaqueue.worker where queue = %s", (queue_id,)) is True
    # Claimed, the lease restarts: timeout + grace from the claim.
    lease_s = engine.one(
        "select extract(epoch from lease_expires_at - claimed_at)::float from supaqueue.current_job"
    )
    assert lease_s == pytest.approx(60.0)


def test_request_timeout_and_settings_come_from_the_settings_table(engine: Engine) -> None:
    engine.conn.execute(
        "update supaqueue.settings set value = 'https://abc.supabase.co/functions/v1/'"
        " where key = 'functions_url'"
    )
    engine.conn.execute("update supaqueue.settings set value = 'sq2' where key = 'dispatcher_slug'")
    q = engine.queue(workers=1)
    engine.insert_job(q)
    [req] = engine.new_requests()
    assert req.url == "https://abc.supabase.co/functions/v1/sq2"
    assert engine.one("select timeout_milliseconds from net.http_request_queue") == 5000


def test_unconfigured_engine_keeps_jobs_pending_until_configured(pg_dsn: str) -> None:
    from harness.engine import install

    install(pg_dsn, configure=False)
    engine = Engine(pg_dsn)
    try:
        q = engine.queue(workers=1)
        job = engine.insert_job(q)
        assert engine.status(job) == "pending" and engine.new_requests() == []
        engine.conn.execute(
            "insert into supaqueue.settings values ('functions_url', %s)", (FUNCTIONS_URL,)
        )
        engine.conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (SECRET,))
        assert engine.tick()["dispatched"] == 1
        [req] = engine.new_requests()
        assert req.url == f"{FUNCTIONS_URL}/supaqueue"  # dispatcher_slug defaults to supaqueue
        assert engine.status(job) == "in_progress"
    finally:
        engine.close()


def test_workers_bound_dispatch_and_completion_hands_over(engine: Engine) -> None:
    q = engine.queue(workers=2)
    jobs = [engine.insert_job(q, {"i": i}) for i in range(5)]
    assert [r.job for r in engine.new_requests()] == jobs[:2]
    assert engine.in_flight(q) == 2
    assert engine.end(engine.current_job_of(jobs[0]), _status_code=200)
    [nxt] = engine.new_requests()
    assert nxt.job == jobs[2] and engine.in_flight(q) == 2
    assert engine.status(jobs[0]) == "success"


def test_adding_workers_dispatches_waiting_jobs(engine: Engine) -> None:
    q = engine.queue(workers=0)
    jobs = [engine.insert_job(q) for _ in range(3)]
    assert engine.new_requests() == []
    engine.conn.execute("insert into supaqueue.worker (queue) values (%s), (%s)", (q, q))
    assert {r.job for r in engine.new_requests()} == set(jobs[:2])


def test_priority_first_then_oldest(engine: Engine) -> None:
    q = engine.queue(workers=0)
    low_old = engine.enqueue(q, {"n": "low-old"}, _priority=0)
    high = engine.enqueue(q, {"n": "high"}, _priority=10)
    low_new = engine.enqueue(q, {"n": "low-new"}, _priority=0)
    mid = engine.enqueue(q, {"n": "mid"}, _priority=5)
    engine.conn.execute("select supaqueue.set_worker_count(%s, 1)", (q,))
    order = []
    for _ in range(4):
        [req] = engine.new_requests()
        order.append(req.job)
        engine.end(req.current_job)
    assert order == [high, mid, low_old, low_new]


def test_run_at_delays_dispatch_until_due(engine: Engine) -> None:
    q = engine.queue(workers=1)
    later = engine.enqueue(q, _run_at="2999-01-01T00:00:00Z")
    soon = engine.one(
        "select supaqueue.enqueue(%s, '{}', now() + interval '1.5 seconds')::text", (q,)
    )
    assert engine.new_requests() == []  # not due when enqueued
    deadline = time.monotonic() + 60
    while engine.status(soon) == "pending" and time.monotonic() < deadline:
        engine.tick()
        time.sleep(0.2)
    [req] = engine.new_requests()
    assert req.job == soon
    # dispatched once due, not before (the database's clock: no race with a loaded machine)
    assert engine.one(
        "select c.started_at >= j.run_at from supaqueue.current_job c"
        " join supaqueue.job j on j.id = c.job where c.job = %s",
        (soon,),
    )
    assert engine.status(later) == "pending"


def test_dedup_key_returns_the_unfinished_job(engine: Engine) -> None:
    q = engine.queue(workers=1)
    first = engine.enqueue(q, {"v": 1}, _dedup_key="user-42")
    again = engine.enqueue(q, {"v": 2}, _dedup_key="user-42")
    other = engine.enqueue(q, {"v": 3}, _dedup_key="user-43")
    assert again == first and other != first
    assert engine.one("select count(*) from supaqueue.job where dedup_key = 'user-42'") == 1
    # The same key through a plain INSERT is refused while the job is unfinished...
    with pytest.raises(psycopg.errors.UniqueViolation):
        engine.conn.execute(
            "insert into supaqueue.job (queue, dedup_key) values (%s, 'user-42')", (q,)
        )
    # ...and allowed again once it finished.
    engine.end(engine.current_job_of(first))
    third = engine.enqueue(q, {"v": 4}, _dedup_key="user-42")
    assert third != first


def test_pause_stops_dispatch_and_resume_restarts_it(engine: Engine) -> None:
    q = engine.queue(workers=2, paused=True)
    jobs = [engine.insert_job(q) for _ in range(3)]
    assert engine.new_requests() == [] and engine.tick()["dispatched"] == 0
    engine.conn.execute("update supaqueue.queue set paused = false where id = %s", (q,))
    assert [r.job for r in engine.new_requests()] == jobs[:2]
    # pausing lets calls in flight finish but starts nothing new
    engine.conn.execute("update supaqueue.queue set paused = true where id = %s", (q,))
    assert engine.end(engine.current_job_of(jobs[0]))
    assert engine.new_requests() == [] and engine.status(jobs[2]) == "pending"


def test_bulk_insert_of_100k_dispatches_only_free_workers_once_per_statement(
    engine: Engine,
) -> None:
    """A 100k-row INSERT does per-statement work, not per-row: its speed is a benchmark
    (`benchmarks/engine_bench.py`, `bulk_insert`, target < 5 s), this is the behaviour behind it."""
    q = engine.queue(workers=4)
    [plan] = engine.one(
        "explain (analyze, costs off, format json) insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('i', g) from generate_series(1, 100000) g",
        (q,),
    )
    assert plan["Plan"]["Actual Rows"] == 0 and plan["Plan"]["Plans"][0]["Actual Rows"] == 100_000
    calls = {trigger["Trigger Name"]: trigger["Calls"] for trigger in plan["Triggers"]}
    # Only the foreign key's check runs per row (Postgres's own); every supaqueue trigger
    # (dispatch, payload limit) fires once for the statement.
    ours = {name: n for name, n in calls.items() if not name.startswith("RI_ConstraintTrigger")}
    assert "_500_dispatch_after_insert" in ours
    assert set(ours.values()) == {1}, calls
    assert len(engine.new_requests()) == 4
    assert engine.in_flight(q) == 4
    assert engine.one("select count(*) from supaqueue.job where status = 'pending'") == 99_996


def test_bad_input_is_refused_with_clear_errors(engine: Engine) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="queue_edge_function_name_is_slug"):
        engine.conn.execute(
            "insert into supaqueue.queue (name, edge_function_name)"
            " values ('x', 'https://evil.example/fn')"
        )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no queue with id"):
        engine.enqueue("00000000-0000-0000-0000-000000000000")
    q = engine.queue(workers=0)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="do not exist"):
        engine.enqueue(q, _depends_on=["00000000-0000-0000-0000-000000000000"])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="0 or more"):
        engine.conn.execute("select supaqueue.set_worker_count(%s, -1)", (q,))


def _job_blocks_read(engine: Engine, statement: str, params: Any) -> int:
    """Pages of supaqueue.job and its indexes read while running `statement` (rolled back)."""
    count = (
        "select sum(pg_stat_get_xact_blocks_fetched(c.oid))::bigint from pg_class c"
        " where c.oid = 'supaqueue.job'::regclass"
        "    or c.oid in (select indexrelid from pg_index"
        "                  where indrelid = 'supaqueue.job'::regclass)"
    )
    with engine.conn.transaction(force_rollback=True):
        before = int(engine.one(count))
        engine.conn.execute(statement, params)
        return int(engine.one(count)) - before


def test_delayed_backlog_is_not_scanned_by_dispatch(engine: Engine) -> None:
    # 100k jobs waiting for a later run_at (scheduled, or backing off) at a higher priority than
    # the one due job: dispatch, run by every completion and every tick, must not read them all.
    # (About 100 pages for a completion and 30 for a tick; reading the backlog took over 2000.)
    q = engine.queue(workers=1)
    busy = engine.insert_job(q)
    [req] = engine.new_requests()
    engine.conn.execute(
        "insert into supaqueue.job (queue, priority, run_at)"
        " select %s, 1 + i %% 3, now() + interval '1 day' from generate_series(1, 100000) i",
        (q,),
    )
    due = engine.insert_job(q)
    engine.conn.execute("analyze supaqueue.job")
    read = _job_blocks_read(
        engine, "select supaqueue.end_current_job(%s, true, true)", (req.current_job,)
    )
    assert read < 400, f"one completion read {read} pages of supaqueue.job"
    assert engine.end(req.current_job)
    [nxt] = engine.new_requests()
    assert nxt.job == due and engine.status(busy) == "success"
    assert engine.end(nxt.current_job)
    # only delayed jobs left and a free worker: the tick probes the queue every second
    read = _job_blocks_read(engine, "select supaqueue.tick()", None)
    assert read < 400, f"one tick read {read} pages of supaqueue.job"


def test_extreme_policy_values_do_not_break_dispatch(engine: Engine) -> None:
    # The highest rate limit allowed (far above anything reachable) and a long lease grace must
    # not make dispatch, and so the enqueue itself, fail (the token budget and timeout + grace
    # overflowed `integer`).
    q = engine.queue(
        workers=2, rate_limit_per_second=MAX_RATE_PER_SECOND, lease_grace_ms=2_147_483_647
    )
    job = engine.insert_job(q)
    [req] = engine.new_requests()
    assert req.job == job
    lease_in_days = engine.one(
        "select extract(epoch from lease_expires_at - started_at) / 86400"
        " from supaqueue.current_job where job = %s",
        (job,),
    )
    assert 24 < float(lease_in_days) < 25


def test_timeout_beyond_what_the_dispatcher_accepts_is_refused(engine: Engine) -> None:
    # The supaqueue Edge Function answers 400 to a dispatch whose queue.timeout_ms is above what
    # it can wait for and still report, so such a queue's jobs would only ever end by lease
    # expiry: refuse it up front (the bound itself: tests/engine/test_queue_limits.py).
    engine.queue(workers=0, timeout_ms=MAX_TIMEOUT_MS)
    with pytest.raises(psycopg.errors.CheckViolation, match="queue_timeout_range"):
        engine.queue(workers=0, timeout_ms=MAX_TIMEOUT_MS + 1)
