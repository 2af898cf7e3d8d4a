"""Never more calls in flight than workers, with 8 connections enqueueing at once."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from harness.engine import Engine

WORKERS = 3
ENQUEUERS = 8
JOBS_PER_ENQUEUER = 40


def test_in_flight_never_exceeds_workers_under_concurrent_enqueuers(
    engine_dsn: str, engine: Engine
) -> None:
    q = engine.queue(workers=WORKERS)
    stop = threading.Event()
    errors: list[BaseException] = []
    samples: list[int] = []
    barrier = threading.Barrier(ENQUEUERS)

    def enqueuer(n: int) -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                barrier.wait()
                for i in range(JOBS_PER_ENQUEUER):
                    if i % 4 == 0:  # a small multi-row INSERT in one statement
                        conn.execute(
                            "insert into supaqueue.job (queue, payload)"
                            " select %s, jsonb_build_object('n', %s, 'k', k)"
                            " from generate_series(1, 2) k",
                            (q, n),
                        )
                    elif i % 2 == 0:
                        conn.execute("select supaqueue.enqueue(%s, %s)", (q, Jsonb({"n": n})))
                    else:
                        with conn.transaction():  # two jobs in one transaction
                            for _ in range(2):
                                conn.execute(
                                    "insert into supaqueue.job (queue, payload) values (%s, %s)",
                                    (q, Jsonb({"n": n})),
                                )
        except BaseException as exc:
            errors.append(exc)

    def completer() -> None:
        # plays the Edge Function: reports every lease it sees, while the enqueuers run
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    rows = conn.execute("select id from supaqueue.current_job").fetchall()
                    for (cj,) in rows:
                        conn.execute("select supaqueue.end_current_job(%s, true, true, 200)", (cj,))
                    if not rows:
                        time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "select count(*) from supaqueue.current_job c"
                        " join supaqueue.worker w on w.id = c.worker where w.queue = %s",
                        (q,),
                    ).fetchone()
                    assert row is not None
                    samples.append(int(row[0]))
        except BaseException as exc:
            errors.append(exc)

    enqueuers = [threading.Thread(target=enqueuer, args=(n,)) for n in range(ENQUEUERS)]
    helpers = [threading.Thread(target=completer), threading.Thread(target=monitor)]
    for t in [*helpers, *enqueuers]:
        t.start()
    for t in enqueuers:
        t.join(timeout=120)
    # Let the completer drain the backlog; the tick covers a commit that raced a dispatch.
    expected = ENQUEUERS * (JOBS_PER_ENQUEUER // 4 * 2 + JOBS_PER_ENQUEUER // 4
                            + JOBS_PER_ENQUEUER // 2 * 2)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = engine.one("select count(*) from supaqueue.job where status = 'success'")
        if done == expected:
            break
        engine.tick()
        time.sleep(0.05)
    stop.set()
    for t in helpers:
        t.join(timeout=30)
    assert not errors, errors

    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == expected
    assert done == expected, f"{done} of {expected} jobs succeeded"
    assert max(samples) <= WORKERS
    assert max(samples) == WORKERS, "the workers should all have been busy at some point"
    # Exactly one attempt per job, and the attempts' own intervals never overlap more than WORKERS.
    assert engine.one("select count(*) from supaqueue.job_attempt") == expected
    assert engine.one("select max(attempts) from supaqueue.job") == 1
    overlap = engine.one(
        "select max(open) from (select sum(d) over (order by t, d) as open from ("
        "  select started_at as t, 1 as d from supaqueue.job_attempt"
        "  union all select ended_at, -1 from supaqueue.job_attempt) e) s"
    )
    assert overlap <= WORKERS
    assert engine.one("select count(*) from supaqueue.worker where locked") == 0
