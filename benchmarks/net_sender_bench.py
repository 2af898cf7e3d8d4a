"""The pg_net stand-in's sender alone: CPU per request and wake-to-send latency. JSON lines.

A throwaway cluster (its `net` stand-in), a no-op HTTP target on 127.0.0.1 in this process, and
the sender as the daemon runs it (`python -m supaqueue.local_stack.net_sender DSN`, as the
superuser). For
each load it commits `net.http_post` calls and prints the sender process's CPU ms per request
(from /proc) and commit → request-arrival p50/p95:

- `idle`: one request per transaction at --rate per second (each one its own wake, as on an idle
  queue: the fixed cost per wake dominates);
- `burst`: --burst requests in one transaction (one batch; the cost per request of a busy queue).

`--baseline REF` runs the sender of git REF too (its local_stack/, same venv), alternating with
this one's on the same database, so before and after come from the same run.

Usage: python benchmarks/net_sender_bench.py [--requests 200] [--rate 20] [--burst 1000]
                                             [--rounds 3] [--baseline main]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import psycopg
from aiohttp import web
from gateway_bench import checkout
from proc_cpu import own_seconds

from supaqueue.local_stack.postgres import Cluster, free_port

REPO = Path(__file__).resolve().parents[1]


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


class Target:
    """A no-op HTTP server in a thread of its own, noting when each request arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    async def _hit(self, request: web.Request) -> web.Response:
        self.arrived[request.query.get("n", "")] = time.time()
        await request.read()
        return web.json_response({"ok": True})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hit", self._hit)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def sender(root: Path, dsn: str) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supaqueue.local_stack.net_sender", dsn],
        cwd=root, env=env, stdin=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"net sender ready" not in _read(log):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the sender of {root} did not start: {_read(log)[-500:]!r}")
            time.sleep(0.05)
        yield proc
    finally:
        log.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _read(log: IO[bytes]) -> bytes:
    log.seek(0)
    return log.read()


def wait_arrived(target: Target, tags: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t in target.arrived for t in tags):
            return
        time.sleep(0.02)
    raise BenchError(f"{sum(t not in target.arrived for t in tags)} requests never arrived")


def measure(
    name: str, proc: subprocess.Popen[bytes], conn: psycopg.Connection, target: Target,
    load: str, args: argparse.Namespace, round_no: int,
) -> dict[str, Any]:  # fmt: skip
    url = f"http://127.0.0.1:{target.port}/hit"
    count = args.requests if load == "idle" else args.burst
    tags = [f"{name}-{load}-{round_no}-{i}" for i in range(count)]
    committed: dict[str, float] = {}
    before = own_seconds(proc.pid)
    if load == "idle":
        started = time.monotonic()
        for i, tag in enumerate(tags):
            pause = started + i / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            conn.execute("select net.http_post(%s, '{}'::jsonb)", (f"{url}?n={tag}",))
            committed[tag] = time.time()
    else:
        with conn.transaction():
            for tag in tags:
                conn.execute("select net.http_post(%s, '{}'::jsonb)", (f"{url}?n={tag}",))
        at = time.time()
        committed = dict.fromkeys(tags, at)
    wait_arrived(target, tags)
    time.sleep(1.2)  # the sender's next round (upstream's 1 s wait) belongs to this load too
    cpu_ms = (own_seconds(proc.pid) - before) * 1000
    millis = sorted((target.arrived[t] - committed[t]) * 1000 for t in tags)
    return {
        "bench": "net_sender", "sender": name, "load": load, "requests": count,
        "sender_cpu_ms_per_request": round(cpu_ms / count, 4),
        "commit_to_arrival_p50_ms": round(statistics.median(millis), 2),
        "commit_to_arrival_p95_ms": round(statistics.quantiles(millis, n=20)[-1], 2),
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        roots = [("current", REPO)]
        if args.baseline:
            roots.append((args.baseline, stack.enter_context(checkout(args.baseline))))
        cluster = stack.enter_context(Cluster.temporary(prefix="supaqueue-sender-bench-"))
        target = Target()
        target.start()
        stack.callback(target.stop)
        conn = stack.enter_context(psycopg.connect(cluster.dsn("postgres"), autocommit=True))
        dsn = cluster.dsn("postgres", user=cluster.admin_user)  # as the stack runs it
        emit({"bench": "net_sender_setup", "requests": args.requests, "rate_per_s": args.rate,
              "burst": args.burst, "rounds": args.rounds,
              "senders": [n for n, _ in roots]})  # fmt: skip
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_no in range(args.rounds):
            for load in ("idle", "burst"):
                for name, root in roots:  # alternated: others' load hits both alike
                    with sender(root, dsn) as proc:
                        figures = measure(name, proc, conn, target, load, args, round_no)
                    emit(figures)
                    results.setdefault((name, load), []).append(figures)
                    conn.execute("delete from net._http_response")
        keys = ("sender_cpu_ms_per_request", "commit_to_arrival_p50_ms",
                "commit_to_arrival_p95_ms")  # fmt: skip
        for (name, load), rows in results.items():
            medians = {k: round(statistics.median(r[k] for r in rows), 4) for k in keys}
            emit({"bench": "net_sender_median", "sender": name, "load": load,
                  "rounds": len(rows), **medians})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="requests of the idle load")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s of the idle load")
    parser.add_argument("--burst", type=int, default=1000, help="requests of the burst load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="also run the sender of this git ref, alternated")
    args = parser.parse_args(argv)
    if not (2 <= args.requests <= 100_000 and 0 < args.rate <= 1000
            and 2 <= args.burst <= 100_000 and 1 <= args.rounds <= 20):  # fmt: skip
        parser.error("2 <= --requests, --burst <= 100000; 0 < --rate <= 1000; 1 <= --rounds <= 20")
    try:
        return run(args)
    except (BenchError, psycopg.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
