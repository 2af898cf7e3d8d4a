"""Fixtures of the console tests: an installed engine with jobs in every state, and the real
`supaqueue` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.engine import Engine, install

SUPAQUEUE = str(Path(sys.executable).parent / "supaqueue")


@dataclass
class Jobs:
    """A database with queues `emails` and `reports` and one job per state (and a pipeline)."""

    dsn: str
    engine: Engine
    emails: str
    reports: str
    success: str
    failed: str
    cancelled: str
    pending: str
    in_progress: str


def populate(dsn: str) -> Jobs:
    install(dsn)
    e = Engine(dsn)
    emails = e.queue(workers=1, name="emails", max_attempts=1, rate_limit_per_second=5)
    reports = e.queue(workers=0, name="reports")
    success = e.enqueue(emails, {"to": "ada@example.com"})
    e.end(e.current_job_of(success), _status_code=200, _result={"sent": True}, _duration_ms=120)
    failed = e.enqueue(emails, {"to": "bob@example.com"})
    e.end(
        e.current_job_of(failed),
        success=False,
        _status_code=503,
        _error="HTTP 503 Service Unavailable",
        _response_excerpt="busy",
        _duration_ms=900,
    )
    cancelled = e.enqueue(emails, {"step": 2}, _depends_on=[failed])
    in_progress = e.enqueue(emails, {"to": "cy@example.com"})
    pending = e.enqueue(emails, {"to": "dee@example.com"})
    for i in range(3):
        e.insert_job(reports, {"report": i})
    return Jobs(dsn, e, emails, reports, success, failed, cancelled, pending, in_progress)


@pytest.fixture
def jobs(pg_dsn: str) -> Iterator[Jobs]:
    data = populate(pg_dsn)
    try:
        yield data
    finally:
        data.engine.close()


def supaqueue(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `supaqueue` console script."""
    full_env = {k: v for k, v in os.environ.items() if k != "DB_URL"}
    full_env.update(env or {})
    return subprocess.run(
        [SUPAQUEUE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
