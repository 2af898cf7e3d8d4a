"""The `supaqueue` function's process killed under load, on the whole local stack: the calls
in flight lose their reports, their leases expire `timeout_ms + lease_grace_ms` after their
claim, the tick (real pg_cron) fails those attempts and retries them, and every job ends
`success`: none lost, none failed before its lease ended. A call claimed before the kill holds its
worker until `timeout_ms + target_wall_clock_ms` after its claim (the target may still be running
it), so its retry waits for that too; the queue sets the least wall clock, 1 s (with the default
400 s the test failed whenever the claims beat the kill: every run on a quiet machine). The
queue is declared through the Pulumi queue provider with its own `lease_grace_ms`, as a stack
would. How soon after the kill they are final is printed (a figure, not asserted: a loaded
machine stretches it).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from harness import procs
from supaqueue.providers.queue import QueueProvider
from tests.edge.test_on_local_stack import Installed, installed  # noqa: F401  (the fixture)

WORKERS = 20
TIMEOUT_MS = 5_000
GRACE_MS = 3_000
LONG_MS = 3_000  # the calls in flight when the process dies
WALL_CLOCK_MS = 1_000  # the least target_wall_clock_ms
SHORT_JOBS = 40  # queued behind them
FINAL_WITHIN_S = 300  # a guard against a stall, not a speed limit
LOOP_RUNNING = (
    "select count(*) from pg_stat_activity where query ilike 'call supaqueue.tick_loop%%'"
)
TICK_JOB = "select count(*) from cron.job where jobname = 'supaqueue-tick' and active"


def _function_pids(stack_dir: Path, slug: str) -> list[int]:
    """The processes serving `slug` (the local stack runs each function in its folder)."""
    return procs.working_in(stack_dir / "functions" / slug)


def _wait_until_ticking(inst: Installed, timeout: float = 75) -> None:
    """pg_cron must be calling the tick: with pg_cron 1.4 the loop starts at a minute boundary;
    with >= 1.5 the job runs every second from the start."""
    assert inst.engine.conn.execute(TICK_JOB).fetchone() == {"count": 1}
    version = inst.engine.conn.execute(
        "select extversion from pg_extension where extname = 'pg_cron'"
    ).fetchone()
    assert version is not None
    if tuple(int(p) for p in version["extversion"].split("-")[0].split(".")[:2]) >= (1, 5):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = inst.engine.conn.execute(LOOP_RUNNING).fetchone()
        if row and row["count"]:
            return
        time.sleep(0.2)
    raise AssertionError("pg_cron never started supaqueue.tick_loop")


def _wait(what: str, test: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def _state(conn: Any, queue: str) -> str:
    """What a stall left behind, for the failure message."""
    queries = {
        "jobs": "select status::text, attempts, run_at < now() as due, count(*) from supaqueue.job"
        " where queue = %s group by 1, 2, 3",
        "leases": "select c.claimed_at is not null as claimed,"
        " c.lease_expires_at < now() as expired, c.request_id is not null as sent, count(*)"
        " from supaqueue.current_job c"
        " join supaqueue.job j on j.id = c.job where j.queue = %s group by 1, 2, 3",
        "workers": "select locked, retiring, held_until is not null as held, count(*)"
        " from supaqueue.worker where queue = %s group by 1, 2, 3",
        "responses": "select status_code, timed_out, left(error_msg, 80) as error, count(*)"
        " from net._http_response where %s::text is not null group by 1, 2, 3",
        "hold": "select count(*) filter (where probe_lease is not null) as probing, count(*)"
        " from supaqueue.dispatch_hold where %s::text is not null",
        "tick": LOOP_RUNNING + " and %s::text is not null",
    }
    out = []
    for name, sql in queries.items():
        try:
            out.append(f"{name}: {conn.execute(sql, (queue,)).fetchall()}")
        except Exception as error:  # a diagnostic must not hide the stall
            out.append(f"{name}: ({error})")
    return "; ".join(out)


def test_a_killed_dispatcher_stalls_the_queue_for_timeout_plus_grace_only(
    installed: Installed,  # noqa: F811
) -> None:
    inst = installed
    conn = inst.engine.conn
    db_url = inst.stack.env["DB_URL"]
    _wait_until_ticking(inst)
    provider = QueueProvider()
    declared = provider.check(
        {},
        {
            "db_url": db_url,
            "name": f"lost-{uuid.uuid4().hex[:8]}",
            "edge_function_name": inst.demo,
            "workers": WORKERS,
            "timeout_ms": TIMEOUT_MS,
            "lease_grace_ms": GRACE_MS,
            # A claimed call whose lease expired may still be running at the target: its worker
            # stays held until timeout + target_wall_clock_ms after the claim (0017; default
            # 400 s, past this test's guard). The demo target answers within LONG_MS < timeout.
            "target_wall_clock_ms": WALL_CLOCK_MS,
            "backoff_base_ms": 200,
        },
    )
    assert declared.failures == []
    queue = provider.create(declared.inputs)
    props = {**declared.inputs, **(queue.outs or {}), "discard_unfinished_on_delete": True}
    try:
        conn.execute(
            "insert into supaqueue.job (queue, payload)"
            " select %s, jsonb_build_object('sleep_ms', %s, 'n', n)"
            " from generate_series(1, %s) n",
            (queue.id, LONG_MS, WORKERS),
        )
        conn.execute(
            "insert into supaqueue.job (queue, payload) select %s, %s from generate_series(1, %s)",
            (queue.id, Jsonb({"sleep_ms": 100}), SHORT_JOBS),
        )

        def accepted() -> int:
            # the function answered 202: the target call is under way inside its process
            row = conn.execute(
                "select count(*) from supaqueue.current_job c"
                " join net._http_response r on r.id = c.request_id"
                " join supaqueue.job j on j.id = c.job"
                " where j.queue = %s and r.status_code = 202",
                (queue.id,),
            ).fetchone()
            return int(row["count"]) if row else 0

        _wait(f"{WORKERS} dispatches accepted", lambda: accepted() == WORKERS, 60)
        pids = _function_pids(inst.stack.dir, inst.dispatcher)
        assert pids, "the supaqueue function's process was not found"
        row = conn.execute("select clock_timestamp() as now").fetchone()
        assert row is not None
        killed_at = row["now"]
        killed = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # The leases left now lost their reports with the process (a report is one transaction:
        # killed half-way, it rolls back). Normally all of them: each call takes LONG_MS.
        lost = conn.execute(
            "select c.job, c.started_at, c.claimed_at, c.lease_expires_at"
            " from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " where j.queue = %s and c.started_at < %s",
            (queue.id, killed_at),
        ).fetchall()
        assert len(lost) >= WORKERS // 2, f"only {len(lost)} calls were in flight at the kill"
        lease = timedelta(milliseconds=TIMEOUT_MS + GRACE_MS)
        for cj in lost:  # the queue's own grace, not the default 30 s
            # counted from the function's claim of the dispatch, or from the dispatch if unclaimed
            held_from = cj["claimed_at"] or cj["started_at"]
            assert cj["lease_expires_at"] - held_from == lease, cj

        total = WORKERS + SHORT_JOBS

        def finished() -> int:
            row = conn.execute(
                "select count(*) from supaqueue.job where queue = %s and finished_at is not null",
                (queue.id,),
            ).fetchone()
            return int(row["count"]) if row else 0

        try:
            _wait(f"all {total} jobs final", lambda: finished() == total, FINAL_WITHIN_S)
        except AssertionError as stalled:
            raise AssertionError(f"{stalled}; {_state(conn, queue.id)}") from None
        all_final_s = time.monotonic() - killed

        jobs = conn.execute(
            "select j.id, j.status::text as status,"
            " array_agg(a.outcome order by a.id) as outcomes,"
            " max(a.ended_at) filter (where a.outcome = 'lease_expired') as expired_at"
            " from supaqueue.job j join supaqueue.job_attempt a on a.job = j.id"
            " where j.queue = %s group by j.id",
            (queue.id,),
        ).fetchall()
        assert len(jobs) == total, "no job lost"
        assert {j["status"] for j in jobs} == {"success"}
        leases = {cj["job"]: cj for cj in lost}
        for job in jobs:
            expected = ["lease_expired", "success"] if job["id"] in leases else ["success"]
            assert job["outcomes"] == expected, job
            if job["id"] in leases:  # failed once its lease ended, not before
                assert leases[job["id"]]["lease_expires_at"] <= job["expired_at"], job
        stalled_s = max(
            (j["expired_at"] - killed_at).total_seconds() for j in jobs if j["id"] in leases
        )
        print(
            f"\nkilled the supaqueue function with {len(lost)} calls in flight"
            f" (timeout {TIMEOUT_MS} ms + grace {GRACE_MS} ms): their leases ended"
            f" {stalled_s:.1f} s after the kill; all {total} jobs final {all_final_s:.1f} s"
            f" after the kill; 0 lost"
        )
    finally:
        provider.delete(queue.id, props)
