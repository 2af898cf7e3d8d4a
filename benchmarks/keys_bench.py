"""Keys benchmark on the local stack (issue 26 items 1, 2 and 4). Prints one JSON line per
measurement.

Same stack and install as benchmarks/e2e_bench.py (the real `supaqueue` function, a no-op
target, pg_cron ticking, chaining on), then:

- keys_throughput: one INSERT of --jobs jobs into a queue of --workers workers, spread over
  1, 1,000 and 10,000 keys (`workers_per_key` --workers-per-key; the 1-key run has no per-key
  limit, or its key could use only that many workers), and without keys (the path of queues that
  have none), in one run: jobs/s end to end, each as a ratio to the 1-key figure (goal >= 0.9),
  and Postgres CPU per job (dispatch cost must not grow with the number of keys).
- keys_fairness: queue workers 20, workers_per_key 10. Key B enqueues 10 jobs alone, then key A
  enqueues --a-jobs jobs and, once A's calls are running, B enqueues 10 more: B's enqueue → done
  p95 with and without A's backlog (goal: within 2x of B alone). Method (since issue 26's
  fairness work): one B round first, not counted (the queue's and key B's first dispatch);
  then --rounds rounds of B alone, --rounds rounds behind A (each round once the last one is
  done, 0.3 s apart), A's backlog cancelled and its calls ended, --rounds rounds of B alone
  again: an alone figure on each side of the behind one, in the same sitting. One round of 10
  jobs made p95 an extrapolation past the largest of 10 correlated samples. The ratio is
  against the lower of the two alone p95s, so that neither side's slowing (A's dead rows being
  vacuumed, others' load) flatters it. Per stage, medians: enqueue → lease (the dispatch:
  `job_attempt.started_at`, in the enqueue when a worker is free), lease → target (the no-op
  target answers with the time the call arrived: the enqueue's commit, pg_net, the dispatcher,
  its claim, the call through the gateway), target → report (the answer back to the
  dispatcher and its report's start, `finished_at`). Last, the control: --rounds rounds of B
  alone beside one busy-loop process per core (no A): behind_over_beside_cpu_hogs near 1 means
  B's wait behind A is the machine's CPU shared with A's calls (every stage slows), not a wait
  for A's backlog.

The fairness run is made once per --target-ms value (default 0,20): 0 is the no-op target, as
in the throughput runs, where B's calls share the two cores with A's as fast as they go (the
control tells how much of B's wait that is); 20 is a target that answers after 20 ms of waiting
(benchmarks/slow_target: an API call's wait, no CPU), for A's and B's jobs alike, so the ratio
measures the dispatch order more than the machine's CPU.

Usage: python benchmarks/keys_bench.py [--jobs 10000] [--keys 1,1000,10000] [--workers 50]
                                       [--workers-per-key 2] [--a-jobs 50000] [--rounds 5]
                                       [--target-ms 0,20] [--fairness-only] [--keep]
Small runs: --jobs 2000 --a-jobs 2000; fairness alone: --fairness-only --a-jobs 20000.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from cli_args import int_list
from e2e_bench import (
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

TARGET = "noop-target"
# --target-ms > 0: a target that answers after that long (waiting, not computing)
SLOW_TARGET = "slow-target"
SLOW_TARGET_DIR = Path(__file__).resolve().with_name("slow_target")
TARGET_RATIO = 0.9
TARGET_FAIRNESS = 2.0
B_JOBS = 10
ROUND_GAP_S = 0.3


def keyed_queue(
    conn: psycopg.Connection, name: str, workers: int, per_key: int | None, target: str = TARGET
) -> str:
    row = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name, max_attempts, workers_per_key)"
        " values (%s, %s, 1, %s) returning id::text",
        (name, target, per_key),
    ).fetchone()
    assert row is not None
    conn.execute("select supaqueue.set_worker_count(%s, %s)", (row[0], workers))
    return str(row[0])


def throughput(
    stack: Stack, conn: psycopg.Connection, keys: int | None, args: argparse.Namespace
) -> dict[str, float]:
    per_key = args.workers_per_key if keys is not None and keys > 1 else None
    queue = keyed_queue(conn, f"bench-keys-{keys}-{uuid.uuid4().hex[:6]}", args.workers, per_key)
    before = read(stack, conn)
    started = time.monotonic()
    conn.execute(
        "insert into supaqueue.job (queue, payload, key)"
        " select %s, jsonb_build_object('i', g), case when %s::int is not null"
        " then 'k' || (g %% %s::int) end from generate_series(1, %s) g",
        (queue, keys, keys or 1, args.jobs),
    )
    # the INSERT's own time (its triggers make the keys due and dispatch the first calls): part
    # of the jobs/s figure, apart here as it grows with the keys of one statement
    insert_s = time.monotonic() - started
    wait_done(conn, queue, timeout=max(600.0, args.jobs / 10))
    after = read(stack, conn)
    check_succeeded(conn, queue, args.jobs)
    row = conn.execute(
        "select extract(epoch from max(finished_at) - min(created_at))::float8"
        " from supaqueue.job where queue = %s",
        (queue,),
    ).fetchone()
    assert row is not None
    figures = per_job(before, after, args.jobs)
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))
    return {
        "seconds": round(float(row[0]), 2),
        "insert_seconds": round(insert_s, 3),
        "jobs_per_s": round(args.jobs / float(row[0]), 1),
        "postgres_cpu_ms_per_job": figures["postgres_cpu_ms_per_job"],
        "pg_net_requests_per_job": figures["pg_net_requests_per_job"],
        "machine_busy_fraction": figures["machine_busy_fraction"],
    }


def b_round(conn: psycopg.Connection, queue: str, target_ms: int) -> list[dict[str, float]]:
    """Key B enqueues B_JOBS jobs in one call; once all are done, per job: enqueue → done (the
    goal's figure: `finished_at - created_at`, both the database's clock) and where the time
    went: enqueue → lease (`job_attempt.started_at`: the dispatch), lease → target (the no-op
    target answers with the time the call arrived: pg_net, the dispatcher, its claim, the call
    through the gateway), target → report (the answer back, the report's start)."""
    payload = {"sleep_ms": target_ms} if target_ms else {}
    ids = conn.execute(
        "select unnest(supaqueue.enqueue_batch(name, %s, _keys => array_fill('B'::text, %s)))"
        " from supaqueue.queue where id = %s",
        (psycopg.types.json.Jsonb([payload] * B_JOBS), [B_JOBS], queue),
    ).fetchall()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = conn.execute(
            "select count(*) filter (where finished_at is null) from supaqueue.job"
            " where id = any(%s::uuid[])",
            ([i[0] for i in ids],),
        ).fetchone()
        if row == (0,):
            break
        time.sleep(0.02)
    else:
        raise BenchError("key B's jobs did not finish within 300 s")
    rows = conn.execute(
        "select extract(epoch from j.finished_at - j.created_at)::float8 * 1000,"
        " extract(epoch from a.started_at - j.created_at)::float8 * 1000,"
        " (j.result->>'received_at_ms')::float8 - extract(epoch from a.started_at)::float8 * 1000,"
        " extract(epoch from j.finished_at)::float8 * 1000 - (j.result->>'received_at_ms')::float8"
        " from supaqueue.job j join supaqueue.job_attempt a on a.job = j.id"
        " where j.id = any(%s::uuid[])",
        ([i[0] for i in ids],),
    ).fetchall()
    return [{"total": r[0], "to_lease": r[1], "lease_to_target": r[2], "target_to_report": r[3]}
            for r in rows]  # fmt: skip


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def b_rounds(
    conn: psycopg.Connection, queue: str, rounds: int, target_ms: int
) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []
    for _ in range(rounds):
        time.sleep(ROUND_GAP_S)  # the last round's reports and chains are over
        samples += b_round(conn, queue, target_ms)
    return samples


def figures(samples: list[dict[str, float]], prefix: str) -> dict[str, float]:
    totals = [s["total"] for s in samples]
    out = {f"{prefix}_p50_ms": round(statistics.median(totals), 1),
           f"{prefix}_p95_ms": round(p95(totals), 1)}  # fmt: skip
    for stage in ("to_lease", "lease_to_target", "target_to_report"):
        out[f"{prefix}_{stage}_p50_ms"] = round(statistics.median(s[stage] for s in samples), 1)
    return out


def fairness(conn: psycopg.Connection, args: argparse.Namespace, target_ms: int) -> None:
    target = SLOW_TARGET if target_ms else TARGET
    queue = keyed_queue(conn, f"bench-fair-{uuid.uuid4().hex[:6]}", 20, 10, target)
    # not counted: the queue's and key B's first dispatch (its key row is made)
    b_round(conn, queue, target_ms)
    alone = b_rounds(conn, queue, args.rounds, target_ms)
    conn.execute(
        "insert into supaqueue.job (queue, payload, key)"
        " select %s, case when %s::int > 0 then jsonb_build_object('i', g, 'sleep_ms', %s::int)"
        " else jsonb_build_object('i', g) end, 'A' from generate_series(1, %s) g",
        (queue, target_ms, target_ms, args.a_jobs),
    )
    # A's calls running and its backlog queued before B comes
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = conn.execute(
            "select count(*) from supaqueue.job where queue = %s and key = 'A'"
            " and status = 'success'",
            (queue,),
        ).fetchone()
        if row is not None and row[0] >= 20:
            break
        time.sleep(0.05)
    backlog = conn.execute(
        "select count(*) from supaqueue.job where queue = %s and key = 'A' and status = 'pending'",
        (queue,),
    ).fetchone()
    requests = pg_net_requests(conn)
    behind = b_rounds(conn, queue, args.rounds, target_ms)
    # A's jobs that went through pg_net while B was behind it (B's own are one each): the rest
    # were chained
    a_requests = pg_net_requests(conn) - requests - len(behind)
    backlog_after = conn.execute(
        "select count(*) from supaqueue.job where queue = %s and key = 'A' and status = 'pending'",
        (queue,),
    ).fetchone()
    # A's backlog is discarded once B is done (cancelled: running calls end as usual), then B
    # alone again: an alone figure on each side of the behind one, in the same sitting
    conn.execute("select supaqueue.cancel_jobs(%s)", (queue,))
    wait_idle(conn, queue)
    after = b_rounds(conn, queue, args.rounds, target_ms)
    # The control: B alone while one busy loop per core takes the CPU that A's calls took (no
    # backlog, no other key): what B's latency owes to CPU contention on this machine, whatever
    # the dispatch order. behind / beside_hogs near 1 says the rest of the wait is not fairness.
    with cpu_hogs():
        beside = b_rounds(conn, queue, args.rounds, target_ms)
    # the goal's ratio against the lower of the two alone figures: never flattered by an alone
    # side slowed by something else (A's dead rows being vacuumed, others' load)
    alone_p95 = min(p95([s["total"] for s in alone]), p95([s["total"] for s in after]))
    ratio = p95([s["total"] for s in behind]) / alone_p95
    emit({"bench": "keys_fairness", "target": target, "target_ms": target_ms,
          "workers": 20, "workers_per_key": 10, "a_jobs": args.a_jobs,
          "a_backlog_when_b_came": backlog[0] if backlog else None,
          "a_backlog_after_b": backlog_after[0] if backlog_after else None,
          "a_pg_net_requests_per_job_behind": round(a_requests / (backlog[0] - backlog_after[0]), 3)
          if backlog and backlog_after and backlog[0] > backlog_after[0] else None,
          "b_jobs": B_JOBS, "rounds": args.rounds,
          "b_alone_samples": len(alone) + len(after), "b_behind_samples": len(behind),
          "b_alone_p95_ms": round(alone_p95, 1),
          **figures(alone, "b_alone_before"), **figures(after, "b_alone_after"),
          **figures(behind, "b_behind_a"), **figures(beside, "b_beside_cpu_hogs"),
          "cpu_hogs": os.cpu_count() or 1,
          "behind_over_beside_cpu_hogs": round(
              p95([s["total"] for s in behind]) / p95([s["total"] for s in beside]), 2),
          "ratio": round(ratio, 2), "target_max_ratio": TARGET_FAIRNESS,
          "ok": ratio <= TARGET_FAIRNESS})  # fmt: skip
    # the last calls over before the queue goes (their reports would find it gone: noise in the
    # function's log, nothing else)
    wait_idle(conn, queue)
    conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))


