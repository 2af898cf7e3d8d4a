"""The real supaqueue engine in a test database: install it, make it dispatch, read its state.

Jobs are dispatched by the engine's own SQL (enqueue → `supaqueue.dispatch` → `net.http_post`);
no pg_net sender runs here, so each dispatch stays in `net.http_request_queue`, where a test
takes its exact body and headers and POSTs them to the Edge Function itself. Installed with
`harness.engine.install` (the same installation the SQL tests use).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


@dataclass
class Dispatched:
    """One dispatch as the engine queued it for pg_net."""

    job_id: str
    queue_id: str
    current_job_id: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Engine:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)

    def close(self) -> None:
        self.conn.close()

    def queue(
        self,
        slug: str,
        method: str = "POST",
        headers: dict[str, str] | None = None,
        timeout_ms: int = 10_000,
        max_attempts: int = 1,
    ) -> str:
        row = self.conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, method, default_headers,"
            " timeout_ms, max_attempts) values (%s, %s, %s, %s, %s, %s) returning id",
            (
                f"q-{uuid.uuid4().hex[:12]}",
                slug,
                method,
                Jsonb(headers or {}),
                timeout_ms,
                max_attempts,
            ),
        ).fetchone()
        assert row is not None
        queue_id = str(row["id"])
        self.conn.execute("insert into supaqueue.worker (queue) values (%s)", (queue_id,))
        return queue_id

    def enqueue(self, queue_id: str, payload: Any) -> str:
        # The seed's own statement: a plain INSERT dispatches through the engine's trigger.
        row = self.conn.execute(
            "insert into supaqueue.job (queue, payload) values (%s, %s) returning id",
            (queue_id, Jsonb(payload)),
        ).fetchone()
        assert row is not None
        return str(row["id"])

    def dispatched(self, job_id: str) -> Dispatched:
        row = self.conn.execute(
            "select r.url, r.headers, r.body, cj.id as cj, cj.worker, j.queue"
            " from net.http_request_queue r"
            " join supaqueue.current_job cj on cj.request_id = r.id"
            " join supaqueue.job j on j.id = cj.job"
            " where cj.job = %s",
            (job_id,),
        ).fetchone()
        if row is None:
            raise AssertionError(f"the engine did not dispatch job {job_id}: {self.job(job_id)}")
        return Dispatched(
            job_id,
            str(row["queue"]),
            str(row["cj"]),
            row["url"],
            dict(row["headers"]),
            bytes(row["body"]),
        )

    def dispatch(self, slug: str, payload: Any = None, **queue: Any) -> Dispatched:
        queue_id = self.queue(slug, **queue)
        job_id = self.enqueue(queue_id, {"n": 1} if payload is None else payload)
        return self.dispatched(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "select status::text, attempts, result, last_status_code, last_error,"
            " extract(epoch from run_at - now())::float as run_in_s"
            " from supaqueue.job where id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None, f"no job {job_id}"
        return dict(row)

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return list(
            self.conn.execute(
                "select attempt, outcome, status_code, error, duration_ms, response_excerpt"
                " from supaqueue.job_attempt where job = %s order by id",
                (job_id,),
            ).fetchall()
        )

    def lease_held(self, current_job_id: str) -> bool:
        row = self.conn.execute(
            "select 1 from supaqueue.current_job where id = %s", (current_job_id,)
        ).fetchone()
        return row is not None

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """Everything a rejected request must leave untouched."""
        row = self.conn.execute(
            "select j.status::text, j.attempts, j.updated_at, j.run_at,"
            " (select count(*) from supaqueue.job_attempt a where a.job = j.id) as attempts_rows,"
            " (select count(*) from supaqueue.current_job c where c.job = j.id) as leases,"
            " (select bool_and(w.locked) from supaqueue.worker w where w.queue = j.queue) as locked"
            " from supaqueue.job j where j.id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        return dict(row)

    def wait_attempts(
        self, job_id: str, count: int = 1, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.attempts(job_id)
            if len(rows) >= count:
                return rows
            time.sleep(0.05)
        raise AssertionError(
            f"job {job_id}: {len(self.attempts(job_id))} of {count} attempts recorded"
            f" after {timeout}s; job = {self.job(job_id)}"
        )
