"""Cost that does not grow with backlog or history (issue 26, item 4). One JSON line per figure.

- `scaling`: Postgres time per job of the completion path (`end_current_job`: report + the next
  dispatch) and of the claim, on one connection, with 1k, 100k and 1M pending jobs in the queue,
  half of them delayed (`run_at` a day away), and the ratio of each size to the smallest (goal:
  flat, <= 1.3); and the smallest backlog again behind `--history` finished jobs (history must
  not slow dispatch);
- `soak`: N jobs through one queue with a retention window, SQL-level with a no-op completion
  (a chaining dispatcher's `report_and_claim`, one transaction per job), the tick every second and
  retention as it runs in production (`--prune batched`: `supaqueue.prune_history()` every 10 s,
  the cron job `supaqueue-retention`; `--prune legacy`: the tick's 5,000-row delete of before
  0029, for comparison). Per tenth of the run: jobs/s, the job / job_attempt tables' size and rows,
  dead tuples, Postgres CPU per job (the whole cluster: autovacuum and retention included; unlike
  jobs/s it does not move with other work on a shared machine), and the tick's duration (which
  delays the tick's dispatches: pg_net sends them at its commit). Goals: jobs/s of the last tenth
  >= 0.9 x the first (and CPU per job of the first >= 0.9 x the last); sizes bounded.
  SQL-level rather than end to end: the local stack's ~1,100 jobs/s end to end would make 2M jobs
  take over 30 minutes of five engineers' two cores, and what grows with history is Postgres work.

Starts its own temporary cluster (durable settings) with autovacuum at Postgres's defaults (as on
hosted Supabase, whose settings supaqueue does not change), and removes it afterwards.
Usage:
  python benchmarks/history_bench.py scaling [--sizes 1000,100000,1000000] [--history 1000000]
  python benchmarks/history_bench.py soak [--jobs 2000000 --retention 600] [--prune legacy]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from engine_bench import Lane, bench_database, emit, new_queue, report_failure, settle
from proc_cpu import TICK_S

from harness.procs import children

HELPERS = Path(__file__).with_name("history_bench.sql")


# --- scaling ----------------------------------------------------------------------------------

PLANS = {
    "probe": "select j.priority, j.run_at, j.id from supaqueue.job j where j.queue = %s"
    " and j.status = 'pending' and j.pending_dependencies = 0"
    " order by j.priority desc, j.run_at, j.id limit 1",
    "selection": "select * from supaqueue.job where queue = %s and status = 'pending'"
    " and pending_dependencies = 0 and priority = 0 and run_at <= now()"
    " order by run_at, id limit 1 for update skip locked",
}


def scaling(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with bench_database("supaqueue-history-", False) as (_cluster, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Each completion commits: durable, its fsync (~5-8 ms on this shared disk) would be
            # most of the figure and hide what the backlog changes.
            conn.execute("set synchronous_commit = off")
            lanes: list[Lane] = []
            for size in sizes:
                started = time.perf_counter()
                # half ready (behind the workers), half delayed: `size` pending jobs in all
                lane = Lane(conn, size // 2, args.completions)
                conn.execute(
                    "insert into supaqueue.job (queue, payload, run_at)"
                    " select %s, jsonb_build_object('i', g), now() + interval '1 day'"
                    " from generate_series(1, %s) g",
                    (lane.queue, size - size // 2),
                )
                emit({"bench": "scaling_load", "pending": size,
                      "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
                lanes.append(lane)
            # the smallest backlog again, behind `--history` finished jobs (one attempt each)
            started = time.perf_counter()
            conn.execute(  # Lane names its queue by its size
                "update supaqueue.queue set name = name || '-plain' where id = %s",
                (lanes[0].queue,),
            )
            lane = Lane(conn, sizes[0] // 2, args.completions)
            conn.execute(
                "with j as (insert into supaqueue.job (queue, status, attempts, finished_at)"
                " select %s, 'success', 1, now() - g * interval '1 ms'"
                " from generate_series(1, %s) g returning id, queue, finished_at)"
                " insert into supaqueue.job_attempt (job, queue, attempt, started_at, ended_at,"
                " outcome) select id, queue, 1, finished_at, finished_at, 'success' from j",
                (lane.queue, args.history),
            )
            emit({"bench": "scaling_load", "pending": sizes[0], "finished": args.history,
                  "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
            lanes.append(lane)
            settle(conn)
            # The first leases were dispatched before minutes of loading: not expired for the bench
            conn.execute(
                "update supaqueue.current_job set lease_expires_at = now() + interval '1 hour'"
            )
            for lane in lanes:
                lane.complete(50, timed=False)
            rounds = 5
            for i in range(rounds):  # interleaved: load elsewhere hits every size alike
                share = args.completions // rounds + (1 if i < args.completions % rounds else 0)
                for lane in lanes:
                    lane.complete(share)
            results = []
            for size, finished, lane in zip(
                [*sizes, sizes[0]], [0] * len(sizes) + [args.history], lanes, strict=True
            ):
                row = lane.result()
                row.update({"bench": "scaling", "pending": size, "finished": finished})
                results.append(row)
                emit(row)
            # _dispatch's priority probe and selection (40_dispatch.sql) at the largest backlog
            for name, query in PLANS.items():
                plan = conn.execute(
                    f"explain (analyze, buffers, costs off) {query}", (lanes[len(sizes) - 1].queue,)
                ).fetchall()
                emit({"bench": "scaling_plan", "query": name, "pending": sizes[-1],
                      "plan": " | ".join(r[0].strip() for r in plan)})  # fmt: skip
    base = results[0]
    for row in results[1:]:
        for key in ("mean_ms", "claim_mean_ms", "per_job_mean_ms"):
            ratio = row[key] / base[key]
            name = f"{key}_{row['pending']}_over_{base['pending']}"
            if row["finished"]:
                name = f"{key}_{row['pending']}_with_{row['finished']}_finished_over_without"
            emit({"bench": "ratio", "name": name,
                  "value": round(ratio, 3), "target_max": 1.3, "ok": ratio <= 1.3})  # fmt: skip
    return 0


# --- soak -------------------------------------------------------------------------------------


class Background(threading.Thread):
    """What pg_cron runs meanwhile: the tick every second and retention (its own connection)."""

    def __init__(self, dsn: str, prune: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.prune = prune
        self.stop = threading.Event()
        self.ticks: list[float] = []  # seconds per tick
        self.prunes: list[float] = []  # seconds per retention run (batched)
        self.pruned = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                next_prune = time.monotonic() + 10
                while not self.stop.wait(1.0):
                    started = time.perf_counter()
                    if self.prune == "legacy":
                        with conn.transaction():  # one transaction, as the tick was
                            conn.execute("select supaqueue.tick()")
                            row = conn.execute("select supaqueue_bench.legacy_prune()").fetchone()
                        self.pruned += int(row[0]) if row else 0
                    else:
                        conn.execute("select supaqueue.tick()")
                    self.ticks.append(time.perf_counter() - started)
                    if self.prune == "batched" and time.monotonic() >= next_prune:
                        started = time.perf_counter()
                        row = conn.execute("call supaqueue.prune_history()").fetchone()
                        self.prunes.append(time.perf_counter() - started)
                        self.pruned += int(row[0]) if row else 0
                        next_prune = time.monotonic() + 10
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def take_ticks(self) -> list[float]:
        taken, self.ticks = self.ticks, []
        return taken


SIZES = """
select pg_total_relation_size('supaqueue.job'), pg_total_relation_size('supaqueue.job_attempt'),
       (select count(*) from supaqueue.job), (select count(*) from supaqueue.job_attempt),
       (select n_dead_tup from pg_stat_user_tables where relid = 'supaqueue.job'::regclass),
       (select autovacuum_count from pg_stat_user_tables where relid = 'supaqueue.job'::regclass)
