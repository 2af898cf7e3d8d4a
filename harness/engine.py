"""The installed engine in a test database, driven the way the Edge Function and users drive it.

No pg_net sender runs in these tests: every dispatch stays in `net.http_request_queue`, where the
harness reads it back (body, URL, headers) and answers with `supaqueue.end_current_job`.
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

from supaqueue import migrations

FUNCTIONS_URL = "http://127.0.0.1:54321/functions/v1"
SECRET = "test-secret-not-real"


def install(
    dsn: str,
    functions_url: str = FUNCTIONS_URL,
    secret: str = SECRET,
    dispatcher_slug: str = "supaqueue",
    *,
    configure: bool = True,
) -> None:
    """Apply every migration; then write what the Pulumi program writes (settings, Vault)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations())
        if configure:
            conn.execute(
                "insert into supaqueue.settings (key, value) values"
                " ('functions_url', %s), ('dispatcher_slug', %s)"
                " on conflict (key) do update set value = excluded.value",
                (functions_url, dispatcher_slug),
            )
            conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (secret,))


def uninstall(dsn: str) -> None:
    """What `pulumi destroy` removes from the database: the schema, its cron jobs, the secret."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations.uninstall(conn)
        conn.execute("delete from vault.secrets where name = 'supaqueue_secret'")


# Parameter types of supaqueue.end_current_job (Python floats would arrive as double precision).
_END_TYPES = {
    "_status_code": "integer",
    "_response_excerpt": "text",
    "_error": "text",
    "_retry_after_seconds": "numeric",
    "_result": "jsonb",
    "_duration_ms": "integer",
}


@dataclass
class Request:
    """One pg_net request the engine queued."""

    id: int
    url: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def current_job(self) -> str:
        return str(self.body["current_job"]["id"])

    @property
    def job(self) -> str:
        return str(self.body["current_job"]["job"])

    @property
    def attempt(self) -> int:
        return int(self.body["current_job"]["attempt"])


class Engine:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        self._seen = 0

    def close(self) -> None:
        self.conn.close()

    def one(self, query: str, params: Any = None) -> Any:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None, query
        return next(iter(row.values()))

    def queue(self, workers: int = 1, **columns: Any) -> str:
        columns.setdefault("name", f"q-{uuid.uuid4().hex[:10]}")
        columns.setdefault("edge_function_name", "target")
        names = list(columns)
        values = [Jsonb(v) if isinstance(v, dict) else v for v in columns.values()]
        query = (
            f"insert into supaqueue.queue ({', '.join(names)})"
            f" values ({', '.join(['%s'] * len(names))}) returning id::text"
        )
        queue_id = str(self.one(query, values))
        if workers:
            self.conn.execute(
                "insert into supaqueue.worker (queue) select %s from generate_series(1, %s)",
                (queue_id, workers),
            )
        return queue_id

    def insert_job(self, queue_id: str, payload: Any = None) -> str:
        return str(self.one(
            "insert into supaqueue.job (queue, payload) values (%s, %s) returning id::text",
            (queue_id, Jsonb({"n": 1} if payload is None else payload)),
        ))  # fmt: skip

    def enqueue(self, queue_id: str, payload: Any = None, **kwargs: Any) -> str:
        args = ", ".join(f"{k} => %({k})s" for k in kwargs)
        params = {"queue": queue_id, "payload": Jsonb({} if payload is None else payload)}
        params.update(kwargs)
        query = "select supaqueue.enqueue(%(queue)s, %(payload)s" + (f", {args}" if args else "")
        return str(self.one(query + ")::text", params))

    def new_requests(self) -> list[Request]:
        """Requests queued since the last call, oldest first."""
        rows = self.conn.execute(
            "select id, url, headers, body from net.http_request_queue where id > %s order by id",
            (self._seen,),
        ).fetchall()
        if rows:
            self._seen = int(rows[-1]["id"])
        return [
            Request(int(r["id"]), r["url"], dict(r["headers"]), json.loads(bytes(r["body"])))
            for r in rows
        ]

    def end(
        self,
        current_job: str,
        success: bool = True,
        complete: bool = True,
        **kwargs: Any,
    ) -> bool:
        args = "".join(f", {k} => %({k})s::{_END_TYPES[k]}" for k in kwargs)
        params: dict[str, Any] = {"id": current_job, "c": complete, "s": success}
        params.update({k: Jsonb(v) if k == "_result" else v for k, v in kwargs.items()})
        return bool(self.one(
            f"select supaqueue.end_current_job(%(id)s, %(c)s, %(s)s{args})", params
        ))  # fmt: skip

    def report_and_claim(
        self,
        current_job: str,
        chain_jobs: int | None = 1,
        elapsed_ms: int | None = 0,
        success: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """What a chaining function's report returns: {"current": bool, "next": claimed job,
        {"refused": reason} or None}."""
        args = "".join(f", {k} => %({k})s::{_END_TYPES[k]}" for k in kwargs)
        params: dict[str, Any] = {"id": current_job, "s": success, "j": chain_jobs, "e": elapsed_ms}
        params.update({k: Jsonb(v) if k == "_result" else v for k, v in kwargs.items()})
        return dict(self.one(
            "select supaqueue.report_and_claim(%(id)s, true, %(s)s"
            f"{args}, _chain_jobs => %(j)s::integer, _chain_elapsed_ms => %(e)s::bigint)",
            params,
        ))  # fmt: skip

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("delete from supaqueue.settings where key = %s", (key,))
            return
        self.conn.execute(
            "insert into supaqueue.settings (key, value) values (%s, %s)"
            " on conflict (key) do update set value = excluded.value",
            (key, value),
        )

    def claim(self, current_job: str, attempt: int | None = None) -> Any:
        """What the function's first call returns: the claimed job, None (not current) or
        {"refused": reason}."""
        return self.one(
            "select supaqueue.claim_current_job(%s, %s::integer) as claimed", (current_job, attempt)
        )

    def tick(self) -> dict[str, int]:
        return dict(self.one("select supaqueue.tick()"))

    def prune(self) -> int:
        """One run of the retention (the cron job `supaqueue-retention`): finished jobs deleted."""
        return int(self.one("call supaqueue.prune_history(_seconds => 120)"))

    def job(self, job_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            "select status::text, attempts, result, last_status_code, last_error, priority,"
            " pending_dependencies, extract(epoch from run_at - now())::float as run_in_s,"
            # the delay a failure set: run_at minus when it was set (the same transaction's
            # now()), exact however late the test reads it
            " extract(epoch from run_at - updated_at)::float as delay_s"
            " from supaqueue.job where id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None, f"no job {job_id}"
        return dict(row)

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """Everything about a job that an ignored report must leave untouched."""
        row = self.conn.execute(
            "select j.status::text, j.attempts, j.result, j.run_at, j.updated_at,"
            " (select count(*) from supaqueue.job_attempt a where a.job = j.id) as history,"
            " (select array_agg(c.id order by c.id) from supaqueue.current_job c"
            "   where c.job = j.id) as leases,"
            " (select array_agg(w.locked order by w.id) from supaqueue.worker w"
            "   where w.queue = j.queue) as workers"
            " from supaqueue.job j where j.id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None, f"no job {job_id}"
        return dict(row)

    def status(self, job_id: str) -> str:
        return str(self.job(job_id)["status"])

    def in_flight(self, queue_id: str) -> int:
        return int(self.one(
            "select count(*) from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " where j.queue = %s",
            (queue_id,),
        ))  # fmt: skip

    def current_job_of(self, job_id: str) -> str:
        return str(self.one("select id::text from supaqueue.current_job where job = %s", (job_id,)))

    def expire_lease(self, current_job: str) -> None:
        """Move a lease's deadline into the past, as if the report never came."""
        self.conn.execute(
            "update supaqueue.current_job set lease_expires_at = now() - interval '1 second'"
            " where id = %s",
            (current_job,),
        )

    def make_due(self, job_id: str) -> None:
        """Bring a delayed job's run_at forward to now, instead of waiting for it."""
        self.conn.execute(
            "update supaqueue.job set run_at = now() - interval '1 millisecond' where id = %s",
            (job_id,),
        )


def wait_for_room_in_the_minute(engine: Engine, seconds: float) -> None:
    """tick_loop stops at :58.5 of its minute (the next minute's call takes over): wait for a new
    minute when fewer than `seconds` (and a margin for a loaded machine) are left in this one."""
    second = float(engine.one("select extract(second from clock_timestamp())::float"))
    if second > 58.5 - seconds - 8:
        time.sleep(60.2 - second)
