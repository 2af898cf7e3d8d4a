"""Postgres cost per job of batch delivery, SQL only (no HTTP, no Deno): what the dispatcher's
statements cost the database for a batched queue at saturation. Prints one JSON line per
measurement.

Two databases in one temporary cluster (durable settings unless --fast) hold the same queue of
--workers workers and --batch-size: `before` with the engine from --before-sql (a directory of
`supaqueue/sql`, e.g. an earlier version's: `git archive main supaqueue/sql | tar -x -C DIR`;
default: this checkout's), `after` with this checkout's. Rounds alternate between the two, so
load from elsewhere on the machine hits both alike. A round: one INSERT of --jobs jobs (timed
apart: `enqueue_ms_per_job`; its statement trigger dispatches the first batches), then one
connection plays the dispatcher until every job succeeded: each batch request pg_net was given
(the `net` stand-in's queue) is claimed with `claim_batch` and all its jobs reported successful
with `report_batch`, whose dispatch queues the next batches. Figures per round and database:
wall and Postgres CPU ms per job (all its processes, from /proc), the claims' and reports'
wall time apart.

With --statements N, pg_stat_statements (track = all: the statements inside the functions too)
is loaded in this throwaway cluster only, and the top N statements of each database's last
round are printed.

Usage: python benchmarks/batch_sql_bench.py [--jobs 20000] [--workers 500] [--batch-size 50]
                                            [--rounds 3] [--before-sql DIR] [--statements N]
                                            [--fast]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from chain_bench import cpu_by_kind, enable_statements, top_statements

from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster

NEW_BATCHES = (
    "select id, convert_from(body, 'utf8')::jsonb -> 'batch' ->> 'id'"
    " from net.http_request_queue where id > %s order by id"
)
CLAIM = "select supaqueue.claim_batch(%s::uuid) as claimed"
REPORT = "select supaqueue.report_batch(%s::text::jsonb) as reported"


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class Lane:
    """One database with the engine from `sql_dir` and one batched queue."""

    def __init__(self, cluster: Cluster, label: str, sql_dir: Path, args: argparse.Namespace):
        self.label = label
        self.db = f"bench_{label}"
        with cluster.connect() as conn:
            conn.execute(f"create database {self.db}")
        cluster.bootstrap(self.db)
        self.dsn = cluster.dsn(self.db)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            migrations.apply(conn, migrations.load_migrations(sql_dir))
            conn.execute(
                "insert into supaqueue.settings values ('dispatcher_slug', 'supaqueue'),"
                " ('functions_url', 'http://127.0.0.1:9/functions/v1')"
            )
            conn.execute("select vault.create_secret('bench-only-secret', 'supaqueue_secret')")
            row = conn.execute(
                "insert into supaqueue.queue (name, edge_function_name, max_attempts, batch_size)"
                " values ('bench', 't', 1, %s) returning id::text",
                (args.batch_size,),
            ).fetchone()
            assert row is not None
            self.queue = str(row[0])
            conn.execute("select supaqueue.set_worker_count(%s, %s)", (self.queue, args.workers))
        # unprepared, as the function sends its statements (postgres.js `prepare: false`)
        self.conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
        self.seen = 0

    def round(self, jobs: int) -> dict[str, float]:
        conn = self.conn
        started = time.perf_counter()
        conn.execute(
            "insert into supaqueue.job (queue, payload)"
            " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
            (self.queue, jobs),
        )
        enqueued = time.perf_counter()
        claim_s = report_s = 0.0
        done = 0
        for _ in range(jobs + 10):  # bounded: each pass ends at least one job, or stops
            batches = [str(r[1]) for r in conn.execute(NEW_BATCHES, (self.seen,)).fetchall()]
            if not batches:
                break
            last = conn.execute("select coalesce(max(id), 0) from net.http_request_queue")
            self.seen = max(self.seen, int(last.fetchone()[0]))  # type: ignore[index]
            for batch in batches:
                t0 = time.perf_counter()
                row = conn.execute(CLAIM, (batch,)).fetchone()
                t1 = time.perf_counter()
                assert row is not None
                leases = [c["current_job"]["id"] for c in row[0]["jobs"] if "refused" not in c]
                outcomes = [
                    {"current_job": lease, "is_complete": True, "is_successful": True,
                     "status_code": 200, "response_excerpt": None, "error": None,
                     "retry_after_seconds": None, "duration_ms": 1}
                    for lease in leases
                ]  # fmt: skip
                reported = conn.execute(REPORT, (json.dumps(outcomes),)).fetchone()
                t2 = time.perf_counter()
                assert reported is not None and all(reported[0]), reported
                claim_s += t1 - t0
                report_s += t2 - t1
                done += len(leases)
        ended = time.perf_counter()
        left = conn.execute(
            "select count(*) from supaqueue.job where queue = %s and status <> 'success'",
            (self.queue,),
        ).fetchone()
        if done != jobs or left != (0,):
            raise RuntimeError(f"{self.label}: {done} of {jobs} jobs reported, {left} unfinished")
        return {
            "enqueue_ms_per_job": (enqueued - started) * 1000 / jobs,
            "claim_ms_per_job": claim_s * 1000 / jobs,
            "report_ms_per_job": report_s * 1000 / jobs,
            "wall_ms_per_job": (ended - started) * 1000 / jobs,
            "jobs_per_s": jobs / (ended - started),
        }

    def close(self) -> None:
        self.conn.close()


def measure(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.statements:
        enable_statements(cluster)
    lanes = [
        Lane(cluster, "before", args.before_sql, args),
        Lane(cluster, "after", migrations.SQL_DIR, args),
    ]
    if args.statements:
        for lane in lanes:
            with psycopg.connect(cluster.dsn(lane.db, cluster.admin_user),
                                 autocommit=True) as conn:  # fmt: skip
                conn.execute("create extension if not exists pg_stat_statements")
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    emit({"bench": "batch_sql_setup", "workers": args.workers, "batch_size": args.batch_size,
          "jobs_per_round": args.jobs, "before_sql": str(args.before_sql)})  # fmt: skip
    for lane in lanes:
        lane.round(max(args.workers * 2, 1000))  # warm up plans and caches
    figures: dict[str, list[dict[str, float]]] = {lane.label: [] for lane in lanes}
    with cluster.admin_connect() as admin:
        admin.autocommit = True
        for r in range(args.rounds):
            for lane in lanes if r % 2 == 0 else reversed(lanes):
                with psycopg.connect(cluster.dsn(lane.db, cluster.admin_user),
                                     autocommit=True) as conn:  # fmt: skip
                    conn.execute("vacuum analyze supaqueue.job, supaqueue.current_job,"
                                 " supaqueue.worker, supaqueue.job_attempt")  # fmt: skip
                admin.execute("checkpoint")
                if args.statements:
                    with psycopg.connect(cluster.dsn(lane.db, cluster.admin_user),
                                         autocommit=True) as conn:  # fmt: skip
                        conn.execute(  # this database's only
                            "select pg_stat_statements_reset(0, d.oid, 0) from pg_database d"
                            " where d.datname = current_database()"
                        )
                c0 = cpu_by_kind(postmaster)
                row = lane.round(args.jobs)
                c1 = cpu_by_kind(postmaster)
                row["postgres_cpu_ms_per_job"] = (
                    sum(c1.get(k, 0.0) - c0.get(k, 0.0) for k in c1) * 1000 / args.jobs
                )
                figures[lane.label].append(row)
                emit({"bench": "batch_sql_round", "db": lane.label, "round": r,
                      **{k: round(v, 4) for k, v in row.items()}})  # fmt: skip
    for lane in lanes:
        rows = figures[lane.label]
        emit({"bench": "batch_sql_median", "db": lane.label,
              **{k: round(statistics.median(row[k] for row in rows), 4)
                 for k in rows[0]}})  # fmt: skip
        if args.statements:
            for stmt in top_statements(cluster.dsn(lane.db, cluster.admin_user), args.statements):
                emit({"bench": "statement", "db": lane.label, **stmt})
        lane.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per round and database")
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-sql", type=Path, default=migrations.SQL_DIR,
                        help="the `before` engine's supaqueue/sql directory")  # fmt: skip
    parser.add_argument(
        "--statements", type=int, default=0,
        help="load pg_stat_statements (track = all) and print this many top statements of the"
        " last round per database",
    )  # fmt: skip
    parser.add_argument("--fast", action="store_true", help="fsync off (not comparable)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.jobs < 1 or args.rounds < 1 or not 2 <= args.batch_size <= 100:
        parser.error("--workers, --jobs, --rounds >= 1; --batch-size 2-100")
    try:
        with Cluster.temporary(prefix="supaqueue-batchsqlbench-", fast=args.fast) as cluster:
            return measure(cluster, args)
    except (psycopg.Error, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
