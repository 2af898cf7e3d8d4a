"""How soon the `supaqueue` function answers pg_net (202) while calls are in flight.

The function answers before it claims the job or calls the target (pg_net waits for its
slowest request), so the answer must not wait for the jobs already running. Each round
delivers DISPATCHES dispatches back to back, as pg_net would, to a target that holds every call
open until the round ends; one JSON line per round and a summary (median of the rounds; target:
every answer within 0.5 s). Then how promptly a call is abandoned at its timeout: the
recorded attempt's duration past TIMEOUT_MS, for a target that never answers in time (one JSON
line; target: within TIMEOUT_OVERSHOOT_MAX_MS). The behaviour itself is pinned by
tests/edge/test_outcomes.py, without a clock. Real Postgres, real Deno (the local stack's Edge
runtime bootstrap), a real loopback target; leaves nothing behind.

Usage: python benchmarks/dispatch_answer_bench.py [--rounds 3] [--dispatches 40]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
import uuid
from typing import Any

import httpx

from harness.edge_engine import Engine
from harness.engine import install
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer
from supaqueue.local_stack.postgres import Cluster

TARGET_MAX_SECONDS = 0.5
TIMEOUT_MS = 500
TIMEOUT_OVERSHOOT_MAX_MS = 500


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def one_round(fn: FunctionProcess, engine: Engine, target: TargetServer, count: int) -> list[float]:
    key = uuid.uuid4().hex[:12]
    dispatches = [engine.dispatch(f"hold-{key}", timeout_ms=60_000) for _ in range(count)]
    answers: list[float] = []
    try:
        for d in dispatches:
            started = time.monotonic()
            response = httpx.post(fn.url, content=d.body, headers=d.headers, timeout=30)
            answers.append(time.monotonic() - started)
            if response.status_code != 202:
                raise RuntimeError(f"dispatch answered {response.status_code}: {response.text}")
        target.wait_for(f"hold-{key}", count, timeout=60)
    finally:
        target.release(key)
    for d in dispatches:
        engine.wait_attempts(d.job_id, timeout=60)
    return sorted(answers)


def timeout_overshoots(
    fn: FunctionProcess, engine: Engine, target: TargetServer, count: int
) -> list[int]:
    """ms each timed-out attempt lasted past TIMEOUT_MS (the target holds every call)."""
    key = uuid.uuid4().hex[:12]
    dispatches = [engine.dispatch(f"hold-{key}", timeout_ms=TIMEOUT_MS) for _ in range(count)]
    try:
        for d in dispatches:
            response = httpx.post(fn.url, content=d.body, headers=d.headers, timeout=30)
            if response.status_code != 202:
                raise RuntimeError(f"dispatch answered {response.status_code}: {response.text}")
        attempts = [engine.wait_attempts(d.job_id, timeout=60)[0] for d in dispatches]
    finally:
        target.release(key)
    if any(a["outcome"] != "failure" for a in attempts):
        raise RuntimeError(f"a held call did not time out: {attempts}")
    return sorted(int(a["duration_ms"]) - TIMEOUT_MS for a in attempts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dispatches", type=int, default=40, help="calls in flight per round")
    args = parser.parse_args(argv)
    secret = secrets.token_hex(24)
    target = TargetServer().start()
    try:
        with Cluster.temporary(prefix="supaqueue-answer-bench-") as cluster:
            dsn = cluster.dsn("postgres")
            install(dsn, f"{target.url}/functions/v1", secret)
            env = {
                "SUPAQUEUE_SECRET": secret,
                "SUPABASE_URL": target.url,
                "SUPABASE_DB_URL": dsn,
                "SUPABASE_SERVICE_ROLE_KEY": "bench-" + secrets.token_hex(8),
            }
            fn = FunctionProcess("supaqueue", env).start()
            engine = Engine(dsn)
            try:
                one_round(fn, engine, target, 3)  # warm-up: the function's first claims
                worst: list[float] = []
                medians: list[float] = []
                for n in range(args.rounds):
                    answers = one_round(fn, engine, target, args.dispatches)
                    medians.append(statistics.median(answers))
                    worst.append(answers[-1])
                    emit({"bench": "dispatch_answer", "round": n + 1,
                          "in_flight": args.dispatches,
                          "p50_ms": round(medians[-1] * 1000, 1),
                          "max_ms": round(answers[-1] * 1000, 1)})  # fmt: skip
                emit({"bench": "dispatch_answer_summary", "rounds": args.rounds,
                      "in_flight": args.dispatches,
                      "p50_ms": round(statistics.median(medians) * 1000, 1),
                      "max_ms_median": round(statistics.median(worst) * 1000, 1),
                      "target_max_ms": TARGET_MAX_SECONDS * 1000,
                      "ok": statistics.median(worst) < TARGET_MAX_SECONDS})  # fmt: skip
                over = timeout_overshoots(fn, engine, target, 10)
                emit({"bench": "timeout_abandon", "timeout_ms": TIMEOUT_MS, "calls": len(over),
                      "p50_over_ms": statistics.median(over), "max_over_ms": over[-1],
                      "target_max_over_ms": TIMEOUT_OVERSHOOT_MAX_MS,
                      "ok": over[-1] <= TIMEOUT_OVERSHOOT_MAX_MS})  # fmt: skip
            finally:
                engine.close()
                fn.stop()
    finally:
        target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
