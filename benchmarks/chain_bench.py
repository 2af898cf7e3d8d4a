"""Postgres CPU per job of chained dispatch at saturation, SQL only (no HTTP, no Deno).

`workers` chains report and claim their next job with `supaqueue.report_and_claim`, each on its
own connection, unprepared as the function sends it (postgres.js `prepare: false`). Two databases
in one temporary cluster (durable settings: fsync on) hold the same queue: `before` with the
migrations up to --before-upto, `after` with all of them. Rounds alternate between the two, so
load from elsewhere on the machine hits both alike; the figures are medians over rounds.

Per round and database it prints one JSON line: Postgres CPU ms per job (from /proc: the
backends, the WAL writer, the checkpointer, autovacuum, the rest), user and system time apart,
WAL records / bytes / full-page images per job (pg_stat_wal), and the job table's HOT share.
With --statements, pg_stat_statements (track = all) and track_functions = all are loaded in
this throwaway cluster only, and the top statements of the last round are printed per database.

--before-sql DIR gives `before` the engine of another version's `supaqueue/sql` directory (e.g.
`git archive main supaqueue/sql | tar -x -C DIR`), with --before-upto -1.

Keys (issue 26): --before-keys / --after-keys N spread a lane's jobs over N keys (0: none, as
before), with --workers-per-key on lanes of more than one key; --before-upto -1 gives `before`
this version too, so that e.g. 1 key and 10,000 keys are compared in one run.

Usage: python benchmarks/chain_bench.py [--workers 10] [--jobs 2000] [--rounds 5]
                                        [--before-upto 14] [--before-sql DIR]
                                        [--before-keys 0] [--after-keys 0]
                                        [--workers-per-key N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from proc_cpu import TICK_S

from harness.procs import children
from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster

REPORT = (
    "select supaqueue.report_and_claim(%s::uuid, true, true, 200::integer, 'ok'::text,"
    " null::text, null::numeric, '{}'::text::jsonb, 1::integer, 1::integer, 0::bigint)"
    " as reported"
)
CLAIM = "select supaqueue.claim_current_job(%s::uuid) is not null"
LEASES = (
    "select c.id::text from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker"
    " where w.queue = %s order by c.id"
)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def proc_times(pid: int) -> tuple[float, float, str] | None:
    """(user s, system s, kind) of one Postgres process; kind from its title."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    user, system = int(fields[11]) * TICK_S, int(fields[12]) * TICK_S
    for kind in ("walwriter", "checkpointer", "autovacuum", "background writer"):
        if kind in title:
            return user, system, kind
    for db in ("bench_before", "bench_after"):
        if db in title:
            return user, system, "backends"
    return user, system, "other"


def cpu_by_kind(postmaster: int) -> dict[str, float]:
    """CPU seconds so far per kind (`<kind>_user`, `<kind>_sys`); exited processes (reaped
    autovacuum workers) land in `reaped`."""
    out: dict[str, float] = {}
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    out["reaped_user"] = int(fields[13]) * TICK_S
    out["reaped_sys"] = int(fields[14]) * TICK_S
    out["postmaster_user"] = int(fields[11]) * TICK_S
    out["postmaster_sys"] = int(fields[12]) * TICK_S
    for child in children(postmaster):
        found = proc_times(child)
        if found is None:
            continue
        user, system, kind = found
        out[f"{kind}_user"] = out.get(f"{kind}_user", 0.0) + user
        out[f"{kind}_sys"] = out.get(f"{kind}_sys", 0.0) + system
    return out


