"""`supaqueue metrics`: the queues as Prometheus metrics, read from the database at each scrape.

A custom collector (prometheus_client) asks the operator API at every scrape:
- gauges from `supaqueue.queue_figures` (depth, ready, running, oldest pending age, workers);
- counters and the attempt-duration histogram from `supaqueue.metrics_between`: this process keeps
  running totals of what finished since it started (a counter starts at 0 with the exporter, the
  reset Prometheus expects), so purging or pruning jobs never makes a counter go down. A scrape
  counts up to `settle_seconds` ago, so that a job whose finishing transaction was still open at
  the previous scrape (its `finished_at` is its transaction's start) is not missed.
Served on a loopback address only, like the dashboard.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from supaqueue.console.api import BadInputError, ConsoleError, Operator, connect

# Upper bounds of the attempt-duration buckets, in seconds; the last finite one is Supabase's
# wall-clock limit of an Edge Function call (150 s).
DURATION_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0)
SETTLE_SECONDS = 10.0
PREFIX = "supaqueue"


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:9464`, `localhost:0` or `[::1]:9464` -> (host, port); loopback only."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BadInputError(f"--listen {value!r}: give HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise BadInputError(
                f"--listen {value!r}: supaqueue metrics listens on a loopback address only "
                "(127.0.0.1, ::1 or localhost); let the Prometheus agent on this host scrape it"
            )
    return ("127.0.0.1" if host == "localhost" else host), int(port_text)


@dataclass
class Totals:
    """Running totals of one queue since the exporter started."""

    succeeded: float = 0
    failed: float = 0
    cancelled: float = 0
    attempts: float = 0
    attempt_seconds_sum: float = 0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(DURATION_BUCKETS_SECONDS))


class QueueCollector(Collector):
    """Reads the database at every scrape (one connection, one scrape at a time)."""

    def __init__(self, db_url: str, settle_seconds: float = SETTLE_SECONDS) -> None:
        self.db_url = db_url
        self.settle_seconds = settle_seconds
        self.started = time.time()
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._watermark: datetime | None = None
        self._totals: dict[str, Totals] = {}
        self.last_error: str | None = None

    def _operator(self) -> Operator:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.db_url, application_name="supaqueue-metrics")
        return Operator(self._conn)

    def _read(self) -> list[dict[str, Any]]:
        op = self._operator()
        figures = op.figures_only("1 minute")
        holds = op.queue_holds()  # by a target's Retry-After (sql/0027)
        for row in figures:
            held = holds.get(str(row["queue"]), {})
            row["queue_held"] = 1 if held.get("held_until") is not None else 0
            row["keys_held"] = held.get("held_keys", 0)
        until = op.database_now(self.settle_seconds)
        if self._watermark is None:
            self._watermark = until  # counters start at 0 now
        elif until > self._watermark:
            bounds = [b * 1000 for b in DURATION_BUCKETS_SECONDS]
            for row in op.metrics_between(self._watermark, until, bounds):
                t = self._totals.setdefault(str(row["name"]), Totals())
                t.succeeded += row["succeeded"]
                t.failed += row["failed"]
                t.cancelled += row["cancelled"]
                t.attempts += row["attempts"]
                t.attempt_seconds_sum += float(row["attempt_ms_sum"]) / 1000
                t.buckets = [a + b for a, b in zip(t.buckets, row["attempt_buckets"], strict=True)]
            self._watermark = until
        # every queue's counters exist from the start, at 0; a removed queue's go away
        self._totals = {
            str(row["name"]): self._totals.get(str(row["name"])) or Totals() for row in figures
        }
        return figures

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                figures = self._read()
                self.last_error = None
            except (ConsoleError, psycopg.Error) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                figures = []
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
            yield from self._families(figures)

    def _families(self, figures: list[dict[str, Any]]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{PREFIX}_database_up",
            "1 if the last scrape read the database, 0 if it could not (see the exporter's log)",
        )
        up.add_metric([], 0 if self.last_error else 1)
        yield up
        gauges = {
            "queue_depth": (
                "Unfinished jobs (pending and running)",
                lambda r: r["pending"] + r["in_progress"],
            ),
            "jobs_pending": (
                "Pending jobs (waiting, delayed or blocked by dependencies)",
                lambda r: r["pending"],
            ),
            "jobs_ready": ("Pending jobs that can run now", lambda r: r["ready"]),
            "jobs_running": ("Jobs with a call in flight", lambda r: r["in_progress"]),
            "oldest_pending_job_age_seconds": (
                "Age of the oldest pending job (0 without one)",
                lambda r: r["oldest_pending_age_seconds"] or 0,
            ),
            "workers": ("Workers: concurrent calls allowed", lambda r: r["workers"]),
            "workers_busy": ("Workers with a call in flight", lambda r: r["busy_workers"]),
            "queue_paused": (
                "1 if the queue is paused (by the stack or by an operator)",
                lambda r: 1 if r["paused_by_stack"] or r["paused_by_operator_since"] else 0,
            ),
            "queue_held": (
                "1 if the queue is held by its target's Retry-After (hold_on_retry_after: queue)",
                lambda r: r.get("queue_held", 0),
            ),
            "keys_held": (
                "Keys of the queue held by their target's Retry-After (hold_on_retry_after: key)",
                lambda r: r.get("keys_held", 0),
            ),
        }
        for name, (text, value) in gauges.items():
            family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["queue"])
            for row in figures:
                family.add_metric([str(row["name"])], float(value(row)))
            yield family
        counters = {
            "jobs_completed": ("Jobs that succeeded, since the exporter started", "succeeded"),
            "jobs_failed": ("Jobs that failed for good, since the exporter started", "failed"),
            "jobs_cancelled": ("Jobs cancelled, since the exporter started", "cancelled"),
        }
        for name, (text, key) in counters.items():
            counter = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["queue"])
            for queue, totals in sorted(self._totals.items()):
                counter.add_metric([queue], getattr(totals, key), created=self.started)
            yield counter
        histogram = HistogramMetricFamily(
            f"{PREFIX}_attempt_duration_seconds",
            "Duration of each call to the target function, since the exporter started",
            labels=["queue"],
        )
        for queue, totals in sorted(self._totals.items()):
            buckets = [
                (_bound(b), float(c))
                for b, c in zip(DURATION_BUCKETS_SECONDS, totals.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(totals.attempts)))
            histogram.add_metric([queue], buckets, totals.attempt_seconds_sum)
        yield histogram

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _bound(value: float) -> str:
    return repr(float(value))


def serve(db_url: str, listen: str, settle_seconds: float = SETTLE_SECONDS) -> None:
    host, port = parse_listen(listen)
    collector = QueueCollector(db_url, settle_seconds)
    collector._read()  # fail now (bad URL, no supaqueue), not at the first scrape
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConsoleError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"supaqueue metrics: http://{shown}:{bound}/metrics", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        collector.close()
