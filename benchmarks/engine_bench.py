"""Benchmark of the SQL engine, no HTTP involved. Prints one JSON line per measurement.

- end_current_job (completion + the next dispatch) on one connection, at 1k and at 100k queued
  jobs: the cost must not grow with the backlog (target: cost@100k <= 1.3 x cost@1k);
- claim_current_job, the function's first call for each dispatch (the lease check of issue
  #15.1), timed apart: `claim_mean_ms`, and the whole per-job cost `per_job_mean_ms` (claim + end);
- pgbench (TPC-B-like, 1 client) on the same server in the same run (target: completions/s >=
  0.5 x pgbench TPS);
- one INSERT statement of 100k jobs (target: < 5 s).

It starts its own temporary cluster (durable settings unless --fast) and removes it afterwards.
Usage: python benchmarks/engine_bench.py [--completions 1000] [--pgbench-seconds 10] [--fast]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from harness import engine as harness_engine
from supaqueue.local_stack.postgres import PG_BIN, Cluster

BENCH_DB = "supaqueue_bench"  # not `postgres`: no pg_cron tick runs there to disturb timings
PGBENCH_DB = "pgbench"
WORKERS = 10
WARMUP = 50
ROUNDS = 5


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def install(dsn: str) -> None:
    # No pg_net sender runs here: dispatches stay queued; the URL (discard port) is never called.
    harness_engine.install(dsn, "http://127.0.0.1:9/functions/v1", "bench-only-secret")


@contextmanager
def bench_database(prefix: str, fast: bool) -> Iterator[tuple[Cluster, str]]:
    """A throw-away cluster (durable unless `fast`) with the engine installed in BENCH_DB."""
    with Cluster.temporary(prefix=prefix, fast=fast) as cluster:
        with cluster.connect() as conn:
            conn.execute(f"create database {BENCH_DB}")
        cluster.bootstrap(BENCH_DB)
        # Rounds start alike after a CHECKPOINT, which `postgres` (not a superuser, as on
        # Supabase) may not run: this throw-away cluster lets it.
        with cluster.admin_connect() as admin:
            admin.execute("grant pg_checkpoint to postgres")
        dsn = cluster.dsn(BENCH_DB)
        install(dsn)
        yield cluster, dsn


def report_failure(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a benchmark; a failure is one line on stderr and exit status 1, never a traceback."""
    try:
        return run(args)
    except (psycopg.Error, subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"error: {exc} {detail}".strip(), file=sys.stderr)
        return 1


def new_queue(conn: psycopg.Connection, name: str, workers: int) -> str:
    row = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name) values (%s, 'target')"
        " returning id::text",
        (name,),
    ).fetchone()
    assert row is not None
    conn.execute("select supaqueue.set_worker_count(%s, %s)", (row[0], workers))
    return str(row[0])


def bulk_insert(conn: psycopg.Connection, queue: str, rows: int) -> float:
    started = time.perf_counter()
    conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
        (queue, rows),
    )
    return time.perf_counter() - started


def settle(conn: psycopg.Connection) -> None:
    """Let the bulk load's after-effects (autovacuum, dirty buffers) finish before timing."""
    conn.execute("vacuum analyze supaqueue.job")
    conn.execute("checkpoint")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = conn.execute(
            "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"
        ).fetchone()
        if row == (0,):
            return
        time.sleep(0.2)


