"""Benchmark of batch enqueue: `supaqueue.enqueue_batch(name, payloads)` with 10,000 payloads in one
call against the single INSERT … SELECT of the same payloads (the fastest plain SQL, which inserts
nothing on a misspelled queue name). Prints one JSON line per measurement.

Both get the payloads as one jsonb parameter, so the difference is what enqueue_batch adds (the
name lookup, choosing the ids first, reading the ids back in order). Rounds alternate the two
forms, each into a fresh queue with 4 workers (so each dispatches); the median is reported.
It starts its own temporary cluster (durable settings unless --fast) and removes it afterwards.
Usage: python benchmarks/enqueue_batch_bench.py [--payloads 10000] [--rounds 5] [--fast]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import psycopg
from engine_bench import bench_database, emit, new_queue, report_failure
from psycopg.types.json import Jsonb

WORKERS = 4


def batch(conn: psycopg.Connection, name: str, payloads: Jsonb) -> int:
    row = conn.execute(
        "select cardinality(supaqueue.enqueue_batch(%s, %s))", (name, payloads)
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_select(conn: psycopg.Connection, name: str, payloads: Jsonb) -> int:
    cur = conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select q.id, e from supaqueue.queue q, jsonb_array_elements(%s) e where q.name = %s",
        (payloads, name),
    )
    return cur.rowcount


def timed(
    conn: psycopg.Connection,
    form: Callable[[psycopg.Connection, str, Jsonb], int],
    name: str,
    payloads: Jsonb,
    expected: int,
) -> float:
    queue = new_queue(conn, name, WORKERS)
    started = time.perf_counter()
    count = form(conn, name, payloads)
    seconds = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"{form.__name__} enqueued {count} jobs, expected {expected}")
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))
    return seconds


def run(args: argparse.Namespace) -> int:
    with bench_database("supaqueue-batch-bench-", args.fast) as (_, dsn):
        emit({"bench": "setup", "durable": not args.fast, "payloads": args.payloads,
              "rounds": args.rounds, "workers": WORKERS})  # fmt: skip
        payloads = Jsonb([{"order": n, "note": f"payload {n}"} for n in range(args.payloads)])
        times: dict[str, list[float]] = {"enqueue_batch": [], "insert_select": []}
        with psycopg.connect(dsn, autocommit=True) as conn:
            timed(conn, batch, "warmup-a", payloads, args.payloads)
            timed(conn, insert_select, "warmup-b", payloads, args.payloads)
            for i in range(args.rounds):
                times["enqueue_batch"].append(
                    timed(conn, batch, f"batch-{i}", payloads, args.payloads)
                )
                times["insert_select"].append(
                    timed(conn, insert_select, f"insert-{i}", payloads, args.payloads)
                )
    medians = {form: statistics.median(values) for form, values in times.items()}
    for form, values in times.items():
        emit({"bench": form, "payloads": args.payloads, "median_seconds": round(medians[form], 4),
              "min_seconds": round(min(values), 4),
              "jobs_per_s": round(args.payloads / medians[form])})  # fmt: skip
    ratio = medians["enqueue_batch"] / medians["insert_select"]
    emit({"bench": "ratio", "name": "enqueue_batch_over_insert_select", "value": round(ratio, 3),
          "informational": True})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payloads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="fsync off (not comparable)")
    args = parser.parse_args(argv)
    if args.payloads < 1 or args.rounds < 1:
        parser.error("--payloads and --rounds must be >= 1")
    return report_failure(run, args)


if __name__ == "__main__":
    sys.exit(main())
