"""Backpressure benchmark on the local stack (issue 26 item 3): one JSON line per measurement.

A target at its limit answers 429 with `Retry-After: 2` (benchmarks/busy_target, for jobs whose
payload says `"busy": true`); beside it run jobs the same target answers at once. Measured, with
the queue setting `hold_on_retry_after` = `job` (the default: only the answered job waits) and
the hold (`queue`; or `key` with --level key), in the same run:

- calls to the busy target while a hold is on (goal 0): calls dispatched (`job_attempt`'s
  start, the database's clock) after the hold was first seen committed (a watcher polls it every
  20 ms) and before its end (more than 50 ms before: a dispatch's recorded time is when it
  began, a moment before it checks the hold); and, for both settings, calls dispatched within
  the Retry-After of a 429 reported before (what the target asked not to get: with a hold, only
  calls that were being dispatched as the 429's report committed);
- calls to it per second, all told (what the hold saves the target);
- the other jobs' throughput (jobs/s, enqueue to the last one done) beside the busy ones, as a
  ratio to the same jobs alone (goal >= 0.9: unaffected).

--level queue: the busy jobs have a queue of their own (the hold holds that queue), the others
another queue. --level key: one queue, the busy jobs under key `busy`, the others under key
`free` (the hold holds the key; needs the keys' selection, which skips a held key).

Usage: python benchmarks/backpressure_bench.py [--jobs 10000] [--busy-jobs 200] [--workers 10]
                                              [--retry-after 2] [--level key|queue]
                                              [--rounds 3] [--keep]
Small run: --jobs 1000 --busy-jobs 50 --rounds 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from e2e_bench import BenchError, emit, install, local_stack, warm_up

BUSY_TARGET = "busy-target"
BUSY_TARGET_DIR = Path(__file__).resolve().with_name("busy_target")
POLL_S = 0.1
POLL_HOLD_S = 0.02
END_TOLERANCE_MS = 50.0
GOAL_RATIO = 0.9


@dataclass
class Group:
    """The jobs of one kind: a queue, and with --level key a key in it."""

    queue: str
    key: str | None

    def where(self) -> str:
        return "queue = %s" + (" and key = %s" if self.key is not None else "")

    def params(self) -> tuple[Any, ...]:
        return (self.queue,) if self.key is None else (self.queue, self.key)


def new_queue(conn: psycopg.Connection, workers: int, hold: str) -> str:
    row = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name, max_attempts, backoff_base_ms,"
        " backoff_jitter, hold_on_retry_after) values (%s, %s, 100, 0, 0, %s) returning id::text",
        (f"bench-bp-{uuid.uuid4().hex[:8]}", BUSY_TARGET, hold),
    ).fetchone()
    assert row is not None
    conn.execute("select supaqueue.set_worker_count(%s, %s)", (row[0], workers))
    return str(row[0])


def enqueue(
    conn: psycopg.Connection, group: Group, jobs: int, busy: bool, retry_after: float
) -> None:
    conn.execute(
        "insert into supaqueue.job (queue, key, payload)"
        " select %s, %s, jsonb_build_object('i', g, 'busy', %s, 'retry_after', %s)"
        " from generate_series(1, %s) g",
        (group.queue, group.key, busy, retry_after, jobs),
    )


def wait_finished(conn: psycopg.Connection, group: Group, timeout: float) -> float:
    """Until no job of the group is unfinished; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    query = (
        f"select exists (select 1 from supaqueue.job where {group.where()}"
        " and status in ('pending', 'in_progress'))"
    )
    while time.monotonic() < deadline:
        if conn.execute(query, group.params()).fetchone() == (False,):
            return time.monotonic()
        time.sleep(POLL_S)
    raise BenchError(f"jobs of {group} still unfinished after {timeout:.0f} s")


def succeeded(conn: psycopg.Connection, group: Group, expected: int) -> None:
    row = conn.execute(
        f"select count(*) filter (where status = 'success'), min(last_error)"
        f" filter (where status <> 'success') from supaqueue.job where {group.where()}",
        group.params(),
    ).fetchone()
    assert row is not None
    if row[0] != expected:
        raise BenchError(f"{row[0]} of {expected} jobs succeeded: {row[1]}")