class Lane:
    """One queue with `queued` jobs waiting behind its workers, completed one job at a time."""

    END = "select supaqueue.end_current_job(%s, true, true, 200, 'ok', null, null, '{}', 5)"
    CLAIM = "select supaqueue.claim_current_job(%s) is not null"
    NEXT = (
        "select c.id from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker"
        " where w.queue = %s and c.id <> all(%s::uuid[])"
    )

    def __init__(self, conn: psycopg.Connection, queued: int, completions: int) -> None:
        self.conn = conn
        self.queued = queued
        self.completions = completions
        self.queue = new_queue(conn, f"bench-{queued}", WORKERS)
        # enough that at least `queued` jobs still wait after the last timed completion
        bulk_insert(conn, self.queue, queued + completions + WARMUP)
        self.leases = [str(r[0]) for r in conn.execute(self.NEXT, (self.queue, [])).fetchall()]
        assert len(self.leases) == WORKERS, self.leases
        self.timings: list[float] = []
        self.claims: list[float] = []

    def complete(self, count: int, timed: bool = True) -> None:
        with self.conn.cursor() as cur:
            for _ in range(count):
                lease = self.leases.pop(0)
                # what the function does first with each dispatch
                started = time.perf_counter()
                cur.execute(self.CLAIM, (lease,), prepare=True)
                claimed = cur.fetchone()
                elapsed = time.perf_counter() - started
                assert claimed == (True,), f"claim_current_job returned {claimed}"
                if timed:
                    self.claims.append(elapsed)
                started = time.perf_counter()
                cur.execute(self.END, (lease,), prepare=True)
                row = cur.fetchone()
                elapsed = time.perf_counter() - started
                assert row == (True,), f"end_current_job returned {row}"
                if timed:
                    self.timings.append(elapsed)
                # the freed worker took the next job: find its new lease (not timed)
                fresh = self.conn.execute(self.NEXT, (self.queue, self.leases)).fetchone()
                assert fresh is not None, "the completion did not dispatch the next job"
                self.leases.append(str(fresh[0]))

    def result(self) -> dict[str, Any]:
        pending = self.conn.execute(
            "select count(*) from supaqueue.job where queue = %s and status = 'pending'",
            (self.queue,),
        ).fetchone()
        mean_ms = statistics.fmean(self.timings) * 1000
        claim_ms = statistics.fmean(self.claims) * 1000
        return {
            "bench": "end_current_job",
            "queued": self.queued,
            "queued_at_end": int(pending[0]) if pending else None,
            "completions": len(self.timings),
            "mean_ms": round(mean_ms, 3),
            "p50_ms": round(statistics.median(self.timings) * 1000, 3),
            "p95_ms": round(statistics.quantiles(self.timings, n=20)[-1] * 1000, 3),
            "completions_per_s": round(1000 / mean_ms, 1),
            "claim_mean_ms": round(claim_ms, 3),
            "claim_p95_ms": round(statistics.quantiles(self.claims, n=20)[-1] * 1000, 3),
            "per_job_mean_ms": round(mean_ms + claim_ms, 3),
        }


def vault_decrypt_ms(conn: psycopg.Connection, calls: int = 200) -> float:
    """Cost of one read of the secret from vault.decrypted_secrets (each dispatch reads it once):
    one statement decrypting it `calls` times, so the round trip hardly counts."""
    started = time.perf_counter()
    row = conn.execute(
        "select count(ds.decrypted_secret) from vault.decrypted_secrets ds,"
        " generate_series(1, %s) g where ds.name = 'supaqueue_secret'",
        (calls,),
    ).fetchone()
    elapsed = time.perf_counter() - started
    assert row == (calls,)
    return elapsed * 1000 / calls


def http_post_ms(conn: psycopg.Connection, calls: int = 200) -> float:
    """Cost of one net.http_post call (each dispatch makes one), rolled back so nothing is sent."""
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        row = conn.execute(
            "select count(net.http_post(url := 'http://127.0.0.1:9/functions/v1/supaqueue',"
            " body := jsonb_build_object('job', jsonb_build_object('i', g)),"
            ' headers := \'{"Content-Type": "application/json", "supaqueue-secret": "x"}\','
            " timeout_milliseconds := 5000)) from generate_series(1, %s) g",
            (calls,),
        ).fetchone()
        elapsed = time.perf_counter() - started
    assert row == (calls,)
    return elapsed * 1000 / calls


