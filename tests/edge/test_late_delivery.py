"""Issue #15.1 reproduced for real: dispatches held back in pg_net past their leases, retries
dispatched, then the held ones released. Never more than `workers` calls in flight at the target,
and at most one target execution per attempt.

Real parts: the engine's SQL in Postgres, the local stack's pg_net sender (a process this test
stops and starts), the supaqueue function in Deno, a loopback target that records every call.
The tick runs here every half second, as pg_cron would run it every second.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import psycopg
import pytest

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer, max_in_flight
from tests.edge.conftest import function_env
from tests.edge.pg_net_sender import SenderProcess

WORKERS = 5
JOBS = 40
SLUG = "slow-301"  # the target answers after 301 ms; a slug no other test uses
TIMEOUT_MS = 2000
GRACE_MS = 2000  # lease = 4 s


class Ticker:
    """Calls supaqueue.tick() every half second until stopped (pg_cron's job)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="tick", daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.stop_event.wait(0.5):
                    conn.execute("select supaqueue.tick()")
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Ticker:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.thread.join(10)


@pytest.fixture
def sender(edge_db: str) -> Iterator[SenderProcess]:
    with psycopg.connect(edge_db, autocommit=True) as conn:
        real = conn.execute("select exists (select from pg_extension where extname = 'pg_net')")
        if (row := real.fetchone()) and row[0]:
            # The test holds deliveries back by stopping the stand-in sender; the real pg_net's
            # worker is part of Postgres and serves only pg_net.database_name.
            message = "NOT TESTED HERE: the real pg_net provides net: late deliveries did not run"
            warnings.warn(message, UserWarning, stacklevel=1)
            pytest.skip(message)
    proc = SenderProcess(edge_db)
    try:
        yield proc
    finally:
        proc.close()


def _wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_late_deliveries_never_call_the_target(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    engine: Engine,
    edge_db: str,
    dispatch_secret: str,
    sender: SenderProcess,
) -> None:
    fn = start_function(function_env(target.url, edge_db, dispatch_secret))
    engine.conn.execute(
        "update supaqueue.settings set value = %s where key = 'functions_url'",
        (f"http://127.0.0.1:{fn.port}/functions/v1",),
    )
    # Every job through pg_net (chained dispatch off): chains would run the jobs without it, and
    # stopping the sender would hold nothing back (the chained path has no delivery to be late).
    engine.conn.execute(
        "insert into supaqueue.settings (key, value) values ('chain_max_jobs', '1')"
        " on conflict (key) do update set value = excluded.value"
    )
    queue = engine.queue(SLUG, timeout_ms=TIMEOUT_MS, max_attempts=10)
    engine.conn.execute(
        "update supaqueue.queue set lease_grace_ms = %s, backoff_base_ms = 0 where id = %s",
        (GRACE_MS, queue),
    )
    engine.conn.execute(
        "select supaqueue.set_worker_count(%s, %s)", (queue, WORKERS)
    )  # one worker was made by engine.queue

    def unfinished() -> int:
        row = engine.conn.execute(
            "select count(*) as n from supaqueue.job where queue = %s"
            " and status in ('pending', 'in_progress')",
            (queue,),
        ).fetchone()
        assert row is not None
        return int(row["n"])

    def held() -> int:
        row = engine.conn.execute("select count(*) as n from net.http_request_queue").fetchone()
        assert row is not None
        return int(row["n"])

    def expired_unclaimed() -> int:
        row = engine.conn.execute(
            "select count(*) as n from supaqueue.job_attempt where queue = %s"
            " and outcome = 'lease_expired' and error like '%%never claimed%%'",
            (queue,),
        ).fetchone()
        assert row is not None
        return int(row["n"])

    with Ticker(edge_db) as ticker:
        sender.start()
        engine.conn.execute(
            "insert into supaqueue.job (queue, payload)"
            " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
            (queue, JOBS),
        )
        _wait_until("some jobs ran", lambda: len(target.requests_for(SLUG)) >= WORKERS, 60)

        sender.stop()  # pg_net stops sending: from now on dispatches wait in its queue
        stopped = time.monotonic()
        # Every worker's dispatch held past its lease, expired by the tick, and its retry
        # dispatched (held too).
        _wait_until(
            "the held dispatches' leases expired and retries were dispatched",
            lambda: expired_unclaimed() >= WORKERS and held() >= 2 * WORKERS,
            60,
        )
        held_for = time.monotonic() - stopped
        held_at_release = held()
        sender.start()  # the held dispatches go out, late; the retries with them

        _wait_until("every job finished", lambda: unfinished() == 0, 180)
        assert ticker.errors == []

    calls = target.requests_for(SLUG)
    attempts = engine.conn.execute(
        "select a.job::text, a.attempt, a.outcome, a.error from supaqueue.job_attempt a"
        " where a.queue = %s order by a.id",
        (queue,),
    ).fetchall()
    statuses = engine.conn.execute(
        "select status::text, count(*) as n from supaqueue.job where queue = %s group by 1",
        (queue,),
    ).fetchall()
    stale = [e for e in fn.events() if e.get("event") == "dispatch_not_current"]
    never_claimed = [a for a in attempts if a["outcome"] == "lease_expired"
                     and "never claimed" in (a["error"] or "")]  # fmt: skip

    # What happened, whatever the outcome of the checks below.
    peak = max_in_flight(calls)
    per_attempt = Counter((c.headers["supaqueue-job-id"], c.headers["supaqueue-attempt"])
                          for c in calls)  # fmt: skip
    per_job: dict[str, list[str]] = defaultdict(list)
    for c in calls:
        per_job[c.headers["supaqueue-job-id"]].append(c.headers["supaqueue-attempt"])
    duplicates = {job: seen for job, seen in per_job.items() if len(seen) > 1}
    print(
        f"\n{JOBS} jobs, workers={WORKERS}, lease {TIMEOUT_MS + GRACE_MS} ms, sender stopped"
        f" {held_for:.1f} s with {held_at_release} dispatches held: {len(calls)} target calls,"
        f" max in flight {peak}, {len(never_claimed)} leases expired unclaimed,"
        f" {len(stale)} late deliveries refused by the claim, {len(duplicates)} jobs executed"
        " more than once"
    )

    assert {r["status"]: r["n"] for r in statuses} == {"success": JOBS}, statuses  # none lost
    # The scenario happened: leases expired while their dispatches were held, and were retried.
    assert never_claimed, attempts
    assert held_at_release >= 2 * WORKERS
    assert peak <= WORKERS, f"{peak} calls in flight with workers = {WORKERS}"
    twice = {key: n for key, n in per_attempt.items() if n > 1}
    assert twice == {}, f"an attempt executed more than once: {twice}"
    # No call ran for an attempt whose lease expired before it was claimed (a late delivery).
    executed = {(job, int(attempt)) for job, attempt in per_attempt}
    late = [(a["job"], a["attempt"]) for a in never_claimed if (a["job"], a["attempt"]) in executed]
    assert late == [], f"late deliveries called the target: {late}"
    assert len(stale) >= len(never_claimed)
    # A job may still run twice only when a claimed call's report came after its lease
    # (at-least-once); say so for each one.
    by_attempt = {(a["job"], a["attempt"]): a for a in attempts}
    for job, seen in duplicates.items():
        for attempt in seen[:-1]:
            row = by_attempt.get((job, int(attempt)))
            assert row is not None and row["outcome"] == "lease_expired", (job, seen, row)
            print(
                f"duplicate: job {job} attempt {attempt} was claimed and called, but its report"
                f" did not arrive within timeout + grace ({row['error']}); the engine retried it"
            )