class Lane:
    """One database, one queue with `workers` workers, one connection (thread) per chain."""

    def __init__(self, cluster: Cluster, label: str, upto: int | None, args: argparse.Namespace):
        self.label = label
        self.db = f"bench_{label}"
        with cluster.connect() as conn:
            conn.execute(f"create database {self.db}")
        cluster.bootstrap(self.db)
        self.dsn = cluster.dsn(self.db)
        self.admin_dsn = cluster.dsn(self.db, cluster.admin_user)
        every = migrations.load_migrations(
            args.before_sql if label == "before" and args.before_sql else migrations.SQL_DIR
        )
        # all of them with the repeatable files (sql/functions/), or an earlier version's without
        wanted = every if upto is None or upto < 0 else [m for m in every if m.version <= upto]
        self.version = wanted[-1].version
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            migrations.apply(conn, wanted)
            conn.execute(
                "insert into supaqueue.settings values ('dispatcher_slug', 'supaqueue'),"
                " ('functions_url', 'http://127.0.0.1:9/functions/v1')"
            )
            conn.execute("select vault.create_secret('bench-only-secret', 'supaqueue_secret')")
            row = conn.execute(
                "insert into supaqueue.queue (name, edge_function_name) values ('bench', 't')"
                " returning id::text"
            ).fetchone()
            assert row is not None
            self.queue = str(row[0])
            conn.execute("select supaqueue.set_worker_count(%s, %s)", (self.queue, args.workers))
            # every round's jobs, plus a margin so that no chain runs dry
            total = args.jobs * (args.rounds + 1) + 10 * args.workers
            keys = args.before_keys if label == "before" else args.after_keys
            self.keys = keys
            if keys > 1 and args.workers_per_key is not None:
                conn.execute(
                    "update supaqueue.queue set workers_per_key = %s where id = %s",
                    (args.workers_per_key, self.queue),
                )
            if keys:
                conn.execute(
                    "insert into supaqueue.job (queue, payload, key)"
                    " select %s, jsonb_build_object('i', g), 'k' || (g %% %s)"
                    " from generate_series(1, %s) g",
                    (self.queue, keys, total),
                )
            else:
                conn.execute(
                    "insert into supaqueue.job (queue, payload)"
                    " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
                    (self.queue, total),
                )
            leases = [str(r[0]) for r in conn.execute(LEASES, (self.queue,)).fetchall()]
            conn.execute("vacuum analyze")
        assert len(leases) == args.workers, leases
        # --after-options: what a setting would buy, e.g. "-c synchronous_commit=off"
        options = args.after_options if label == "after" else ""
        self.conns = [
            psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None, options=options)
            for _ in leases
        ]
        for conn, lease in zip(self.conns, leases, strict=True):
            claimed = conn.execute(CLAIM, (lease,)).fetchone()
            assert claimed == (True,), claimed
        self.leases = leases
        self.errors: list[str] = []

    def _chain(self, index: int, count: int) -> None:
        conn, lease = self.conns[index], self.leases[index]
        try:
            for _ in range(count):
                row = conn.execute(REPORT, (lease,)).fetchone()
                assert row is not None
                reported = row[0]
                nxt = reported["next"] if reported["current"] else None
                if not nxt or "current_job" not in nxt:
                    raise RuntimeError(f"chain {index} ended: {reported}")
                lease = nxt["current_job"]["id"]
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        self.leases[index] = lease

    def flush_stats(self) -> None:
        """Backends send their statistics at most once a second: make each send them now."""
        for conn in self.conns:
            conn.execute("select pg_stat_force_next_flush()")
            conn.execute("select 1")

    def round(self, jobs: int) -> float:
        per = jobs // len(self.conns)
        threads = [
            threading.Thread(target=self._chain, args=(i, per)) for i in range(len(self.conns))
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        if self.errors:
            raise RuntimeError(f"{self.label}: {self.errors[:3]}")
        return time.perf_counter() - started

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


STATS_SQL = {
    "wal": "select wal_records, wal_fpi, wal_bytes, wal_write, wal_sync from pg_stat_wal",
    "tables": (
        "select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del from pg_stat_user_tables"
        " where schemaname = 'supaqueue' and relname in ('job', 'current_job', 'worker',"
        " 'job_attempt')"
    ),
}


def db_stats(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_stat_clear_snapshot()")
        wal = conn.execute(STATS_SQL["wal"]).fetchone()
        assert wal is not None
        tables = {r[0]: r[1:] for r in conn.execute(STATS_SQL["tables"]).fetchall()}
    return {"wal": [float(v) for v in wal], "tables": tables}


def top_statements(dsn: str, limit: int) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 4),"
            " rows, shared_blks_hit, shared_blks_dirtied, wal_records, left(regexp_replace(query,"
            " '\\s+', ' ', 'g'), 160) from pg_stat_statements s join pg_database d"
            " on d.oid = s.dbid where d.datname = current_database()"
            " order by total_exec_time desc limit %s",
            (limit,),
        ).fetchall()
    keys = ["calls", "total_ms", "mean_ms", "rows", "blks_hit", "blks_dirtied", "wal_rec", "query"]
    out = []
    for r in rows:
        values = [v if k == "query" else float(v) for k, v in zip(keys, r, strict=True)]
        out.append(dict(zip(keys, values, strict=True)))
    return out


def enable_statements(cluster: Cluster) -> None:
    with cluster.admin_connect() as conn:
        conn.autocommit = True
        row = conn.execute("show shared_preload_libraries").fetchone()
        assert row is not None
        libs = [p.strip() for p in str(row[0]).split(",") if p.strip()] + ["pg_stat_statements"]
        conn.execute(
            "alter system set shared_preload_libraries = " + ", ".join(f"'{p}'" for p in libs)
        )
        conn.execute("alter system set track_functions = 'all'")
    cluster.stop()
    cluster.start()
    with cluster.admin_connect() as conn:
        conn.autocommit = True
        # known only once the library is loaded
        conn.execute("alter system set pg_stat_statements.track = 'all'")
        conn.execute("select pg_reload_conf()")


