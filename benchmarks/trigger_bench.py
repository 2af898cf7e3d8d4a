"""Benchmark of table triggers: rows/s of one 100k-row INSERT into a user table without a trigger,
with a supaqueue trigger (statement-level, one set-based enqueue), with a `when` condition that
keeps half the rows; for comparison, the same INSERT followed by one statement writing the same
jobs (the floor: what the jobs themselves cost), and a plain row-level trigger enqueuing each row
on its own (the per-row design the statement-level one replaces). Also one UPDATE of every row
without and with a supaqueue UPDATE trigger. Prints one JSON line each.

It starts its own temporary cluster (durable settings unless --fast) and removes it afterwards.
Usage: python benchmarks/trigger_bench.py [--rows 100000] [--rounds 3] [--fast]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from engine_bench import bench_database, new_queue, report_failure  # the same cluster setup

WORKERS = 10
ROW_LEVEL_FUNCTION = """
create function public.bench_row_enqueue() returns trigger language plpgsql as $$
begin
  insert into supaqueue.job (queue, payload) values (TG_ARGV[0]::uuid,
    jsonb_build_object('type', TG_OP, 'table', TG_TABLE_NAME, 'schema', TG_TABLE_SCHEMA,
                       'record', to_jsonb(NEW), 'old_record', null));
  return null;
end $$
"""


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def insert_rows(conn: psycopg.Connection, rows: int) -> float:
    """Seconds of one INSERT of `rows` rows (half of them 'paid')."""
    started = time.perf_counter()
    conn.execute(
        "insert into public.bench_orders (id, status, amount, note)"
        " select g, case when g %% 2 = 0 then 'paid' else 'new' end, g * 1.5, 'order ' || g"
        " from generate_series(1, %s) g",
        (rows,),
    )
    return time.perf_counter() - started


def insert_rows_then_jobs(conn: psycopg.Connection, rows: int, queue: str) -> float:
    """The floor: the same INSERT, then the same jobs written by a second statement."""
    started = time.perf_counter()
    insert_rows(conn, rows)
    conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('type', 'INSERT', 'table', 'bench_orders', 'schema',"
        " 'public', 'record', to_jsonb(o), 'old_record', null) from public.bench_orders o",
        (queue,),
    )
    return time.perf_counter() - started


def update_rows(conn: psycopg.Connection, rows: int) -> float:
    """Seconds of one UPDATE of every row (inserted first, not timed, jobs of that removed)."""
    insert_rows(conn, rows)
    conn.execute("truncate supaqueue.job cascade")
    conn.execute("vacuum analyze public.bench_orders")
    started = time.perf_counter()
    conn.execute("update public.bench_orders set status = 'shipped'")
    return time.perf_counter() - started


def reset(conn: psycopg.Connection) -> None:
    """Empty table and jobs, free workers: each round starts alike (not timed)."""
    conn.execute("truncate public.bench_orders")
    conn.execute("delete from supaqueue.current_job")
    conn.execute("update supaqueue.worker set locked = false where locked")
    conn.execute("truncate supaqueue.job cascade")
    conn.execute("vacuum analyze public.bench_orders")
    conn.execute("checkpoint")


def measure(
    conn: psycopg.Connection,
    name: str,
    rows: int,
    rounds: int,
    setup: Callable[[], None],
    statement: Callable[[], float] | None = None,
) -> dict[str, Any]:
    setup()
    seconds: list[float] = []
    jobs = 0
    for _ in range(rounds):
        reset(conn)
        seconds.append(statement() if statement else insert_rows(conn, rows))
        row = conn.execute("select count(*) from supaqueue.job").fetchone()
        jobs = int(row[0]) if row else 0
    median = statistics.median(seconds)
    record = {
        "bench": "bulk_update_with_trigger"
        if name.startswith("update")
        else "bulk_insert_with_trigger",
        "variant": name,
        "rows": rows,
        "jobs": jobs,
        "rounds": rounds,
        "seconds_median": round(median, 3),
        "rows_per_s": round(rows / median),
    }
    emit(record)
    return record


def drop_triggers(conn: psycopg.Connection) -> None:
    conn.execute("select supaqueue.drop_table_trigger(id) from supaqueue.table_trigger")
    conn.execute("drop trigger if exists bench_row_level on public.bench_orders")


def run(args: argparse.Namespace) -> int:
    with bench_database("supaqueue-trigger-bench-", args.fast) as (_, dsn):
        emit({"bench": "setup", "durable": not args.fast, "workers": WORKERS})
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "create table public.bench_orders"
                " (id bigint primary key, status text, amount numeric, note text)"
            )
            conn.execute(ROW_LEVEL_FUNCTION)
            queue = new_queue(conn, "bench-hooks", WORKERS)

            def supaqueue_trigger(when: str | None, event: str = "INSERT") -> Callable[[], None]:
                def setup() -> None:
                    drop_triggers(conn)
                    conn.execute(
                        "select supaqueue.set_table_trigger(null, 'bench', %s, 'public',"
                        " 'bench_orders', array[%s], %s)",
                        (queue, event, when),
                    )

                return setup

            def row_level() -> None:
                drop_triggers(conn)
                conn.execute(
                    "create trigger bench_row_level after insert on public.bench_orders"
                    f" for each row execute function public.bench_row_enqueue('{queue}')"
                )

            none = measure(conn, "no_trigger", args.rows, args.rounds, lambda: drop_triggers(conn))
            statement = measure(
                conn, "supaqueue_statement_level", args.rows, args.rounds, supaqueue_trigger(None)
            )
            measure(
                conn,
                "supaqueue_statement_level_when_half",
                args.rows,
                args.rounds,
                supaqueue_trigger("NEW.status = 'paid'"),
            )
            floor = measure(
                conn,
                "no_trigger_then_same_jobs_in_one_statement",
                args.rows,
                args.rounds,
                lambda: drop_triggers(conn),
                lambda: insert_rows_then_jobs(conn, args.rows, queue),
            )
            per_row = measure(conn, "row_level_reference", args.rows, args.rounds, row_level)
            # UPDATE: row-level capture, one statement-level INSERT of the jobs.
            updated = lambda: update_rows(conn, args.rows)  # noqa: E731
            plain_update = measure(
                conn, "update_no_trigger", args.rows, args.rounds, lambda: drop_triggers(conn),
                updated,
            )  # fmt: skip
            hooked_update = measure(
                conn, "update_supaqueue_capture_then_one_insert", args.rows, args.rounds,
                supaqueue_trigger(None, "UPDATE"), updated,
            )  # fmt: skip
        emit({"bench": "ratio", "name": "rows_per_s_with_trigger_over_without",
              "value": round(statement["rows_per_s"] / none["rows_per_s"], 3)})  # fmt: skip
        emit({"bench": "ratio", "name": "rows_per_s_with_trigger_over_writing_the_jobs_directly",
              "value": round(statement["rows_per_s"] / floor["rows_per_s"], 3)})  # fmt: skip
        update_ratio = hooked_update["rows_per_s"] / plain_update["rows_per_s"]
        emit({"bench": "ratio", "name": "update_rows_per_s_with_trigger_over_without",
              "value": round(update_ratio, 3)})  # fmt: skip
        emit({"bench": "ratio", "name": "statement_level_over_row_level_rows_per_s",
              "value": round(statement["rows_per_s"] / per_row["rows_per_s"], 3)})  # fmt: skip
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fast", action="store_true", help="fsync off (not comparable)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rounds < 1:
        parser.error("--rows and --rounds must be at least 1")
    return report_failure(run, args)


if __name__ == "__main__":
    sys.exit(main())
