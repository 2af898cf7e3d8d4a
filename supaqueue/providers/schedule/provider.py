"""A schedule: a row of `supaqueue.schedule`, whose due slots `supaqueue.tick()` enqueues.

The database's evaluator (sql/*_cron.sql) is the one authority on a cron expression: `check`
runs it at preview, to refuse a bad `cron` or `timezone` with the field named and to show the
next run times (`next_runs`). Before supaqueue is installed (or upgraded to the evaluator), it
runs that migration's file inside a transaction that is rolled back. Every setting but the name
updates in place; a new `cron` or `timezone` starts over from now. A schedule of the state whose
row was deleted in SQL fails `diff` (so preview), saying what to run (providers/drift.py).

The resource itself is `supaqueue.schedule.Schedule`.
"""

from __future__ import annotations

from datetime import UTC, datetime
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

from supaqueue import migrations
from supaqueue.clients.postgres import connect, sql_message
from supaqueue.errors import DatabaseError, NameTakenError
from supaqueue.providers.base import explicit_diff, hook_check_failures, presented, unknown_keys
from supaqueue.providers.drift import fail_if_vanished, refresh_advice
from supaqueue.providers.schedule.spec import (
    DEFAULT_TIMEZONE,
    FIELDS,
    NEXT_RUNS_SHOWN,
    validate_schedule,
)
from supaqueue.sql_files import queries

SQL = "schedule.sql"
NAME_CONSTRAINT = "schedule_name_key"
EVALUATOR_MIGRATION = "cron"  # sql/NNNN_cron.sql
IDENTITY = ("name",)
UPDATABLE = ("cron", "timezone", "payload", "queue_id", "db_url")
SECRET_OUTPUTS = ["db_url"]
# migrations_dir: where the evaluator's migration is, for preview before install (never a diff)
INPUTS = ("name", "cron", "timezone", "payload", "queue_id", "db_url", "migrations_dir")
# Computed, shown at preview and in outputs; never a reason to update.
COMPUTED = ("next_runs", "next_run_at", "schedule_id")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _evaluator_sql(migrations_dir: str | None) -> str:
    for migration in migrations.load_migrations(migrations_dir or migrations.SQL_DIR):
        if migration.name == EVALUATOR_MIGRATION:
            return migration.path.read_text()
    raise DatabaseError(f"the migration '*_{EVALUATOR_MIGRATION}.sql' is missing from sql/")


def next_runs(
    conn: psycopg.Connection,
    cron: str,
    timezone: str,
    count: int = NEXT_RUNS_SHOWN,
    migrations_dir: str | None = None,
) -> list[str]:
    """The next `count` run times (UTC, ISO 8601); psycopg errors for a bad schedule."""
    text = queries(SQL)
    params = {"cron": cron, "timezone": timezone, "count": count}
    installed = conn.execute(text["evaluator_installed"]).fetchone()
    if installed and installed[0]:
        row = conn.execute(text["next_runs"], params).fetchone()
    else:
        with conn.transaction(force_rollback=True):
            schema = conn.execute(text["schema_exists"]).fetchone()
            if not (schema and schema[0]):
                conn.execute(text["create_schema"])
            conn.execute(_evaluator_sql(migrations_dir).encode())
            row = conn.execute(text["next_runs"], params).fetchone()
    assert row is not None
    return [iso(moment) for moment in row[0]]


def schedule_problems(
    conn: psycopg.Connection, cron: str, timezone: str, migrations_dir: str | None = None
) -> list[tuple[str, str]]:
    """(field, reason) when the evaluator refuses the schedule."""
    try:
        next_runs(conn, cron, timezone, 1, migrations_dir)
    except psycopg.errors.InvalidParameterValue as exc:
        message = sql_message(exc)
        field, _, reason = message.partition(": ")
        if field in ("cron", "timezone"):
            return [(field, reason)]
        return [("cron", message)]
    return []


def _params(props: dict[str, Any], schedule_id: str | None = None) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": props["name"],
        "queue_id": props["queue_id"],
        "cron": props["cron"].strip(),
        "timezone": props.get("timezone") or DEFAULT_TIMEZONE,
        "payload": Jsonb(dict(props.get("payload") or {})),
        "count": NEXT_RUNS_SHOWN,
    }


def _read_row(conn: psycopg.Connection, schedule_id: str) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute(
        queries(SQL)["read_schedule"], {"id": schedule_id, "count": NEXT_RUNS_SHOWN}
    ).fetchone()