class PgBench:
    """pgbench TPC-B-like, 1 client, against the same server; run in slices between the others."""

    def __init__(self, cluster: Cluster) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env["PGPASSWORD"] = cluster.password  # environment, not the command line
        self.common = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        with cluster.connect() as conn:
            conn.execute(f"create database {PGBENCH_DB}")
        subprocess.run(
            [str(PG_BIN / "pgbench"), *self.common, "-i", "-s", "1", "-q", PGBENCH_DB],
            env=self.env, check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        self.transactions = 0
        self.seconds = 0.0

    def run(self, seconds: int) -> None:
        proc = subprocess.run(
            [str(PG_BIN / "pgbench"), *self.common, "-c", "1", "-j", "1", "-T", str(seconds),
             "-n", PGBENCH_DB],
            env=self.env, check=True, capture_output=True, text=True, timeout=seconds + 120,
        )  # fmt: skip
        done = re.search(r"number of transactions actually processed: (\d+)", proc.stdout)
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", proc.stdout)
        if done is None or tps is None:
            raise RuntimeError(f"could not read pgbench's result:\n{proc.stdout}")
        self.transactions += int(done.group(1))
        self.seconds += int(done.group(1)) / float(tps.group(1))

    def result(self) -> dict[str, Any]:
        return {"bench": "pgbench", "clients": 1, "transactions": self.transactions,
                "seconds": round(self.seconds, 2),
                "tps": round(self.transactions / self.seconds, 1)}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    # Durable settings unless --fast: fsync off would flatter the engine against pgbench.
    with bench_database("supaqueue-bench-", args.fast) as (cluster, dsn):
        return measure(cluster, dsn, args)


def measure(cluster: Cluster, dsn: str, args: argparse.Namespace) -> int:
    emit({"bench": "setup", "durable": not args.fast, "workers": WORKERS})

    with psycopg.connect(dsn, autocommit=True) as conn:
        queue = new_queue(conn, "bulk", 4)
        seconds = bulk_insert(conn, queue, 100_000)
        emit({"bench": "bulk_insert", "rows": 100_000, "seconds": round(seconds, 3),
              "target_seconds": 5, "ok": seconds < 5})  # fmt: skip
        conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))

        small = Lane(conn, 1_000, args.completions)
        large = Lane(conn, 100_000, args.completions)
        bench = PgBench(cluster)
        settle(conn)
        small.complete(WARMUP, timed=False)
        large.complete(WARMUP, timed=False)
        # Interleaved rounds: load from elsewhere on the machine hits all three alike.
        decrypt: list[float] = []
        post: list[float] = []
        for i in range(ROUNDS):
            share = args.completions // ROUNDS + (1 if i < args.completions % ROUNDS else 0)
            small.complete(share)
            large.complete(share)
            bench.run(max(1, args.pgbench_seconds // ROUNDS))
            decrypt.append(vault_decrypt_ms(conn))
            post.append(http_post_ms(conn))
        results = [small.result(), large.result(), bench.result()]
        vault_ms = statistics.fmean(decrypt)
        post_ms = statistics.fmean(post)
    for record in results:
        emit(record)
    at_1k, at_100k, tpcb = results

    growth = at_100k["mean_ms"] / at_1k["mean_ms"]
    emit({"bench": "ratio", "name": "cost_100k_over_cost_1k", "value": round(growth, 3),
          "target_max": 1.3, "ok": growth <= 1.3})  # fmt: skip
    for row in (at_1k, at_100k):
        share = row["completions_per_s"] / tpcb["tps"]
        name = f"completions_per_s_over_pgbench_tps_at_{row['queued']}"
        emit({"bench": "ratio", "name": name, "value": round(share, 3), "target_min": 0.5,
              "ok": share >= 0.5})  # fmt: skip
        # the whole cost of a job as the function drives it: claim, then end (+ next dispatch)
        jobs_share = 1000 / row["per_job_mean_ms"] / tpcb["tps"]
        emit({"bench": "ratio", "name": f"jobs_per_s_over_pgbench_tps_at_{row['queued']}",
              "value": round(jobs_share, 3), "informational": True})  # fmt: skip
    # What the two stand-ins cost here, once per dispatch: the local Vault decrypts with
    # pgcrypto and net.http_post is PL/pgSQL; on Supabase both are C. Informational only.
    emit({"bench": "vault_decrypt", "mean_ms": round(vault_ms, 3), "per": "dispatch"})
    emit({"bench": "net_http_post", "mean_ms": round(post_ms, 3), "per": "dispatch"})
    for row in (at_1k, at_100k):
        engine_ms = max(row["mean_ms"] - vault_ms - post_ms, 1e-3)
        name = f"completions_per_s_over_pgbench_tps_at_{row['queued']}_without_standins"
        emit({"bench": "ratio", "name": name, "engine_ms": round(engine_ms, 3),
              "value": round(1000 / engine_ms / tpcb["tps"], 3),
              "informational": True})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--completions", type=int, default=1000, help="timed completions per size")
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--fast", action="store_true", help="fsync off (not comparable)")
    args = parser.parse_args(argv)
    if args.completions < 20 or args.pgbench_seconds < 1:
        parser.error("--completions must be >= 20 and --pgbench-seconds >= 1")
    return report_failure(run, args)


if __name__ == "__main__":
    sys.exit(main())
