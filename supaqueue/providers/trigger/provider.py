"""A table trigger: a row of `supaqueue.table_trigger` and, on the user's table, our triggers for
its events (two for UPDATE), each with its function in schema supaqueue, made by
`supaqueue.set_table_trigger` (sql/*_hooks.sql).

`check` asks the database (at preview) whether the table exists, whether this role may create
triggers on it, and whether `when` is a valid condition there, exactly as `up` will use it
(planned as the WHERE of one statement, and made the WHEN of a row trigger, in a transaction that
is rolled back, under the trigger function's empty search_path). Every setting but the name
updates in place; delete removes only our triggers and functions, never the table.
A trigger of the state whose record, table triggers or table were dropped in SQL fails `diff`
(so preview), saying what to run (providers/drift.py); a table dropped under a declared trigger
fails its `check` saying the same.

The resource itself is `supaqueue.trigger.Trigger`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from supaqueue.clients.postgres import connect, sql_message
from supaqueue.errors import ConfigError, DatabaseError, NameTakenError
from supaqueue.providers.base import explicit_diff, hook_check_failures, presented, unknown_keys
from supaqueue.providers.drift import fail_if_vanished, refresh_advice
from supaqueue.providers.trigger.spec import (
    FIELDS,
    normalized_events,
    normalized_when,
    split_table,
    validate_trigger,
)
from supaqueue.sql_files import queries

SQL = "trigger.sql"
NAME_CONSTRAINT = "table_trigger_name_key"
IDENTITY = ("name",)
UPDATABLE = ("table", "events", "when", "queue_id", "db_url")
SECRET_OUTPUTS = ["db_url"]
INPUTS = ("name", "table", "events", "when", "queue_id", "db_url")
RELATION_KINDS = {"r": "table", "p": "partitioned table"}
KIND_NAMES = {"v": "a view", "m": "a materialized view", "f": "a foreign table", "S": "a sequence"}


def table_gone(conn: psycopg.Connection, name: Any, where: str) -> str:
    """Why a trigger of the state cannot be kept as it is: its table is gone, or renamed."""
    found = None
    if isinstance(name, str):
        params = {"name": name, "table": split_table(where)[1]}
        found = conn.execute(queries(SQL)["renamed_to"], params).fetchone()
    if found is not None:
        # Our table triggers moved with the table; neither update nor delete finds them there.
        renamed, old_name = found
        return (
            f"trigger {name!r} is on {where}, which was renamed to {renamed} (its table "
            "triggers went with it): nothing was changed. Rename it back, `alter table "
            f"{renamed} rename to {old_name};`, then run `pulumi up`; "
            "supaqueue finds its triggers only on the table recorded for them."
        )
    return (
        f"trigger {name!r} is on {where}, which no longer exists (the table was dropped, "
        "and PostgreSQL dropped its table triggers with it): nothing was changed, and "
        f"supaqueue never creates your tables. To keep the trigger, create {where} again (or "
        "point its `table` at another table), then run `pulumi refresh` and `pulumi up` (or "
        "`pulumi up --refresh`). To keep it gone, remove it from the stack (the next `up` then "
        "removes only what is left of it in schema supaqueue: its record and functions)."
    )


def database_problems(
    conn: psycopg.Connection, props: dict[str, Any], in_state: bool = False
) -> list[tuple[str, str]]:
    """(field, reason) for what the database says is wrong: the table, the role's right to put
    a trigger on it, the condition. Runs in a transaction that is always rolled back.
    `in_state`: the trigger was made on this table before (a missing table was dropped)."""
    schema, table = split_table(props["table"])
    text = queries(SQL)
    info = conn.execute(text["table_info"], {"schema": schema, "table": table}).fetchone()
    where = f"{schema}.{table}"
    if info is None and in_state:
        return [("table", table_gone(conn, props.get("name"), where))]
    if info is None:
        return [
            (
                "table",
                f"{where} does not exist in the database (names are case-sensitive); create "
                "it first: supaqueue never creates or alters your tables",
            )
        ]
    kind, may_trigger, owner, role = info
    if kind not in RELATION_KINDS:
        return [("table", f"{where} is {KIND_NAMES.get(kind, 'not a table')}, not a table")]
    if not may_trigger:
        return [
            (
                "table",
                f"role {role} may not create triggers on {where} (owned by {owner}): connect as "
                f"its owner, or `grant trigger on {where} to {role}`",
            )
        ]
    when = normalized_when(props.get("when"))
    if when is None:
        return []
    problems: list[tuple[str, str]] = []
    relation = sql.Identifier(schema, table)
    condition = sql.SQL(when)  # as the engine uses it: inside (...)
    for event in normalized_events(props["events"]):
        aliases = {"INSERT": ["new"], "DELETE": ["old"], "UPDATE": ["new", "old"]}[event]
        from_list = sql.SQL(", ").join(
            sql.SQL("{} as {}").format(relation, sql.SQL(alias)) for alias in aliases
        )
        check = sql.SQL(text["condition_check"]).format(
            **{"from": from_list, "condition": condition}
        )
        as_when = sql.SQL(text["condition_when_check"]).format(
            event=sql.SQL(event), table=relation, condition=condition
        )
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(text["local_search_path"])
                conn.execute(check, prepare=True)
                conn.execute(as_when, prepare=True)
        except psycopg.Error as exc:
            rows = " and ".join(alias.upper() for alias in aliases)
            problems.append(
                (
                    "when",
                    f"{when!r} is not a valid condition for {event} on {where} (one SQL "
                    f"expression over the row, {rows}, as in a trigger's WHEN: no subqueries, "
                    "no `--` comments, no second statement; functions outside pg_catalog must be "
                    f"schema-qualified): {sql_message(exc)}",
                )
            )
    return problems


def _params(props: dict[str, Any], trigger_id: str | None) -> dict[str, Any]:
    schema, table = split_table(props["table"])
    return {
        "id": trigger_id,
        "name": props["name"],
        "queue_id": props["queue_id"],
        "schema": schema,
        "table": table,
        "events": normalized_events(props["events"]),
        "when": normalized_when(props.get("when")),
    }


def _install(props: dict[str, Any], trigger_id: str | None) -> str:
    """set_table_trigger in one transaction, after the same checks as preview."""
    with connect(props["db_url"]) as conn:
        problems = database_problems(conn, props)
        if problems:
            raise ConfigError(
                f"trigger {props['name']!r}: "
                + "; ".join(f"{field}: {reason}" for field, reason in problems)
            )
        try:
            with conn.transaction():
                row = conn.execute(
                    queries(SQL)["set_trigger"], _params(props, trigger_id)
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != NAME_CONSTRAINT:
                raise
            raise NameTakenError(_name_taken(conn, str(props["name"]))) from None
        except psycopg.errors.NoDataFound:
            raise DatabaseError(
                f"trigger {props['name']!r} ({trigger_id}) no longer exists in the database: "
                "run `pulumi refresh` so Pulumi recreates it"
            ) from None
    assert row is not None
    return str(row[0])


def _name_taken(conn: psycopg.Connection, name: str) -> str:
    found = conn.execute(queries(SQL)["find_trigger_by_name"], {"name": name}).fetchone()
    trigger_id = found[0] if found else "<id>"
    return (
        f"trigger {name!r} already exists in the database (id {trigger_id}) but not in this "
        "stack's state: another stack declares it, or the state was lost. Remove it in SQL, "
        f"`select supaqueue.drop_table_trigger('{trigger_id}');`, then run `pulumi up` again; "
        "or declare this trigger under another name."
    )


def vanished_problem(conn: psycopg.Connection, trigger_id: str, olds: dict[str, Any]) -> str | None:
    """Why a trigger in this stack's state cannot be diffed: its record, its table or some of its
    table triggers are gone (None: all there, or the whole schema is gone, which the
    installation's own check reports)."""
    text = queries(SQL)
    registry = conn.execute(text["registry_exists"]).fetchone()
    if not registry or not registry[0]:
        return None
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cursor.execute(text["read_trigger"], {"id": trigger_id}).fetchone()
    name = olds.get("name")
    if row is None:
        return (
            f"trigger {name!r} ({trigger_id}) is in this stack's state but not in the database "
            "(it was dropped in SQL, e.g. with supaqueue.drop_table_trigger): "
            + refresh_advice(
                "make it again", "it forgets the dropped trigger", "the next `up` then forgets it"
            )
        )
    schema, table = row["table_schema"], row["table_name"]
    # After a refresh the state holds only the events still installed: none is missing then.
    missing = [event for event in olds.get("events") or [] if event not in row["installed"]]
    if not missing:
        return None
    if conn.execute(text["table_info"], {"schema": schema, "table": table}).fetchone() is None:
        return table_gone(conn, name, f"{schema}.{table}")
    return (
        f"trigger {name!r} ({trigger_id}) is in this stack's state but its table trigger(s) for "
        f"{', '.join(missing)} on {schema}.{table} are not in the database (dropped in SQL, e.g. "
        "with `drop trigger`, or `drop function ... cascade` of its function): "
        + refresh_advice(
            "put them back",
            "it records what is left",
            "the next `up` then removes what is left of it",
        )
    )


def _outs(props: dict[str, Any], trigger_id: str) -> dict[str, Any]:
    outs = {key: props.get(key) for key in INPUTS}
    outs["events"] = normalized_events(props["events"])
    outs["when"] = normalized_when(props.get("when"))
    outs["trigger_id"] = trigger_id
    return outs


class TriggerProvider(ResourceProvider):
    """CRUD of one table trigger through SQL; the connection string is an input (secret)."""

    @presented
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        unknown = unknown_keys(news)
        failures = hook_check_failures(
            news, unknown, validate_trigger, fields=FIELDS, path="trigger", inputs=INPUTS,
            also_allowed=("trigger_id",),
        )  # fmt: skip
        db_url = news.get("db_url")
        inputs = {key: news.get(key) for key in INPUTS}
        if not failures and "events" not in unknown:
            inputs["events"] = normalized_events(news["events"])
        if "when" not in unknown:
            inputs["when"] = normalized_when(news.get("when"))
        if not failures and not unknown & {"db_url", "table", "events", "when"}:
            # made on this very table before: a missing table was dropped under the trigger
            in_state = olds.get("table") == inputs["table"]
            with connect(str(db_url)) as conn:
                failures += [
                    CheckFailure(field, reason)
                    for field, reason in database_problems(conn, inputs, in_state)
                ]
        return CheckResult(inputs, failures)

    @presented
    def diff(self, trigger_id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A trigger dropped in SQL is not "unchanged": preview stops, saying what to run.
        fail_if_vanished(olds, news, lambda conn: vanished_problem(conn, trigger_id, olds))
        return explicit_diff(olds, news, updatable=UPDATABLE, identity=IDENTITY)

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        trigger_id = _install(props, None)
        return CreateResult(trigger_id, _outs(props, trigger_id))

    @presented
    def update(self, trigger_id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _install(news, trigger_id)
        return UpdateResult(_outs(news, trigger_id))

    @presented
    def read(self, trigger_id: str, props: dict[str, Any]) -> ReadResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["registry_exists"]).fetchone()
            row = None
            if exists and exists[0]:
                cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
                row = cursor.execute(text["read_trigger"], {"id": trigger_id}).fetchone()
        if row is None:
            return ReadResult("", {})
        outs = {
            **props,
            "name": row["name"],
            "queue_id": row["queue_id"],
            "table": f"{row['table_schema']}.{row['table_name']}",
            # a trigger dropped behind Pulumi's back shows as a changed event list
            "events": list(row["installed"]),
            "when": row["condition"],
            "trigger_id": trigger_id,
        }
        return ReadResult(trigger_id, outs)

    @presented
    def delete(self, trigger_id: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["registry_exists"]).fetchone()
            if not exists or not exists[0]:
                return  # the schema is gone, and our triggers with it (they depend on it)
            try:
                conn.execute(text["drop_trigger"], {"id": trigger_id})
            except psycopg.errors.DependentObjectsStillExist:
                # its table was renamed: our triggers there still use the functions (autocommit:
                # the connection is usable again)
                where = str(props.get("table"))
                raise DatabaseError(table_gone(conn, props.get("name"), where)) from None