"""


def table_sizes(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(SIZES).fetchone()
    assert row is not None
    job_b, attempt_b, jobs, attempts, dead, autovacuums = row
    return {"job_mb": round(job_b / 2**20, 1), "job_attempt_mb": round(attempt_b / 2**20, 1),
            "job_rows": jobs, "job_attempt_rows": attempts, "job_dead_tuples": dead,
            "job_autovacuums": autovacuums}  # fmt: skip


def cluster_cpu_s(postmaster: int) -> float:
    """CPU seconds of the whole cluster so far: its processes alive now, and those that ended
    (autovacuum workers: counted in the postmaster's cutime/cstime once reaped). The machine is
    shared, so jobs/s moves with other work; Postgres CPU per job does not."""

    def times(pid: int, reaped: bool) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0  # ended since listed: counted in the postmaster's cutime
        ticks = int(fields[11]) + int(fields[12])
        if reaped:
            ticks += int(fields[13]) + int(fields[14])
        return ticks * TICK_S

    return times(postmaster, True) + sum(times(c, False) for c in children(postmaster))


def ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def soak(args: argparse.Namespace) -> int:
    window = args.jobs // 10
    chunk = min(args.chunk, window)
    mark = min(args.size_mark, window * 5)
    with bench_database("supaqueue-soak-", False) as (cluster, dsn):
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(HELPERS.read_text())
            # One driver commits each job on its own: a durable commit each (an fsync, ~5 ms on
            # this disk) would measure the disk, not history. The tick and retention stay durable.
            conn.execute("set synchronous_commit = off")
            conn.execute("insert into supaqueue.settings values ('chain_max_jobs', '1000')")
            queue = new_queue(conn, "soak", 1)
            if args.job_autovacuum:
                # an experiment, not what supaqueue installs: per-table autovacuum options
                conn.execute(f"alter table supaqueue.job set ({args.job_autovacuum})")
            conn.execute(
                "update supaqueue.queue set retention_seconds = %s where id = %s",
                (args.retention, queue),
            )
            emit({"bench": "soak_setup", "jobs": args.jobs, "retention_s": args.retention,
                  "prune": args.prune, "chunk": chunk, "workers": 1,
                  "job_autovacuum": args.job_autovacuum})  # fmt: skip
            background = Background(dsn, args.prune)
            background.start()
            done = 0
            windows: list[dict[str, Any]] = []
            at_mark: dict[str, Any] | None = None
            started = time.perf_counter()
            try:
                while done < args.jobs:
                    window_started = time.perf_counter()
                    cpu_started = cluster_cpu_s(postmaster)
                    window_done = 0
                    while window_done < window and done < args.jobs:
                        conn.execute(
                            "insert into supaqueue.job (queue, payload) select %s,"
                            " jsonb_build_object('i', g) from generate_series(1, %s) g",
                            (queue, chunk),
                        )
                        row = conn.execute(
                            "call supaqueue_bench.drive(%s, %s)", (queue, chunk)
                        ).fetchone()
                        ran = int(row[0]) if row else 0
                        if ran < chunk:
                            raise RuntimeError(f"only {ran} of {chunk} jobs completed")
                        window_done += ran
                        done += ran
                        if at_mark is None and done >= mark:
                            at_mark = {"jobs_done": done, **table_sizes(conn)}
                        if background.error is not None:
                            raise RuntimeError(f"tick/retention failed: {background.error}")
                    seconds = time.perf_counter() - window_started
                    cpu_ms = (cluster_cpu_s(postmaster) - cpu_started) * 1000 / window_done
                    ticks = background.take_ticks()
                    record = {"bench": "soak_window", "window": len(windows) + 1,
                              "jobs_done": done, "jobs_per_s": round(window_done / seconds, 1),
                              "pg_cpu_ms_per_job": round(cpu_ms, 3),
                              "elapsed_s": round(time.perf_counter() - started, 1),
                              "tick_p50_ms": ms(ticks, 0.5), "tick_max_ms": ms(ticks, 1.0),
                              "pruned_total": background.pruned,
                              **table_sizes(conn)}  # fmt: skip
                    windows.append(record)
                    emit(record)
            finally:
                background.stop.set()
                background.join(timeout=120)
    first, last = windows[0], windows[-1]
    ratio = last["jobs_per_s"] / first["jobs_per_s"]
    emit({"bench": "ratio", "name": "soak_jobs_per_s_last_tenth_over_first",
          "value": round(ratio, 3), "target_min": 0.9, "ok": ratio >= 0.9})  # fmt: skip
    assert at_mark is not None
    # the same goal in CPU: jobs/s on a quiet machine is 1 / CPU per job
    cpu_ratio = first["pg_cpu_ms_per_job"] / last["pg_cpu_ms_per_job"]
    emit({"bench": "ratio", "name": "soak_pg_cpu_per_job_first_tenth_over_last",
          "value": round(cpu_ratio, 3), "target_min": 0.9, "ok": cpu_ratio >= 0.9})  # fmt: skip
    emit({"bench": "soak_sizes", "at_mark": at_mark, "at_end": {k: last[k] for k in at_mark}})
    end_mb = last["job_mb"] + last["job_attempt_mb"]
    mark_mb = at_mark["job_mb"] + at_mark["job_attempt_mb"]
    # bounded: the tables hold about rate x (retention + the 10 s between retention runs) jobs,
    # whatever the number of jobs run so far
    expected = last["jobs_per_s"] * (args.retention + 10)
    emit({"bench": "ratio", "name": "soak_table_mb_end_over_mark",
          "value": round(end_mb / mark_mb, 3),
          "job_rows_end_over_rate_x_retention": round(last["job_rows"] / expected, 3),
          "informational": True})  # fmt: skip
    emit(
        {
            "bench": "soak_prune_runs",
            "runs": len(background.prunes),
            "p50_ms": ms(background.prunes, 0.5),
            "max_ms": ms(background.prunes, 1.0),
            "mean_s": round(statistics.fmean(background.prunes), 3) if background.prunes else None,
        }
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    scale = sub.add_parser("scaling", help="dispatch/completion cost at 1k, 100k, 1M pending")
    scale.add_argument("--sizes", default="1000,100000,1000000")
    scale.add_argument("--completions", type=int, default=1000, help="timed completions per size")
    scale.add_argument("--history", type=int, default=1_000_000, help="finished jobs of one lane")
    run = sub.add_parser("soak", help="N jobs through one queue with a retention window")
    run.add_argument("--jobs", type=int, default=2_000_000)
    run.add_argument("--retention", type=int, default=600, help="retention_seconds of the queue")
    run.add_argument("--prune", choices=("batched", "legacy"), default="batched")
    run.add_argument("--chunk", type=int, default=5000, help="jobs enqueued at a time")
    run.add_argument("--size-mark", type=int, default=200_000, help="sizes compared at this job")
    run.add_argument(
        "--job-autovacuum",
        default="",
        help="experiment: storage options for supaqueue.job, e.g."
        " 'autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0'",
    )
    args = parser.parse_args(argv)
    if args.command == "scaling":
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers")
        if len(sizes) < 2 or min(sizes) < 2 or args.completions < 20:
            parser.error("--sizes needs two sizes >= 2 and --completions >= 20")
        return report_failure(scaling, args)
    if args.jobs < 1000 or args.retention < 0 or args.chunk < 1:
        parser.error("--jobs must be >= 1000, --retention >= 0, --chunk >= 1")
    return report_failure(soak, args)


if __name__ == "__main__":
    sys.exit(main())
