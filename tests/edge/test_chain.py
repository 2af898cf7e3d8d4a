"""Chained dispatch in the real function (issue #11): one pg_net dispatch runs a worker's jobs one
after another, each report claiming the next, until the queue is empty or the budget is spent;
then the worker is dispatched through pg_net again."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer, max_in_flight
from tests.edge.conftest import deliver, function_env


@pytest.fixture
def budget(engine: Engine) -> Iterator[Engine]:
    """Lets a test set the chain budget; the module's database is shared, so it is reset after."""
    yield engine
    engine.conn.execute(
        "delete from supaqueue.settings where key in ('chain_max_jobs', 'chain_max_seconds')"
    )


def set_budget(engine: Engine, **values: int) -> None:
    for key, value in values.items():
        engine.conn.execute(
            "insert into supaqueue.settings (key, value) values (%s, %s)"
            " on conflict (key) do update set value = excluded.value",
            (key, str(value)),
        )


def pg_net_requests(engine: Engine, queue_id: str) -> int:
    """Dispatches queued for pg_net for this queue's jobs (no sender runs in these tests)."""
    row = engine.conn.execute(
        "select count(*) as n from net.http_request_queue r"
        " join supaqueue.job j"
        "   on j.id = (convert_from(r.body, 'UTF8')::jsonb -> 'current_job' ->> 'job')::uuid"
        " where j.queue = %s",
        (queue_id,),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_one_dispatch_runs_the_workers_jobs_one_after_another(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    slug = f"chain-{uuid.uuid4().hex[:8]}"
    queue = engine.queue(slug, max_attempts=1)
    jobs = [engine.enqueue(queue, {"n": i}) for i in range(12)]
    assert pg_net_requests(engine, queue) == 1  # one worker: one dispatch
    first = engine.dispatched(jobs[0])
    assert deliver(supaqueue_fn, first).status_code == 202
    for job in jobs:
        [attempt] = engine.wait_attempts(job, timeout=60)
        assert attempt["outcome"] == "success", attempt
    calls = target.wait_for(slug, count=12)
    assert len(calls) == 12 and max_in_flight(calls) == 1  # never more than `workers`
    assert [c.json() for c in calls] == [{"n": i} for i in range(12)]  # queue order, once each
    assert pg_net_requests(engine, queue) == 1  # the other eleven went without pg_net
    # one summary line for the invocation's twelve jobs, none per successful job
    done = wait_event(supaqueue_fn, "dispatch_done", first.current_job_id)
    assert (done["jobs"], done["succeeded"], done["failed"]) == (12, 12, 0), done
    assert not [e for e in reported(supaqueue_fn) if e.get("job") in jobs]


def test_failed_jobs_are_logged_one_by_one_and_successes_summed_up(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """Every outcome is in the database; the log names each job that needs a look (here the two
    whose target answered 500) and sums up the invocation, not one line per success."""
    slug = f"payload-status-{uuid.uuid4().hex[:8]}"
    queue = engine.queue(slug, max_attempts=1)
    jobs = [engine.enqueue(queue, {"status": 500 if i in (1, 3) else 200}) for i in range(5)]
    lease = engine.dispatched(jobs[0])
    assert deliver(supaqueue_fn, lease).status_code == 202
    done = wait_event(supaqueue_fn, "dispatch_done", lease.current_job_id)
    assert (done["jobs"], done["succeeded"], done["failed"]) == (5, 3, 2), done
    logged = [e for e in reported(supaqueue_fn) if e.get("job") in jobs]
    assert sorted((e["job"], e["level"], e["status_code"]) for e in logged) == sorted(
        (jobs[i], "warn", 500) for i in (1, 3)
    )
    assert [int(str(e["chain_position"])) for e in logged] == [2, 4]
    assert all(e["lease_current"] is True and e["error"] for e in logged), logged
    outcomes = [engine.attempts(job)[0]["outcome"] for job in jobs]
    assert outcomes == ["success", "failure", "success", "failure", "success"]


def reported(fn: FunctionProcess) -> list[dict[str, object]]:
    return [e for e in fn.events() if e.get("event") == "job_reported"]


def wait_event(fn: FunctionProcess, event: str, current_job: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for e in fn.events():
            if e.get("event") == event and e.get("current_job") == current_job:
                return e
        time.sleep(0.05)
    raise AssertionError(f"no {event} for {current_job} in 60 s:\n{fn.log()}")


def test_the_jobs_budget_hands_the_worker_back_to_pg_net(
    supaqueue_fn: FunctionProcess, target: TargetServer, budget: Engine
) -> None:
    engine = budget
    set_budget(engine, chain_max_jobs=4)
    slug = f"chain-budget-{uuid.uuid4().hex[:8]}"
    queue = engine.queue(slug, max_attempts=1)
    jobs = [engine.enqueue(queue, {"n": i}) for i in range(6)]
    assert deliver(supaqueue_fn, engine.dispatched(jobs[0])).status_code == 202
    for job in jobs[:4]:
        assert engine.wait_attempts(job, timeout=60)[0]["outcome"] == "success"
    # the chain ended after four jobs: the fifth went to pg_net, and waits for it
    second = engine.dispatched(jobs[4])
    assert pg_net_requests(engine, queue) == 2
    assert engine.job(jobs[4])["status"] == "in_progress" and engine.attempts(jobs[4]) == []
    assert deliver(supaqueue_fn, second).status_code == 202
    for job in jobs[4:]:
        assert engine.wait_attempts(job, timeout=60)[0]["outcome"] == "success"
    assert len(target.requests_for(slug)) == 6


def test_a_job_whose_timeout_no_longer_fits_the_seconds_budget_goes_to_pg_net(
    supaqueue_fn: FunctionProcess, target: TargetServer, budget: Engine
) -> None:
    """The function passes its own age: 0.7 s spent + a 1.5 s timeout is over a 2 s budget."""
    engine = budget
    set_budget(engine, chain_max_seconds=2)
    queue = engine.queue("slow-700", max_attempts=1, timeout_ms=1500)
    first = engine.enqueue(queue, {"n": 1})
    follower = engine.enqueue(queue, {"n": 2})
    assert deliver(supaqueue_fn, engine.dispatched(first)).status_code == 202
    assert engine.wait_attempts(first, timeout=30)[0]["outcome"] == "success"
    engine.dispatched(follower)  # through pg_net, not chained
    assert engine.attempts(follower) == []


def test_before_the_migration_the_function_reports_without_chaining(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    pg_dsn: str,
    dispatch_secret: str,
) -> None:
    """`pulumi up` deploys the function before the migrations: against a database without
    report_and_claim it reports with end_current_job, one job per dispatch, nothing lost."""
    from supaqueue import migrations

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        every = migrations.load_migrations()
        # the migration that brings report_and_claim (its number may change when branches merge)
        chain = next(m.version for m in every if "report_and_claim(" in m.path.read_text())
        older = [m for m in every if m.version < chain]
        migrations.apply(conn, older)
        conn.execute(
            "insert into supaqueue.settings (key, value) values"
            " ('functions_url', 'http://127.0.0.1:1/functions/v1'), ('dispatcher_slug', 'x')"
        )
        conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (dispatch_secret,))
        assert conn.execute("select to_regproc('supaqueue.report_and_claim')").fetchone() == (None,)
    fn = start_function(function_env(target.url, pg_dsn, dispatch_secret))
    old = Engine(pg_dsn)
    try:
        slug = f"no-chain-{uuid.uuid4().hex[:8]}"
        queue = old.queue(slug, max_attempts=1)
        first, second = old.enqueue(queue, {"n": 1}), old.enqueue(queue, {"n": 2})
        assert deliver(fn, old.dispatched(first)).status_code == 202
        assert old.wait_attempts(first, timeout=30)[0]["outcome"] == "success"
        # the report freed the worker and the engine dispatched the next job through pg_net
        assert deliver(fn, old.dispatched(second)).status_code == 202
        assert old.wait_attempts(second, timeout=30)[0]["outcome"] == "success"
        assert [c.json() for c in target.requests_for(slug)] == [{"n": 1}, {"n": 2}]
        assert not [e for e in fn.events() if e.get("level") == "error"], fn.events()
    finally:
        old.close()


def test_a_stopping_worker_ends_its_chain_after_the_running_job(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    engine: Engine,
    edge_db: str,
    dispatch_secret: str,
) -> None:
    """SIGTERM (a redeploy; on Supabase, a worker near its limits) dispatches `beforeunload`: the
    chain stops after the job it is running, which is reported, and the worker goes back to
    pg_net for the rest; the process exits without waiting for the whole chain."""
    fn = start_function(function_env(target.url, edge_db, dispatch_secret))
    queue = engine.queue("slow-400", max_attempts=1)
    jobs = [engine.enqueue(queue, {"n": i}) for i in range(20)]
    assert deliver(fn, engine.dispatched(jobs[0])).status_code == 202
    engine.wait_attempts(jobs[1], timeout=30)  # the chain runs
    assert fn.proc is not None
    fn.proc.send_signal(signal.SIGTERM)
    assert fn.proc.wait(30) == 0
    ran = [job for job in jobs if engine.attempts(job)]
    assert 2 <= len(ran) < len(jobs)
    assert all(engine.attempts(job)[0]["outcome"] == "success" for job in ran)
    # nothing left running: the next job waits for pg_net (no sender runs here)
    assert engine.job(jobs[len(ran)])["status"] == "in_progress"
    engine.dispatched(jobs[len(ran)])
    assert pg_net_requests(engine, queue) == 2