class HoldWatch:
    """Watches the busy group's hold (queue_hold, or the key's queue_key row) every POLL_HOLD_S
    on a connection of its own: each hold as (first seen, held_until) on the database's clock.
    First seen is after the hold's commit, so a dispatch that began later must have seen it."""

    def __init__(self, dsn: str, group: Group) -> None:
        self.group = group
        self.holds: dict[Any, Any] = {}  # held_until -> first seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(dsn,), daemon=True)

    def _run(self, dsn: str) -> None:
        if self.group.key is None:
            query = "select held_until from supaqueue.queue_hold where queue = %s"
        else:
            query = "select held_until from supaqueue.queue_key where queue = %s and key = %s"
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    f"select clock_timestamp(), ({query})", self.group.params()
                ).fetchone()
                if row is not None and row[1] is not None and row[1] > row[0]:
                    self.holds.setdefault(row[1], row[0])
                self._stop.wait(POLL_HOLD_S)

    def __enter__(self) -> HoldWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def busy_calls(
    conn: psycopg.Connection,
    group: Group,
    since: float,
    until: float,
    retry_after: float,
    holds: dict[Any, Any],
) -> dict[str, Any]:
    """The busy group's calls between two times (epoch s): all; those dispatched within the
    Retry-After of a 429 reported before (what the target would rather not get); and those
    dispatched while a hold was on (after it was first seen, before its end: goal 0)."""
    row = conn.execute(
        f"""
        with calls as (
          select a.started_at, a.ended_at, a.status_code from supaqueue.job_attempt a
            join supaqueue.job j on j.id = a.job
           where a.queue = %s {"and j.key = %s" if group.key is not None else ""}
             and a.started_at >= to_timestamp(%s) and a.started_at < to_timestamp(%s)
        ), after_429 as (
          select ended_at as t0, ended_at + make_interval(secs => %s) as t1
            from calls where status_code = 429
        ), holds as (
          select * from unnest(%s::timestamptz[], %s::timestamptz[]) h (t0, t1)
        )
        select count(*),
               count(*) filter (where status_code = 429),
               count(*) filter (where exists (select 1 from after_429 h
                                               where c.started_at > h.t0
                                                 and c.started_at < h.t1)),
               count(*) filter (where exists (select 1 from holds h
                                               where c.started_at > h.t0
                                                 and c.started_at < h.t1)),
               -- how long before the hold's end each such call was dispatched (ms)
               array(select round(extract(epoch from (select max(h.t1) from holds h
                                                       where d.started_at > h.t0
                                                         and d.started_at < h.t1)
                                                     - d.started_at) * 1000, 1)
                       from calls d
                      where exists (select 1 from holds h
                                     where d.started_at > h.t0 and d.started_at < h.t1))
          from calls c
        """,
        (*group.params(), since, until, retry_after, list(holds.values()), list(holds)),
    ).fetchone()
    assert row is not None
    seconds = until - since
    return {
        "busy_calls": int(row[0]),
        "busy_calls_429": int(row[1]),
        "busy_calls_per_s": round(row[0] / seconds, 2) if seconds > 0 else None,
        "busy_calls_within_retry_after_of_a_429": int(row[2]),
        "hold_ends_seen": len(holds),  # distinct held_until values (a hold lengthened counts again)
        # A call's recorded time is when its dispatch began, a moment before that dispatch
        # checks the key or queue: one that began just before a hold's end and checked after it
        # was dispatched after the hold. END_TOLERANCE_MS tells those apart (the list shows all).
        "busy_calls_during_hold": sum(1 for v in row[4] if float(v) > END_TOLERANCE_MS),
        "busy_calls_at_a_holds_end": sum(1 for v in row[4] if float(v) <= END_TOLERANCE_MS),
        "dispatched_ms_before_the_holds_end": [float(v) for v in row[4]][:10],
    }


