"""A queue: its `supaqueue.queue` row and its workers.

Every setting updates in place (the queue keeps its id and its jobs); only a rename replaces.
Delete refuses while unfinished jobs exist, unless `discard_unfinished_on_delete` (SQLSTATE SQ001
from `supaqueue.drop_queue`, shown as the database's message). A name already taken by a queue
the stack does not manage fails `check` (so preview), naming the stack that owns it, or saying how
to resolve it when no other stack does (`pulumi import` adopts it: providers/importing.py);
create refuses it again (QueueExistsError).
A queue in the state whose row was dropped in SQL fails `diff` (so preview), saying to refresh.
Each queue records the stack that declared it (`owner`); a stack never changes or removes a
queue another stack owns (providers/ownership.py). A queue with no owner yet (made before
ownership records) is claimed by the next update of the stack whose state holds it.

The resource itself is `Queue` (resource.py, beside this file).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from supaqueue.clients.postgres import check_url, connect
from supaqueue.errors import DatabaseError, OwnershipError, QueueExistsError, QueueNotEmptyError
from supaqueue.providers import ownership
from supaqueue.providers.base import (
    explicit_diff,
    presented,
    unknown_keys,
)
from supaqueue.providers.drift import fail_if_vanished
from supaqueue.providers.queue.spec import (
    FIELDS,
    KEEP,
    coerce_integers,
    compact_statuses,
    expand_statuses,
    settled_retention,
    validate_queue,
    with_defaults,
)
from supaqueue.sql_files import queries

SQL = "queue.sql"
NAME_CONSTRAINT = "queue_name_key"  # unique (name) of supaqueue.queue
IDENTITY = ("name",)
UPDATABLE = (*(key for key in FIELDS if key not in IDENTITY), "db_url", "owner")
SECRET_OUTPUTS = ["db_url", "headers"]
# Read back from the database on refresh, so changes made behind Pulumi's back show as drift.
DISCARD = "discard_unfinished_on_delete"
DB_FIELDS = tuple(key for key in FIELDS if key not in (DISCARD, KEEP))
STATUSES = "non_retryable_statuses"  # a list in the declaration, compact ranges in state
# Inputs the program adds to a declaration (the rest is judged by spec.validate_queue).
ENGINE_KEYS = ("db_url", "owner", "queue_id", "__provider")


def _compact(props: dict[str, Any]) -> dict[str, Any]:
    """`props` with its statuses as compact ranges (unknown or invalid values as they are)."""
    statuses = expand_statuses(props.get(STATUSES))
    return props if statuses is None else {**props, STATUSES: compact_statuses(statuses)}


def _params(props: dict[str, Any], queue_id: str | None = None) -> dict[str, Any]:
    declared = {key: props.get(key) for key in FIELDS}
    declared[STATUSES] = expand_statuses(declared[STATUSES])
    params = coerce_integers(declared)
    params["default_headers"] = Jsonb(dict(props.get("headers") or {}))
    schema = params.get("payload_schema")
    params["payload_schema"] = None if schema is None else Jsonb(schema)
    params["id"] = queue_id
    me = ownership.stack_of(props)
    params["owner_stack"] = me.name if me else None
    params["owner_stack_id"] = me.stack_id if me else None
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
        outs[STATUSES] = compact_statuses(list(row[STATUSES] or []))
        if "enqueue_roles" in row:
            outs["enqueue_roles"] = list(row["enqueue_roles"] or [])
        outs[KEEP] = row["retention_seconds"] is None
    return outs


def _record_discard(conn: psycopg.Connection, queue_id: str, props: dict[str, Any]) -> None:
    """Write the declared discard flag where the checks before a removal read it (sql/0022;
    an older installation without the column keeps it in Pulumi's state only)."""
    text = queries(SQL)
    if conn.execute(text["discard_column_exists"]).fetchone() == (True,):
        conn.execute(text["record_discard"], {"id": queue_id, "discard": bool(props.get(DISCARD))})


def _check_dead_letter_queue(props: dict[str, Any], row: dict[str, Any] | None) -> None:
    """The dead-letter queue is written by name; a name with no queue wrote null: refuse (the
    caller's transaction is rolled back)."""
    wanted = props.get("dead_letter_queue")
    if wanted is not None and (row is None or row.get("dead_letter_queue") != wanted):
        raise DatabaseError(
            f"queue {props.get('name')!r}: dead_letter_queue {wanted!r} is not a queue in this "
            "database; declare it (in supaqueue:queues) or remove dead_letter_queue"
        )


class QueueProvider(ResourceProvider):
    """CRUD of one queue through SQL; the connection string is an input (secret)."""

    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        # The declaration's rules are the program's (spec.validate_queue), named without "queue.".
        spec = {key: value for key, value in news.items() if key not in ENGINE_KEYS}
        statuses = expand_statuses(spec.get(STATUSES))
        if isinstance(spec.get(STATUSES), str) and statuses is not None:  # as this check stores
            spec[STATUSES] = statuses
        spec = coerce_integers(spec)
        unknown = unknown_keys(news)
        failures = [
            CheckFailure(problem.field.removeprefix("queue."), problem.reason)
            for problem in validate_queue(spec, unknown=unknown)
        ]
        db_url = news.get("db_url")
        if "db_url" not in unknown and (why := check_url(db_url)):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        owner = news.get("owner")
        # No owner: a queue like one made in SQL (programs from before ownership records).
        if "owner" not in unknown and owner is not None and ownership.stack_of(news) is None:
            failures.append(CheckFailure("owner", "must name the stack that declares the queue"))
        inputs = {
            **with_defaults(spec),
            **{k: v for k, v in spec.items() if k in unknown},
        }
        if not failures:
            inputs = _compact(inputs)
        inputs["db_url"] = db_url
        inputs["owner"] = owner
        name = news.get("name")
        # A queue this check would create (new, or renamed): is its name free? So that preview,
        # not the create, names the stack that owns it.
        creates = not _olds or _olds.get("name") != name
        if creates and not failures and not unknown & {"name", "db_url"}:
            with connect(str(db_url)) as conn:
                exists = conn.execute(queries(SQL)["queue_table_exists"]).fetchone()
                if exists and exists[0]:
                    if problem := ownership.queue_name_problem(
                        conn, str(name), ownership.stack_of(news)
                    ):
                        failures.append(CheckFailure("name", problem))
        return CheckResult(inputs, failures)

    @presented
    def diff(self, queue_id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        recorded: dict[str, Any] = {}

        def vanished(conn: psycopg.Connection) -> str | None:
            problem = ownership.vanished_queue_problem(conn, queue_id, olds.get("name"))
            exists = conn.execute(queries(SQL)["queue_table_exists"]).fetchone() == (True,)
            if problem is None and exists:
                row = conn.execute(queries(SQL)["recorded_discard"], {"id": queue_id}).fetchone()
                recorded[DISCARD] = row[0] if row else None
            return problem

        # A queue dropped in SQL is not "unchanged": preview stops, saying what to run.
        fail_if_vanished(olds, news, vanished)
        # Statuses compare as sets (an older state holds them as a list); an older state's
        # missing retention was the explicit null (spec.settled_retention).
        diff = explicit_diff(
            _compact(settled_retention(olds)),
            _compact(settled_retention(news)),
            updatable=UPDATABLE,
            identity=IDENTITY,
        )
        stale = recorded.get(DISCARD) is not None and recorded[DISCARD] != news.get(DISCARD)
        if stale and isinstance(news.get(DISCARD), bool) and not diff.changes:
            # The database does not hold the declared flag yet (written since sql/0022): an
            # update writes it, so the checks before a removal read what the stack declares.
            return DiffResult(changes=True, replaces=[], stables=[])
        return diff

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            try:
                with conn.transaction():
                    row = conn.execute(text["insert_queue"], _params(props)).fetchone()
                    assert row is not None
                    queue_id = str(row[0])
                    conn.execute(
                        text["set_worker_count"],
                        {"id": queue_id, "workers": int(props["workers"])},
                    )
                    _record_discard(conn, queue_id, props)
                    written = _read_row(conn, queue_id)
                    _check_dead_letter_queue(props, written)
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name != NAME_CONSTRAINT:
                    raise
                problem = ownership.queue_name_problem(
                    conn, str(props["name"]), ownership.stack_of(props)
                )
                raise QueueExistsError(problem or f"queue {props['name']!r} exists") from None
        return CreateResult(queue_id, _outs(props, queue_id, written))

    @presented
    def update(self, queue_id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        text = queries(SQL)
        with connect(news["db_url"]) as conn, conn.transaction():
            if problem := ownership.queue_problem(
                conn, queue_id, news["name"], ownership.stack_of(news)
            ):
                raise OwnershipError(problem)
            row = conn.execute(text["update_queue"], _params(news, queue_id)).fetchone()
            if row is None:
                raise DatabaseError(
                    f"queue {news['name']!r} ({queue_id}) no longer exists in the database: "
                    "run `pulumi refresh` so Pulumi recreates it"
                )
            conn.execute(
                text["set_worker_count"], {"id": queue_id, "workers": int(news["workers"])}
            )
            _record_discard(conn, queue_id, news)
            written = _read_row(conn, queue_id)
            _check_dead_letter_queue(news, written)
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
                with conn.transaction():
                    if problem := ownership.queue_problem(
                        conn, queue_id, props.get("name"), ownership.stack_of(props)
                    ):
                        raise OwnershipError(problem)
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
