"""Batch delivery end to end on the local stack (issue #26 item 5). Prints one JSON line per
measurement.

Starts a local stack as benchmarks/e2e_bench.py does (the real `supaqueue` function, pg_cron
ticking), deploys a no-op target for single jobs (benchmarks/noop_target) and one for batches
(benchmarks/noop_batch_target), then for each batch size, interleaved in the same run: one INSERT
of --jobs jobs into a queue of --workers workers, timed until every one succeeded. Figures: jobs/s
end to end (first enqueue → last finish), target invocations per job (the gateway's counter),
pg_net requests and dispatcher invocations per job, CPU per job of Postgres, the daemon and each
function.

Goals: batch_size 50 ≥ 10,000 jobs/s and ≤ 0.02 target invocations per job (on a quiet 2-core
machine, --jobs 100000), beside batch_size 1 (chained dispatch on, the default).

Usage: python benchmarks/batch_bench.py [--jobs 100000] [--workers 100] [--batch-sizes 1,50]
                                        [--keep]
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import psycopg
from cli_args import int_list
from e2e_bench import (
    DISPATCHER,
    TARGET,
    BenchError,
    Stack,
    check_succeeded,
    emit,
    install,
    local_stack,
    per_job,
    read,
    wait_done,
    warm_up,
)

BATCH_TARGET = "noop-batch-target"
BATCH_TARGET_DIR = Path(__file__).resolve().with_name("noop_batch_target")
GOAL_JOBS_PER_S = 10_000
GOAL_INVOCATIONS_PER_JOB = 0.02


def new_queue(conn: psycopg.Connection, workers: int, batch_size: int) -> str:
    row = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name, max_attempts, batch_size)"
        " values (%s, %s, 1, %s) returning id::text",
        (f"bench-batch-{batch_size}-{uuid.uuid4().hex[:6]}",
         BATCH_TARGET if batch_size > 1 else TARGET, batch_size),
    ).fetchone()  # fmt: skip
    assert row is not None
    conn.execute("select supaqueue.set_worker_count(%s, %s)", (row[0], workers))
    return str(row[0])


def measure(stack: Stack, conn: psycopg.Connection, workers: int, batch: int, jobs: int) -> None:
    queue = new_queue(conn, workers, batch)
    before = read(stack, conn)
    conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
        (queue, jobs),
    )
    wait_done(conn, queue, timeout=max(600.0, jobs / 10))
    after = read(stack, conn)
    check_succeeded(conn, queue, jobs)
    row = conn.execute(
        "select extract(epoch from max(finished_at) - min(created_at))::float8"
        " from supaqueue.job where queue = %s",
        (queue,),
    ).fetchone()
    assert row is not None
    seconds = float(row[0])
    rate = jobs / seconds
    slug = BATCH_TARGET if batch > 1 else TARGET
    calls = after.invocations.get(slug, 0) - before.invocations.get(slug, 0)
    figures = per_job(before, after, jobs)
    figures.pop("target_invocations_per_job")  # of the single-job target only: replaced below
    invocations = round(calls / jobs, 4)
    label = {"batch_size": batch, "workers": workers, "jobs": jobs}
    emit({"bench": "batch_throughput", **label, "seconds": round(seconds, 2),
          "jobs_per_s": round(rate, 1), "goal_min": GOAL_JOBS_PER_S,
          "ok": rate >= GOAL_JOBS_PER_S})  # fmt: skip
    emit({"bench": "batch_invocations", **label, "target_invocations_per_job": invocations,
          "goal_max": GOAL_INVOCATIONS_PER_JOB,
          "ok": invocations <= GOAL_INVOCATIONS_PER_JOB})  # fmt: skip
    emit({"bench": "batch_cost", **label, **figures})
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


def run(args: argparse.Namespace) -> int:
    with local_stack(args.keep) as stack:
        install(stack)
        stack.deploy(BATCH_TARGET, BATCH_TARGET_DIR, verify_jwt=True)
        with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
            warm_up(conn)
            # the batch target's process and the dispatcher's batch path, before timing
            queue = new_queue(conn, 50, 50)
            conn.execute(
                "insert into supaqueue.job (queue, payload)"
                " select %s, '{}'::jsonb from generate_series(1, 500)",
                (queue,),
            )
            wait_done(conn, queue, timeout=180)
            check_succeeded(conn, queue, 500)
            conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))
            emit({"bench": "batch_setup", "jobs": args.jobs, "workers": args.workers,
                  "batch_sizes": args.batch_sizes, "dispatcher": DISPATCHER})  # fmt: skip
            for batch in args.batch_sizes:
                measure(stack, conn, args.workers, batch, args.jobs)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per batch size")
    parser.add_argument("--workers", type=int, default=100, help="the queue's workers")
    parser.add_argument(
        "--batch-sizes", type=int_list("--batch-sizes", 1, 100), default=[1, 50], help="e.g. 1,50"
    )
    parser.add_argument("--keep", action="store_true", help="keep the local stack (debugging)")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 1000 or args.jobs < 1:
        parser.error("--workers: 1 to 1000; --jobs: at least 1")
    try:
        return run(args)
    except BenchError as exc:
        print(f"batch_bench: {exc}", flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