def run_once(
    conn: psycopg.Connection, args: argparse.Namespace, hold: str | None
) -> dict[str, Any]:
    """The free jobs alone (hold None), or beside the busy ones under that setting."""
    free_queue = new_queue(conn, args.workers, hold or "job")
    if args.level == "key":
        free, busy = Group(free_queue, "free"), Group(free_queue, "busy")
    else:
        busy_queue = new_queue(conn, args.workers, hold or "job")
        free, busy = Group(free_queue, None), Group(busy_queue, None)
    queues = {free.queue, busy.queue}
    try:
        started_wall = time.time()
        with HoldWatch(args.dsn, busy) as watch:
            if hold is not None:
                enqueue(conn, busy, args.busy_jobs, True, args.retry_after)
                # the busy target's wall is met before the free jobs come: a hold (if any) is on
                time.sleep(args.retry_after / 2)
            started = time.monotonic()
            enqueue(conn, free, args.jobs, False, args.retry_after)
            done = wait_finished(conn, free, timeout=600)
            until = time.time()
        succeeded(conn, free, args.jobs)
        record: dict[str, Any] = {
            "free_jobs": args.jobs,
            "free_jobs_per_s": round(args.jobs / (done - started), 1),
        }
        if hold is not None:
            for queue in queues:
                conn.execute("select supaqueue.pause_queue(%s)", (queue,))
            record.update(
                busy_calls(conn, busy, started_wall, until, args.retry_after, watch.holds)
            )
            record["window_s"] = round(until - started_wall, 2)
        return record
    finally:
        for queue in queues:
            conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


def wait_for_the_tick(conn: psycopg.Connection, timeout: float = 90) -> None:
    """A hold ends by the tick (it dispatches the queue or key again): with pg_cron 1.4 (the
    local stack's) the tick's loop first starts at the next minute."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "select exists (select 1 from cron.job_run_details d join cron.job j using (jobid)"
            " where j.jobname = 'supaqueue-tick' and d.start_time > now() - interval '70 seconds')"
        ).fetchone()
        if row == (True,):
            return
        time.sleep(0.5)
    raise BenchError(f"the supaqueue-tick cron job did not run within {timeout:.0f} s")


def run(args: argparse.Namespace) -> int:
    with local_stack(args.keep) as stack:
        install(stack)
        stack.deploy(BUSY_TARGET, BUSY_TARGET_DIR, verify_jwt=True)
        args.dsn = stack.env["DB_URL"]
        with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
            warm_up(conn)
            wait_for_the_tick(conn)
            hold = args.level  # 'queue' or 'key'
            emit({"bench": "backpressure_setup", "jobs": args.jobs, "busy_jobs": args.busy_jobs,
                  "workers": args.workers, "retry_after_s": args.retry_after,
                  "level": args.level})  # fmt: skip
            # interleaved rounds: others' load on a shared machine hits all three alike
            rates: dict[str, list[float]] = {"alone": [], "job": [], hold: []}
            during: list[int] = []
            for round_ in range(1, args.rounds + 1):
                alone = run_once(conn, args, None)
                emit({"bench": "backpressure_free_alone", "level": args.level, "round": round_,
                      **alone})  # fmt: skip
                rates["alone"].append(alone["free_jobs_per_s"])
                for setting in ("job", hold):
                    beside = run_once(conn, args, setting)
                    rates[setting].append(beside["free_jobs_per_s"])
                    if setting != "job":
                        during.append(beside["busy_calls_during_hold"])
                    ratio = beside["free_jobs_per_s"] / alone["free_jobs_per_s"]
                    emit({"bench": "backpressure", "level": args.level, "round": round_,
                          "hold_on_retry_after": setting, **beside,
                          "free_ratio_to_alone": round(ratio, 3)})  # fmt: skip
            median = {k: statistics.median(v) for k, v in rates.items()}
            ratio = median[hold] / median["alone"]
            emit({"bench": "backpressure_summary", "level": args.level, "rounds": args.rounds,
                  "free_jobs_per_s_median": median,
                  "free_ratio_to_alone_with_hold": round(ratio, 3),
                  "free_ratio_to_alone_with_job": round(median["job"] / median["alone"], 3),
                  "busy_calls_during_hold": sum(during), "goal_calls_during_hold": 0,
                  "goal_free_ratio": GOAL_RATIO,
                  "ok": sum(during) == 0 and ratio >= GOAL_RATIO})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs the target answers at once")
    parser.add_argument("--busy-jobs", type=int, default=200, help="jobs answered 429")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--retry-after", type=float, default=2.0, help="seconds")
    parser.add_argument("--level", choices=("queue", "key"), default="key")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--keep", action="store_true", help="keep the local stack (debugging)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.busy_jobs < 1 or not 1 <= args.workers <= 1000 or args.rounds < 1:
        parser.error("--jobs >= 1, --busy-jobs >= 1, 1 <= --workers <= 1000, --rounds >= 1")
    if not 0 < args.retry_after <= 60:
        parser.error("0 < --retry-after <= 60")
    try:
        return run(args)
    except (BenchError, psycopg.Error, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
