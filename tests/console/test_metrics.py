"""`supaqueue metrics`: a real exporter process scraped over HTTP on loopback, its text parsed
with prometheus_client's own parser: gauges per queue, counters that start at 0 and only grow
(a purge does not lower them), the attempt-duration histogram, a database that goes away."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.console.conftest import SUPAQUEUE, Jobs, supaqueue

WAIT_SECONDS = 60


class Exporter:
    def __init__(self, dsn: str) -> None:
        self.proc = subprocess.Popen(
            # --settle-seconds 0: this test commits before it scrapes, nothing is in flight
            [
                SUPAQUEUE,
                "metrics",
                "--db-url",
                dsn,
                "--listen",
                "127.0.0.1:0",
                "--settle-seconds",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(WAIT_SECONDS)
        line = first[0] if first else ""
        assert line.startswith("supaqueue metrics: http://127.0.0.1:"), (line, self.stop())
        self.url = line.split(": ", 1)[1].strip()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(sample name, sorted labels): value} of one scrape."""
        response = httpx.get(self.url, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def exporter(jobs: Jobs) -> Iterator[Exporter]:
    server = Exporter(jobs.dsn)
    try:
        yield server
    finally:
        err = server.stop()
        assert "Traceback" not in err, err


def q(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_scraped_metrics_per_queue(exporter: Exporter, jobs: Jobs) -> None:
    first = exporter.scrape()
    assert first[q("supaqueue_database_up")] == 1
    # emails: one pending, one running (its one worker busy); reports: 3 pending, no worker
    assert first[q("supaqueue_jobs_pending", queue="emails")] == 1
    assert first[q("supaqueue_jobs_running", queue="emails")] == 1
    assert first[q("supaqueue_queue_depth", queue="emails")] == 2
    assert first[q("supaqueue_jobs_ready", queue="reports")] == 3
    assert first[q("supaqueue_workers", queue="emails")] == 1
    assert first[q("supaqueue_workers_busy", queue="emails")] == 1
    assert first[q("supaqueue_workers", queue="reports")] == 0
    assert first[q("supaqueue_oldest_pending_job_age_seconds", queue="reports")] >= 0
    assert first[q("supaqueue_queue_paused", queue="emails")] == 0
    # counters start at 0 with the exporter: what finished before is not counted
    assert first[q("supaqueue_jobs_completed_total", queue="emails")] == 0
    assert first[q("supaqueue_attempt_duration_seconds_count", queue="emails")] == 0

    # the running job succeeds after 300 ms; the pending one then runs and fails after 2 s
    e = jobs.engine
    e.end(e.current_job_of(jobs.in_progress), _status_code=200, _result={}, _duration_ms=300)
    e.end(
        e.current_job_of(jobs.pending),
        success=False,
        _status_code=500,
        _error="HTTP 500",
        _duration_ms=2000,
    )
    second = exporter.scrape()
    assert second[q("supaqueue_jobs_completed_total", queue="emails")] == 1
    assert second[q("supaqueue_jobs_failed_total", queue="emails")] == 1
    assert second[q("supaqueue_queue_depth", queue="emails")] == 0
    hist = "supaqueue_attempt_duration_seconds"
    assert second[q(f"{hist}_count", queue="emails")] == 2
    assert second[q(f"{hist}_sum", queue="emails")] == pytest.approx(2.3)
    assert second[q(f"{hist}_bucket", queue="emails", le="0.25")] == 0
    assert second[q(f"{hist}_bucket", queue="emails", le="0.5")] == 1
    assert second[q(f"{hist}_bucket", queue="emails", le="2.5")] == 2
    assert second[q(f"{hist}_bucket", queue="emails", le="+Inf")] == 2

    # a purge deletes the finished jobs: the counters do not go down
    assert supaqueue("purge", "--queue", "emails", "--db-url", jobs.dsn, "--yes").returncode == 0
    third = exporter.scrape()
    assert third[q("supaqueue_jobs_completed_total", queue="emails")] == 1
    assert third[q("supaqueue_jobs_failed_total", queue="emails")] == 1


def test_holds_by_a_retry_after_are_gauges(exporter: Exporter, jobs: Jobs) -> None:
    """Issue 26 item 3 (sql/0027): a held queue, and a queue's held keys."""
    first = exporter.scrape()
    assert first[q("supaqueue_queue_held", queue="reports")] == 0
    assert first[q("supaqueue_keys_held", queue="emails")] == 0
    jobs.engine.conn.execute(
        "insert into supaqueue.queue_hold (queue, held_until, reason)"
        " values (%s, now() + interval '10 minutes', 'HTTP 429 with Retry-After: 600 s')",
        (jobs.reports,),
    )
    jobs.engine.conn.execute(
        "insert into supaqueue.queue_key (queue, key, held_until, hold_reason) values"
        " (%(q)s, 'a', now() + interval '1 minute', 'x'), (%(q)s, 'b', now() + interval '1 minute',"
        " 'y')",
        {"q": jobs.emails},
    )
    second = exporter.scrape()
    assert second[q("supaqueue_queue_held", queue="reports")] == 1
    assert second[q("supaqueue_queue_held", queue="emails")] == 0
    assert second[q("supaqueue_keys_held", queue="emails")] == 2


def test_the_database_going_away_is_a_metric_not_a_crash(exporter: Exporter, jobs: Jobs) -> None:
    assert exporter.scrape()[q("supaqueue_database_up")] == 1
    # the exporter's own session ends (as when the database restarts)
    jobs.engine.conn.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where application_name = 'supaqueue-metrics'"
    )
    samples = exporter.scrape()
    # reconnected within the scrape, or reported down; never an HTTP error
    assert samples[q("supaqueue_database_up")] in (0, 1)
    assert exporter.scrape()[q("supaqueue_database_up")] == 1
    assert exporter.proc.poll() is None


def test_listens_on_loopback_only(jobs: Jobs) -> None:
    refused = supaqueue("metrics", "--db-url", jobs.dsn, "--listen", "0.0.0.0:9464")
    assert refused.returncode == 2 and "loopback" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = supaqueue("metrics", "--db-url", jobs.dsn, "--listen", "nonsense")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
