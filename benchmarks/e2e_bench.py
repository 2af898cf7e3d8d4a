"""End-to-end benchmark on the local stack. Prints one JSON line per measurement.

Starts a local stack (`supaqueue dev up` in a temp dir), deploys the real `supaqueue` function
and a no-op target (benchmarks/noop_target) through the Management API stand-in, installs the
engine in the stack's `postgres` database (where pg_cron ticks it), then for each worker count:

- throughput: one INSERT of --jobs jobs, timed until every one succeeded (jobs/s end to end);
- latency: jobs enqueued one by one at a steady --rate per second, enqueue → target p50/p95
  (the target answers with the time the call arrived; the job keeps it as its result);

and for both: pg_net requests per job (the request sequence), dispatcher and target invocations
per job (the gateway's counter, GET /_local/invocations), CPU per job of Postgres (every server
process, from /proc), of the daemon (Python gateway + pg_net stand-in sender) and of each
function's Deno process, and how busy the whole machine was (others' load shows here).

Targets (issue #11): >= 1000 jobs/s, <= 0.05 pg_net requests and dispatcher invocations per job
at saturation, enqueue → target p50 <= 10 ms on an idle queue.

Each measurement runs twice where the engine chains (sql/0014): chain "off" (chain_max_jobs = 1:
one job per dispatcher invocation, every job through pg_net, as before chaining) and "on" (the
default budget), interleaved, so before and after come from the same run and the same load.

With --baseline-dispatcher DIR, every measurement also runs with that version of the `supaqueue`
function (redeployed in turn, warmed up again), labelled "dispatcher": "baseline" / "this".

Usage: python benchmarks/e2e_bench.py [--jobs 10000] [--workers 10,50] [--rate 20]
                                      [--rate-seconds 10] [--chain off,on] [--keep]
                                      [--dispatcher DIR] [--baseline-dispatcher DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cli_args import int_list
from proc_cpu import CpuReading, read_stack

from supaqueue import migrations
from supaqueue.edge_source import source_files

REPO = Path(__file__).resolve().parents[1]
DISPATCHER_DIR = REPO / "supaqueue" / "edge"
TARGET_DIR = Path(__file__).resolve().with_name("noop_target")
DISPATCHER = "supaqueue"
TARGET = "noop-target"
WARMUP_JOBS = 100
POLL_S = 0.2

TARGET_JOBS_PER_S = 1000
TARGET_PER_JOB = 0.05
TARGET_IDLE_P50_MS = 10


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


# --- the local stack ------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"supaqueue dev {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]

    def _mgmt(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.env['MANAGEMENT_API_URL']}/v1/projects/{self.env['PROJECT_REF']}{path}",
            headers={"Authorization": f"Bearer {self.env['ACCESS_TOKEN']}"},
            timeout=120,
            **kwargs,
        )

    def deploy(self, slug: str, folder: Path, verify_jwt: bool) -> None:
        metadata: dict[str, Any] = {"entrypoint_path": "index.ts", "verify_jwt": verify_jwt}
        if (folder / "deno.json").exists():
            metadata["import_map_path"] = "deno.json"
        parts: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
            ("metadata", (None, json.dumps(metadata), "application/json"))
        ]
        parts += [("file", (name, data, "application/octet-stream"))
                  for name, data in source_files(folder)]  # fmt: skip
        reply = self._mgmt("POST", "/functions/deploy", params={"slug": slug}, files=parts)
        if reply.status_code != 201:
            raise BenchError(f"deploy {slug}: {reply.status_code} {reply.text}")

    def set_secret(self, name: str, value: str) -> None:
        reply = self._mgmt("POST", "/secrets", json=[{"name": name, "value": value}])
        if reply.status_code != 201:
            raise BenchError(f"setting the function secret: {reply.status_code} {reply.text}")

    def invocations(self) -> dict[str, int]:
        reply = httpx.get(f"{self.env['API_URL']}/_local/invocations", timeout=30)
        reply.raise_for_status()
        return dict(reply.json())

    def cpu(self) -> CpuReading:
        postmaster = int((self.dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        daemon = int((self.dir / "daemon.pid").read_text().strip())
        return read_stack(postmaster, daemon, self.dir / "functions")


@contextmanager
def local_stack(keep: bool) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-e2e-bench-"))
    root.chmod(0o755)  # as root, Postgres runs as the postgres OS user and must reach pgdata
    state = root / "stack"
    try:
        _cli("up", "--dir", str(state))
        out = _cli("status", "-o", "env", "--dir", str(state))
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        yield Stack(state, env)
    finally:
        if keep:
            print(f"kept the local stack in {state}", file=sys.stderr)
        else:
            try:
                _cli("destroy", "--dir", str(state))
            finally:
                shutil.rmtree(root, ignore_errors=True)


def install(stack: Stack, dispatcher_dir: Path = DISPATCHER_DIR) -> None:
    """What `pulumi up` puts in place: functions, their secret, the schema, settings, Vault."""
    secret = secrets.token_urlsafe(32)
    stack.set_secret("SUPAQUEUE_SECRET", secret)
    stack.deploy(DISPATCHER, dispatcher_dir, verify_jwt=False)
    stack.deploy(TARGET, TARGET_DIR, verify_jwt=True)
    with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations())
        conn.execute(
            "insert into supaqueue.settings (key, value) values"
            " ('functions_url', %s), ('dispatcher_slug', %s)",
            (stack.env["FUNCTIONS_URL"], DISPATCHER),
        )
        conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (secret,))


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Reading:
    at: float
    pg_net: int
    invocations: dict[str, int]
    cpu: CpuReading


def read(stack: Stack, conn: psycopg.Connection) -> Reading:
    row = conn.execute(
        "select case when is_called then last_value else 0 end from net.http_request_queue_id_seq"
    ).fetchone()
    assert row is not None
    return Reading(time.monotonic(), int(row[0]), stack.invocations(), stack.cpu())


def per_job(before: Reading, after: Reading, jobs: int) -> dict[str, Any]:
    cpu = after.cpu.minus(before.cpu)
    calls = {k: v - before.invocations.get(k, 0) for k, v in after.invocations.items()}
    seconds = after.at - before.at
    busy = cpu.machine_busy / cpu.machine_total if cpu.machine_total else None
    ours = sum(cpu.parts.values())
    return {
        "pg_net_requests_per_job": round((after.pg_net - before.pg_net) / jobs, 4),
        "dispatcher_invocations_per_job": round(calls.get(DISPATCHER, 0) / jobs, 4),
        "target_invocations_per_job": round(calls.get(TARGET, 0) / jobs, 4),
        "postgres_cpu_ms_per_job": round(cpu.parts["postgres"] * 1000 / jobs, 3),
        "daemon_cpu_ms_per_job": round(cpu.parts["daemon"] * 1000 / jobs, 3),
        "dispatcher_cpu_ms_per_job": round(
            cpu.parts.get(f"function:{DISPATCHER}", 0.0) * 1000 / jobs, 3
        ),
        "target_cpu_ms_per_job": round(cpu.parts.get(f"function:{TARGET}", 0.0) * 1000 / jobs, 3),
        # cores the stack kept busy, and how busy the whole 2-core machine was (others' tests too)
        "stack_cores_busy": round(ours / seconds, 2) if seconds > 0 else None,
        # the rate the stack's CPU cost allows on this machine alone (every core ours): a
        # figure that others' load on a shared machine does not distort, unlike jobs/s
        "cpu_bound_jobs_per_s": round((os.cpu_count() or 1) * jobs / ours, 1) if ours else None,
        "machine_busy_fraction": round(busy, 3) if busy is not None else None,
        "cpu_count": os.cpu_count(),
    }


def new_queue(conn: psycopg.Connection, name: str, workers: int) -> str:
    row = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name, max_attempts)"
        " values (%s, %s, 1) returning id::text",
        (name, TARGET),
    ).fetchone()
    assert row is not None
    conn.execute("select supaqueue.set_worker_count(%s, %s)", (row[0], workers))
    return str(row[0])


def wait_done(conn: psycopg.Connection, queue: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # one index probe, not a count: polling must not add to the Postgres CPU measured
        row = conn.execute(
            "select exists (select 1 from supaqueue.job"
            " where queue = %s and status in ('pending', 'in_progress'))",
            (queue,),
        ).fetchone()
        if row == (False,):
            return
        time.sleep(POLL_S)
    raise BenchError(f"jobs of queue {queue} still unfinished after {timeout:.0f} s")


def check_succeeded(conn: psycopg.Connection, queue: str, expected: int) -> None:
    row = conn.execute(
        "select count(*) filter (where status = 'success'), count(*),"
        " min(last_error) filter (where status <> 'success')"
        " from supaqueue.job where queue = %s",
        (queue,),
    ).fetchone()
    assert row is not None
    if row[0] != expected or row[1] != expected:
        raise BenchError(f"{row[0]} of {expected} jobs succeeded ({row[1]} in all): {row[2]}")


def bulk(conn: psycopg.Connection, queue: str, jobs: int) -> None:
    conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('i', g) from generate_series(1, %s) g",
        (queue, jobs),
    )


def throughput(
    stack: Stack, conn: psycopg.Connection, label: dict[str, Any], workers: int, jobs: int
) -> None:
    queue = new_queue(conn, f"bench-throughput-w{workers}-{uuid.uuid4().hex[:6]}", workers)
    before = read(stack, conn)
    bulk(conn, queue, jobs)
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
    figures = per_job(before, after, jobs)
    emit({"bench": "e2e_throughput", **label, "workers": workers, "jobs": jobs,
          "seconds": round(seconds, 2), "jobs_per_s": round(rate, 1),
          "target_min": TARGET_JOBS_PER_S, "ok": rate >= TARGET_JOBS_PER_S})  # fmt: skip
    for name in ("pg_net_requests_per_job", "dispatcher_invocations_per_job"):
        value = figures[name]
        emit({"bench": "e2e_saturation", **label, "workers": workers, "measure": name,
              "value": value,
              "target_max": TARGET_PER_JOB, "ok": value <= TARGET_PER_JOB})  # fmt: skip
    emit({"bench": "e2e_cost", **label, "workers": workers, "load": "saturation", **figures})
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


def latency(
    stack: Stack,
    conn: psycopg.Connection,
    label: dict[str, Any],
    workers: int,
    rate: float,
    seconds: float,
) -> None:
    queue = new_queue(conn, f"bench-latency-w{workers}-{uuid.uuid4().hex[:6]}", workers)
    count = max(1, int(rate * seconds))
    sent: list[tuple[str, float]] = []
    before = read(stack, conn)
    started = time.monotonic()
    with conn.cursor() as cur:
        for i in range(count):
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            at_ms = time.time() * 1000
            cur.execute(
                "insert into supaqueue.job (queue, payload) values (%s, '{}') returning id::text",
                (queue,),
                prepare=True,
            )
            row = cur.fetchone()
            assert row is not None
            sent.append((str(row[0]), at_ms))
    wait_done(conn, queue, timeout=120)
    after = read(stack, conn)
    check_succeeded(conn, queue, count)
    arrived: dict[str, float] = dict(
        conn.execute(
            "select id::text, (result->>'received_at_ms')::float8 from supaqueue.job"
            " where queue = %s",
            (queue,),
        ).fetchall()
    )
    millis = sorted(arrived[job] - at for job, at in sent)
    p50 = statistics.median(millis)
    p95 = statistics.quantiles(millis, n=20)[-1] if len(millis) >= 2 else millis[0]
    emit({"bench": "e2e_latency", **label, "workers": workers, "rate_per_s": rate, "jobs": count,
          "enqueue_to_target_p50_ms": round(p50, 2), "enqueue_to_target_p95_ms": round(p95, 2),
          "target_p50_max_ms": TARGET_IDLE_P50_MS, "ok": p50 <= TARGET_IDLE_P50_MS})  # fmt: skip
    emit({"bench": "e2e_cost", **label, "workers": workers, "load": f"{rate:g}/s",
          **per_job(before, after, count)})  # fmt: skip
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


def warm_up(conn: psycopg.Connection) -> None:
    """Boot both functions and fill their connection pools before anything is timed."""
    queue = new_queue(conn, f"bench-warmup-{uuid.uuid4().hex[:6]}", 10)
    bulk(conn, queue, WARMUP_JOBS)
    wait_done(conn, queue, timeout=180)
    check_succeeded(conn, queue, WARMUP_JOBS)
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


def chain_modes(conn: psycopg.Connection, wanted: list[str]) -> list[str]:
    """The chain modes to measure: both where the engine chains (off = one job per dispatcher
    invocation, every job through pg_net, as before chaining), else what this engine does."""
    row = conn.execute("select to_regproc('supaqueue.report_and_claim') is not null").fetchone()
    return wanted if row == (True,) else ["unsupported"]


def set_chain(conn: psycopg.Connection, mode: str) -> None:
    if mode == "unsupported":
        return
    conn.execute("delete from supaqueue.settings where key = 'chain_max_jobs'")
    if mode == "off":  # the budget's default otherwise (sql/0014_chained_dispatch.sql)
        conn.execute("insert into supaqueue.settings (key, value) values ('chain_max_jobs', '1')")


def run(args: argparse.Namespace) -> int:
    # (label, folder) of each dispatcher to measure; with a baseline, both in the same run
    dispatchers = [("this", args.dispatcher)]
    if args.baseline_dispatcher is not None:
        dispatchers.insert(0, ("baseline", args.baseline_dispatcher))
    with local_stack(args.keep) as stack:
        install(stack, dispatchers[0][1])
        deployed = dispatchers[0][1]
        with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
            modes = chain_modes(conn, args.chain)
            warm_up(conn)
            emit({"bench": "e2e_setup", "jobs": args.jobs, "workers": args.workers,
                  "rate_per_s": args.rate, "rate_seconds": args.rate_seconds,
                  "chain_modes": modes,
                  "dispatchers": {name: str(folder) for name, folder in dispatchers}})  # fmt: skip
            # modes (and dispatchers) interleaved per worker count: others' load on the machine
            # hits both alike
            for workers in args.workers:
                for mode in modes:
                    set_chain(conn, mode)
                    for name, folder in dispatchers:
                        if folder != deployed:
                            stack.deploy(DISPATCHER, folder, verify_jwt=False)
                            deployed = folder
                            warm_up(conn)  # the new version's process and its pool
                        label = {"chain": mode}
                        if len(dispatchers) > 1:
                            label["dispatcher"] = name
                        throughput(stack, conn, label, workers, args.jobs)
                        latency(stack, conn, label, workers, args.rate, args.rate_seconds)
    return 0


def _modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes or set(modes) - {"off", "on"}:
        raise argparse.ArgumentTypeError("--chain: off, on or off,on")
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument(
        "--workers", type=int_list("--workers", 1, 1000), default=[10, 50], help="e.g. 10,50"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="jobs/s of the latency run")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--chain", type=_modes, default=["off", "on"], help="e.g. on or off,on")
    parser.add_argument("--dispatcher", type=Path, default=DISPATCHER_DIR,
                        help="the supaqueue function folder to deploy")  # fmt: skip
    parser.add_argument("--baseline-dispatcher", type=Path, default=None,
                        help="another version's folder, measured interleaved with --dispatcher"
                        " (e.g. from `git archive main supaqueue/edge`)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the local stack (debugging)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or not 0 < args.rate <= 1000 or not 0 < args.rate_seconds <= 600:
        parser.error("--jobs >= 1, 0 < --rate <= 1000, 0 < --rate-seconds <= 600")
    try:
        return run(args)
    except (BenchError, psycopg.Error, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