@contextlib.contextmanager
def cpu_hogs(limit_s: float = 120.0) -> Iterator[None]:
    """One busy-loop process per core for the block's duration (each stops by itself after
    limit_s at the latest)."""
    code = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)  # running before B's first round
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def pg_net_requests(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "select case when is_called then last_value else 0 end from net.http_request_queue_id_seq"
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_idle(conn: psycopg.Connection, queue: str) -> None:
    """Until no call of the queue runs (no worker locked)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = conn.execute(
            "select exists (select 1 from supaqueue.worker where queue = %s and locked)", (queue,)
        ).fetchone()
        if row == (False,):
            return
        time.sleep(0.1)
    raise BenchError(f"calls of queue {queue} still running after 120 s")


def run(args: argparse.Namespace) -> int:
    with local_stack(args.keep) as stack:
        install(stack)
        with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
            warm_up(conn)
            emit({"bench": "keys_setup", "jobs": args.jobs, "keys": args.keys,
                  "workers": args.workers, "workers_per_key": args.workers_per_key,
                  "a_jobs": args.a_jobs})  # fmt: skip
            results: dict[str, dict[str, float]] = {}
            for keys in [] if args.fairness_only else [None, *args.keys]:
                label = "none" if keys is None else str(keys)
                results[label] = throughput(stack, conn, keys, args)
            reference = results.get("1")
            for label, figures in results.items():
                ratio = figures["jobs_per_s"] / reference["jobs_per_s"] if reference else None
                cpu_ratio = (
                    figures["postgres_cpu_ms_per_job"] / reference["postgres_cpu_ms_per_job"]
                    if reference and reference["postgres_cpu_ms_per_job"]
                    else None
                )
                emit({"bench": "keys_throughput", "keys": label, "workers": args.workers,
                      "workers_per_key": args.workers_per_key if label not in ("none", "1")
                      else None, "jobs": args.jobs, **figures,
                      "ratio_to_1_key": round(ratio, 3) if ratio is not None else None,
                      "postgres_cpu_ratio_to_1_key":
                          round(cpu_ratio, 3) if cpu_ratio is not None else None,
                      "target_min_ratio": TARGET_RATIO,
                      "ok": ratio is not None and ratio >= TARGET_RATIO})  # fmt: skip
            if any(args.target_ms):
                stack.deploy(SLOW_TARGET, SLOW_TARGET_DIR, verify_jwt=True)
            for target_ms in args.target_ms:
                fairness(conn, args, target_ms)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    parser.add_argument(
        "--keys", type=int_list("--keys", 1), default=[1, 1000, 10_000], help="e.g. 1,1000"
    )
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--workers-per-key", type=int, default=2)
    parser.add_argument("--a-jobs", type=int, default=50_000, help="key A's backlog (fairness)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="fairness: rounds of key B's jobs alone (before and after A) and"
                        " behind A")  # fmt: skip
    parser.add_argument("--target-ms", type=int_list("--target-ms", 0, 10_000), default=[0, 20],
                        help="fairness runs, one per value: the target answers after this long"
                        " (0: the no-op target); e.g. 0,20")  # fmt: skip
    parser.add_argument("--fairness-only", action="store_true", help="skip keys_throughput")
    parser.add_argument("--keep", action="store_true", help="keep the local stack (debugging)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.a_jobs < 1 or not 1 <= args.workers <= 1000:
        parser.error("--jobs >= 1, --a-jobs >= 1, 1 <= --workers <= 1000")
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds: 1..100")
    if not 1 <= args.workers_per_key <= 1000:
        parser.error("--workers-per-key: 1..1000")
    try:
        return run(args)
    except (BenchError, psycopg.Error, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