def measure(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.statements:
        enable_statements(cluster)
    lanes = [Lane(cluster, "before", args.before_upto, args), Lane(cluster, "after", None, args)]
    if args.statements:
        for lane in lanes:
            with psycopg.connect(lane.admin_dsn, autocommit=True) as conn:
                conn.execute("create extension if not exists pg_stat_statements")
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    emit({"bench": "chain_setup", "workers": args.workers, "jobs_per_round": args.jobs,
          "before_version": lanes[0].version, "after_version": lanes[1].version,
          "before_keys": lanes[0].keys, "after_keys": lanes[1].keys,
          "workers_per_key": args.workers_per_key})  # fmt: skip
    for lane in lanes:
        lane.round(args.workers * 5)  # warm up plans and caches
    figures: dict[str, list[dict[str, float]]] = {lane.label: [] for lane in lanes}
    with cluster.admin_connect() as admin:
        admin.autocommit = True
        for r in range(args.rounds):
            for lane in lanes if r % 2 == 0 else reversed(lanes):
                if args.vacuum:
                    with psycopg.connect(lane.admin_dsn, autocommit=True) as conn:
                        conn.execute("vacuum supaqueue.job, supaqueue.current_job")
                admin.execute("checkpoint")
                if args.statements:
                    with psycopg.connect(lane.admin_dsn, autocommit=True) as conn:
                        conn.execute(  # this database's only
                            "select pg_stat_statements_reset(0, d.oid, 0) from pg_database d"
                            " where d.datname = current_database()"
                        )
                lane.flush_stats()
                s0, c0 = db_stats(lane.dsn), cpu_by_kind(postmaster)
                seconds = lane.round(args.jobs)
                c1 = cpu_by_kind(postmaster)
                lane.flush_stats()
                s1 = db_stats(lane.dsn)
                jobs = args.jobs // args.workers * args.workers
                cpu = {k: (c1.get(k, 0.0) - c0.get(k, 0.0)) * 1000 / jobs for k in c1}
                row: dict[str, float] = {
                    "postgres_cpu_ms_per_job": sum(cpu.values()),
                    "user_ms_per_job": sum(v for k, v in cpu.items() if k.endswith("_user")),
                    "sys_ms_per_job": sum(v for k, v in cpu.items() if k.endswith("_sys")),
                    **{f"{k}_ms": v for k, v in cpu.items() if abs(v) > 0},
                    "jobs_per_s": jobs / seconds,
                }
                wal0, wal1 = s0["wal"], s1["wal"]
                for i, name in enumerate(["wal_records", "wal_fpi", "wal_bytes", "wal_writes",
                                          "wal_syncs"]):  # fmt: skip
                    row[f"{name}_per_job"] = (wal1[i] - wal0[i]) / jobs
                job0, job1 = s0["tables"].get("job"), s1["tables"].get("job")
                if job0 and job1 and job1[1] > job0[1]:
                    row["job_hot_share"] = (job1[2] - job0[2]) / (job1[1] - job0[1])
                for name, t1 in s1["tables"].items():
                    t0 = s0["tables"].get(name, (0, 0, 0, 0))
                    row[f"{name}_writes_per_job"] = sum(t1[i] - t0[i] for i in (0, 1, 3)) / jobs
                figures[lane.label].append(row)
                emit({"bench": "chain_round", "db": lane.label, "round": r,
                      **{k: round(v, 4) for k, v in row.items()}})  # fmt: skip
    for lane in lanes:
        rows = figures[lane.label]
        keys = sorted({k for row in rows for k in row})
        emit({"bench": "chain_median", "db": lane.label, "workers": args.workers,
              **{k: round(statistics.median(row.get(k, 0.0) for row in rows), 4)
                 for k in keys}})  # fmt: skip
        if args.statements:
            for stmt in top_statements(lane.admin_dsn, args.statements):
                emit({"bench": "statement", "db": lane.label, **stmt})
        lane.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round and database")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before-upto", type=int, default=14,
                        help="last migration of `before` (-1: all, this version)")  # fmt: skip
    parser.add_argument("--before-sql", type=Path, default=None,
                        help="`before`'s supaqueue/sql directory (another version's)")  # fmt: skip
    parser.add_argument("--before-keys", type=int, default=0, help="keys of `before`'s jobs")
    parser.add_argument("--after-keys", type=int, default=0, help="keys of `after`'s jobs")
    parser.add_argument("--workers-per-key", type=int, default=None,
                        help="on lanes of more than one key")  # fmt: skip
    parser.add_argument(
        "--statements", type=int, default=0,
        help="load pg_stat_statements and print this many top statements",
    )  # fmt: skip
    parser.add_argument(
        "--after-options", default="",
        help="connection options of the `after` chains, e.g. -c name=value",
    )  # fmt: skip
    parser.add_argument(
        "--vacuum", action="store_true",
        help="vacuum the job tables before each round (not timed)",
    )  # fmt: skip
    parser.add_argument("--fast", action="store_true", help="fsync off (not comparable)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.jobs < args.workers or args.rounds < 1:
        parser.error("--workers >= 1, --jobs >= --workers and --rounds >= 1")
    try:
        with Cluster.temporary(prefix="supaqueue-chainbench-", fast=args.fast) as cluster:
            return measure(cluster, args)
    except (psycopg.Error, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
