"""Database trouble while claiming or reporting (one retry policy for both, report.ts): retried
when it may heal, logged clearly, never a crash, never a target call without a claim, and never
a secret in the logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess, free_port
from harness.target_server import TargetServer
from supaqueue.local_stack.postgres import Cluster
from tests.edge.conftest import SERVICE_ROLE_KEY, deliver, function_env


def wait_events(
    fn: FunctionProcess, event: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in fn.events() if e.get("event") == event]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} {event} events not logged in {timeout}s:\n{fn.log()}")


def assert_no_secrets(fn: FunctionProcess, *secrets: str) -> None:
    log = fn.log()
    for secret in secrets:
        assert secret and secret not in log


def test_unreachable_database_is_retried_then_given_up(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    engine: Engine,
    dispatch_secret: str,
) -> None:
    password = "db-password-never-logged"
    db_url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/postgres"
    fn = start_function(function_env(target.url, db_url, dispatch_secret))
    d = engine.dispatch("db-down")
    assert deliver(fn, d).status_code == 202
    failures = wait_events(fn, "claim_failed", 5, timeout=30)
    assert [f["attempt"] for f in failures] == [1, 2, 3, 4, 5]
    assert all(f["transient"] is True for f in failures)
    assert [f["level"] for f in failures] == ["warn"] * 4 + ["error"]
    # Not claimed, so the target is never called; the lease is untouched (the engine's sweeper
    # will reclaim it), and the function still serves.
    assert target.requests_for("db-down") == []
    assert engine.lease_held(d.current_job_id)
    assert deliver(fn, engine.dispatch("db-down-again")).status_code == 202
    assert_no_secrets(fn, password, dispatch_secret, SERVICE_ROLE_KEY)


def test_database_without_supaqueue_is_not_retried(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    engine: Engine,
    dispatch_secret: str,
    pg_cluster: Cluster,
) -> None:
    """A permanent error (no such schema) is logged once, with its SQLSTATE, not retried."""
    fn = start_function(function_env(target.url, pg_cluster.dsn("postgres"), dispatch_secret))
    d = engine.dispatch("no-schema")
    assert deliver(fn, d).status_code == 202
    [failure] = wait_events(fn, "claim_failed", 1, timeout=60)
    time.sleep(1)
    assert len([e for e in fn.events() if e.get("event") == "claim_failed"]) == 1
    assert target.requests_for("no-schema") == []
    assert failure["transient"] is False and failure["level"] == "error"
    assert failure["code"] == "3F000"  # invalid_schema_name
    assert "supaqueue" in str(failure["message"])
    password = urlsplit(pg_cluster.dsn()).password
    assert password is not None
    assert_no_secrets(fn, password, dispatch_secret, SERVICE_ROLE_KEY)


def test_reports_after_a_database_restart_recover(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    engine: Engine,
    dispatch_secret: str,
    edge_db: str,
) -> None:
    """Pooled connections killed under the function (a restart): the next report reconnects."""
    fn = start_function(function_env(target.url, edge_db, dispatch_secret))
    first = engine.dispatch("before-restart")
    deliver(fn, first)
    engine.wait_attempts(first.job_id)
    engine.conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where application_name = 'supaqueue-edge' and datname = current_database()"
    )
    second = engine.dispatch("after-restart")
    assert deliver(fn, second).status_code == 202
    [attempt] = engine.wait_attempts(second.job_id, timeout=20)
    assert attempt["outcome"] == "success"