def _outs(props: dict[str, Any], schedule_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
    outs: dict[str, Any] = {key: props.get(key) for key in INPUTS}
    outs["timezone"] = outs["timezone"] or DEFAULT_TIMEZONE
    outs["payload"] = dict(outs["payload"] or {})
    outs["schedule_id"] = schedule_id
    if row is not None:
        outs.update(
            name=row["name"],
            queue_id=row["queue_id"],
            cron=row["cron"],
            timezone=row["timezone"],
            payload=row["payload"],
            next_run_at=iso(row["next_run_at"]),
            next_runs=[iso(moment) for moment in row["next_runs"] or []],
        )
    return outs


def vanished_problem(conn: psycopg.Connection, schedule_id: str, name: Any) -> str | None:
    """Why a schedule in this stack's state cannot be diffed: its row is gone (None: it is there,
    or the whole schema is gone, which the installation's own check reports)."""
    text = queries(SQL)
    registry = conn.execute(text["registry_exists"]).fetchone()
    if not registry or not registry[0]:
        return None
    if conn.execute(text["schedule_exists"], {"id": schedule_id}).fetchone():
        return None
    return (
        f"schedule {name!r} ({schedule_id}) is in this stack's state but not in the database "
        "(its row was deleted in SQL): "
        + refresh_advice(
            "make it again (from its next run after now)",
            "it forgets the deleted schedule",
            "the next `up` then forgets it",
        )
    )


def _refused(exc: psycopg.Error, name: str) -> DatabaseError:
    return DatabaseError(f"schedule {name!r}: {sql_message(exc)}")


class ScheduleProvider(ResourceProvider):
    """CRUD of one schedule through SQL; the connection string is an input (secret)."""

    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        unknown = unknown_keys(news)
        failures = hook_check_failures(
            news, unknown, validate_schedule, fields=FIELDS, path="schedule", inputs=INPUTS,
            also_allowed=COMPUTED,
        )  # fmt: skip
        db_url = news.get("db_url")
        inputs: dict[str, Any] = {key: news.get(key) for key in INPUTS}
        if "timezone" not in unknown:
            inputs["timezone"] = news.get("timezone") or DEFAULT_TIMEZONE
        if "payload" not in unknown:
            inputs["payload"] = news.get("payload") or {}
        if not failures and not unknown & {"db_url", "cron", "timezone"}:
            with connect(str(db_url)) as conn:
                folder = inputs.get("migrations_dir")
                problems = schedule_problems(conn, inputs["cron"], inputs["timezone"], folder)
                failures += [CheckFailure(field, reason) for field, reason in problems]
                if not problems:
                    # shown by `pulumi preview --diff`; diff() ignores it
                    inputs["next_runs"] = next_runs(
                        conn, inputs["cron"], inputs["timezone"], migrations_dir=folder
                    )
        return CheckResult(inputs, failures)

    @presented
    def diff(self, schedule_id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A schedule deleted in SQL is not "unchanged": preview stops, saying what to run.
        fail_if_vanished(
            olds, news, lambda conn: vanished_problem(conn, schedule_id, olds.get("name"))
        )
        return explicit_diff(olds, news, updatable=UPDATABLE, identity=IDENTITY)

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            try:
                with conn.transaction():
                    row = conn.execute(text["insert_schedule"], _params(props)).fetchone()
                    assert row is not None
                    schedule_id = str(row[0])
                    written = _read_row(conn, schedule_id)
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name != NAME_CONSTRAINT:
                    raise
                raise NameTakenError(_name_taken(conn, str(props["name"]))) from None
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc, str(props["name"])) from None
        return CreateResult(schedule_id, _outs(props, schedule_id, written))

    @presented
    def update(self, schedule_id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        text = queries(SQL)
        with connect(news["db_url"]) as conn:
            try:
                with conn.transaction():
                    row = conn.execute(
                        text["update_schedule"], _params(news, schedule_id)
                    ).fetchone()
                    if row is None:
                        raise DatabaseError(
                            f"schedule {news['name']!r} ({schedule_id}) no longer exists in the "
                            "database: run `pulumi refresh` so Pulumi recreates it"
                        )
                    written = _read_row(conn, schedule_id)
            except psycopg.errors.InvalidParameterValue as exc:
                raise _refused(exc, str(news["name"])) from None
        return UpdateResult(_outs(news, schedule_id, written))

    @presented
    def read(self, schedule_id: str, props: dict[str, Any]) -> ReadResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["registry_exists"]).fetchone()
            row = _read_row(conn, schedule_id) if exists and exists[0] else None
        if row is None:
            return ReadResult("", {})
        return ReadResult(schedule_id, _outs(props, schedule_id, row))

    @presented
    def delete(self, schedule_id: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["registry_exists"]).fetchone()
            if not exists or not exists[0]:
                return  # the schema is gone, and the schedule with it
            conn.execute(text["delete_schedule"], {"id": schedule_id})


def _name_taken(conn: psycopg.Connection, name: str) -> str:
    found = conn.execute(queries(SQL)["find_schedule_by_name"], {"name": name}).fetchone()
    schedule_id = found[0] if found else "<id>"
    return (
        f"schedule {name!r} already exists in the database (id {schedule_id}) but not in this "
        "stack's state: another stack declares it, or the state was lost. Remove it in SQL, "
        f"`delete from supaqueue.schedule where id = '{schedule_id}';`, then run `pulumi up` "
        "again; or declare this schedule under another name."
    )
