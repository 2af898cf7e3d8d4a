"""A queue: its `supaqueue.queue` row and its workers.

Every setting updates in place (the queue keeps its id and its jobs); only a rename replaces.
Delete refuses while unfinished jobs exist, unless `discard_unfinished_on_delete` (SQLSTATE SQ001
from `supaqueue.drop_queue`, shown as the database's message).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pulumi
from psycopg.types.json import Jsonb
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components.clients.postgres import check_url, connect
from components.errors import DatabaseError, QueueNotEmptyError
from components.providers.base import (
    declared_outputs,
    explicit_diff,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from components.queue_spec import FIELDS, coerce_integers, validate_queue, with_defaults
from components.sql_files import queries

SQL = "queue.sql"
IDENTITY = ("name",)
UPDATABLE = (*(key for key in FIELDS if key not in IDENTITY), "db_url")
SECRET_OUTPUTS = ["db_url", "headers"]
# Read back from the database on refresh, so changes made behind Pulumi's back show as drift.
DB_FIELDS = tuple(key for key in FIELDS if key != "discard_unfinished_on_delete")


def _params(props: dict[str, Any], queue_id: str | None = None) -> dict[str, Any]:
    params = coerce_integers({key: props.get(key) for key in FIELDS})
    params["default_headers"] = Jsonb(dict(props.get("headers") or {}))
    params["id"] = queue_id
    return params


def _read_row(conn: psycopg.Connection, queue_id: str) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute(queries(SQL)["read_queue"], {"id": queue_id}).fetchone()


def _outs(props: dict[str, Any], queue_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
    """State = what the database holds now (so refresh shows only real drift)."""
    outs = {**coerce_integers(props), "queue_id": queue_id}
    if row is not None:
        outs.update({key: row[key] for key in DB_FIELDS if key in row})
        outs["headers"] = dict(row["default_headers"] or {})
        outs["non_retryable_statuses"] = list(row["non_retryable_statuses"] or [])
    return outs


class QueueProvider(ResourceProvider):
    """CRUD of one queue through SQL; the connection string is an input (secret)."""

    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        spec = coerce_integers({key: value for key, value in news.items() if key in FIELDS})
        unknown = unknown_keys(news)
        failures = [
            CheckFailure(problem.field.removeprefix("queue."), problem.reason)
            for problem in validate_queue(spec, unknown=unknown)
        ]
        db_url = news.get("db_url")
        if "db_url" not in unknown and (why := check_url(db_url)):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        extra = [key for key in news if key not in (*FIELDS, "db_url", "queue_id", "__provider")]
        known = ", ".join(FIELDS)
        failures += [CheckFailure(key, f"unknown key; known keys: {known}") for key in extra]
        inputs = {**with_defaults(spec), **{k: v for k, v in spec.items() if k in unknown}}
        inputs["db_url"] = db_url
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=UPDATABLE, identity=IDENTITY)

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn, conn.transaction():
            row = conn.execute(text["insert_queue"], _params(props)).fetchone()
            assert row is not None
            queue_id = str(row[0])
            conn.execute(
                text["set_worker_count"], {"id": queue_id, "workers": int(props["workers"])}
            )
            written = _read_row(conn, queue_id)
        return CreateResult(queue_id, _outs(props, queue_id, written))

    @presented
    def update(self, queue_id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        text = queries(SQL)
        with connect(news["db_url"]) as conn, conn.transaction():
            row = conn.execute(text["update_queue"], _params(news, queue_id)).fetchone()
            if row is None:
                raise DatabaseError(
                    f"queue {news['name']!r} ({queue_id}) no longer exists in the database: "
                    "run `pulumi refresh` so Pulumi recreates it"
                )
            conn.execute(
                text["set_worker_count"], {"id": queue_id, "workers": int(news["workers"])}
            )
            written = _read_row(conn, queue_id)
        return UpdateResult(_outs(news, queue_id, written))

    @presented
    def read(self, queue_id: str, props: dict[str, Any]) -> ReadResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["queue_table_exists"]).fetchone()
            row = _read_row(conn, queue_id) if exists and exists[0] else None
        if row is None:
            return ReadResult("", {})
        return ReadResult(queue_id, _outs(props, queue_id, row))

    @presented
    def delete(self, queue_id: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["queue_table_exists"]).fetchone()
            if not exists or not exists[0]:
                return  # the schema is gone, and the queue with it
            discard = bool(props.get("discard_unfinished_on_delete"))
            try:
                conn.execute(text["drop_queue"], {"id": queue_id, "discard": discard})
            except psycopg.Error as exc:
                if exc.sqlstate == "SQ001":
                    primary = exc.diag.message_primary or str(exc)
                    raise QueueNotEmptyError(
                        f"cannot remove queue {props.get('name')!r}: {primary}. Let them finish; "
                        "or, to discard them, declare the queue again with "
                        "discard_unfinished_on_delete: true, run `pulumi up`, then remove it."
                    ) from None
                raise


class QueueResource(Resource, module="supaqueue", name="Queue"):
    """The dynamic resource behind `components.queue.Queue`."""

    queue_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            QueueProvider(),
            name,
            declared_outputs(props, ["queue_id"]),
            with_secret_outputs(opts, SECRET_OUTPUTS),
        )
