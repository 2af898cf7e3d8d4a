"""`pulumi import` of a queue, a trigger or a schedule that exists in the database, by name.

    pulumi import supaqueue:index:Queue supaqueue-queue-legacy legacy \\
        --parent installation=<the Supaqueue component's URN>

The engine asks the provider to read the resource with the name as its id and no state. The
database is the one the stack config names (the provider's configuration is the stack's
`supaqueue:` config): `supaqueue:dbUrl`, or with `supaqueue:target: local` the environment's
`DB_URL`, as the program reads it (supaqueue/config.py). The answer:

- id: the queue's, trigger's or schedule's uuid (as a resource made by `up` has);
- inputs (what `pulumi import` prints as code): the declared fields, those left at their default
  omitted; never the database URL, the owner or default headers (secrets are never printed, and
  a queue with headers is refused, saying how to import it);
- outputs (the state): what `read` of that resource gives after an `up`, without `db_url`
  (a secret is never written to the state in plain text): the program's next `check` and `diff`
  take the declared one (`fill_imported`), and until then the provider's configuration serves.

Ownership (providers/ownership.py): importing a queue another stack owns is refused; a queue
with no owner becomes the importing stack's at once (recorded at the read, so the code printed
previews clean: there is nothing left to claim at the next `up`). A stack is known by its name in
the URN and the id the database records for that name (its installation, or queues it owns); a
stack the database does not record yet must `up` first. A trigger or schedule feeding a queue of
another stack is refused likewise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from supaqueue.clients.postgres import connect
from supaqueue.errors import SupaqueueError
from supaqueue.providers.queue import provider as queue_provider
from supaqueue.providers.queue.spec import FIELDS, compact_statuses, expand_statuses
from supaqueue.providers.queue.spec import with_defaults as queue_defaults
from supaqueue.providers.schedule import provider as schedule_provider
from supaqueue.providers.schedule.spec import DEFAULT_TIMEZONE
from supaqueue.providers.trigger.spec import normalized_events, normalized_when
from supaqueue.sql_files import queries

SQL = "importing.sql"
IMPORTABLE = ("Queue", "Trigger", "Schedule")
STATUSES = "non_retryable_statuses"
NAMES_SHOWN = 20


class ImportRefusedError(SupaqueueError):
    """`pulumi import` of something that cannot be imported: nothing was imported."""


@dataclass(frozen=True)
class Imported:
    """A Read answer for `pulumi import`."""

    id: str
    outs: dict[str, Any]
    inputs: dict[str, Any]


def config_db_url(variables: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """The database the stack config names: `supaqueue:dbUrl`, else with `supaqueue:target:
    local` the environment's DB_URL (as supaqueue/config.py reads it for the program)."""

    def value(key: str) -> str | None:
        # The engine names config variables `supaqueue:config:<key>` (its older form).
        return variables.get(f"supaqueue:{key}") or variables.get(f"supaqueue:config:{key}")

    url = value("dbUrl")
    if not url and value("target") == "local":
        url = env.get("DB_URL")
    return url or None


def stack_of_urn(urn: str) -> str:
    """`<project>/<stack>` of `urn:pulumi:<stack>::<project>::...` (what ownership records)."""
    parts = urn.split("::")
    stack = parts[0].removeprefix("urn:pulumi:")
    return f"{parts[1]}/{stack}" if len(parts) > 1 else stack


def is_import(props: Mapping[str, Any]) -> bool:
    """A Read with no state and no inputs: `pulumi import` (a refresh passes the state)."""
    return not props


def needs_db_url(kind: str, props: Mapping[str, Any]) -> bool:
    """An imported queue, trigger or schedule whose state has no database URL (its program
    has not updated it since)."""
    return kind in IMPORTABLE and not props.get("db_url")


def with_db_url(kind: str, props: dict[str, Any], db_url: str | None) -> dict[str, Any]:
    """`props` with the configured database URL where an imported state lacks one."""
    if not needs_db_url(kind, props):
        return props
    return {**props, "db_url": _required(db_url, kind)}


def fill_imported(kind: str, olds: dict[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """The state to diff against: an imported one has no `db_url`, and the declared one is no
    change (the URL is where the resource is, not a setting of it)."""
    if needs_db_url(kind, olds) and news.get("db_url"):
        return {**olds, "db_url": news["db_url"]}
    return olds


def read_by_name(kind: str, name: str, urn: str, db_url: str | None) -> Imported:
    """The Read answer for `pulumi import <token> <resource name> <name>`."""
    if kind not in IMPORTABLE:
        raise ImportRefusedError(
            f"supaqueue:index:{kind} cannot be imported (only Queue, Trigger and Schedule can: "
            "the installation's parts are made by `pulumi up`)"
        )
    with connect(_required(db_url, kind)) as conn, conn.transaction():
        installed = conn.execute(queries("queue.sql")["queue_table_exists"]).fetchone()
        if not installed or not installed[0]:
            raise ImportRefusedError(
                f"cannot import {kind.lower()} {name!r}: supaqueue is not installed in this "
                "database; nothing was imported"
            )
        me = stack_of_urn(urn)
        if kind == "Queue":
            return _queue(conn, name, me)
        if kind == "Trigger":
            return _trigger(conn, name, me)
        return _schedule(conn, name, me)


def _required(db_url: str | None, kind: str) -> str:
    if db_url:
        return db_url
    raise ImportRefusedError(
        f"the supaqueue provider needs the database for this {kind.lower()}: set it in the "
        "stack config, `pulumi config set --secret supaqueue:dbUrl <postgres URL>`, or with "
        "`supaqueue:target: local` export DB_URL (`eval $(supaqueue dev status -o env)`, or run "
        "pulumi through scripts/pulumi-stack.sh)"
    )


def _my_ids(conn: psycopg.Connection, me: str) -> list[str]:
    rows = conn.execute(queries(SQL)["stack_ids_of"], {"stack": me}).fetchall()
    return sorted({str(row[0]) for row in rows})


def _owner_problem(
    conn: psycopg.Connection, me: str, owner: str | None, owner_id: str | None
) -> str | None:
    """Why a queue owned by `owner` is not the importing stack's (None: it is, or no one's)."""
    if owner_id is None:
        return None
    if owner == me and _my_ids(conn, me) == [owner_id]:
        return None
    return f"owned by the Pulumi stack '{owner}' (stack id {owner_id[:8]})"


def _names(conn: psycopg.Connection, table: str) -> str:
    rows = conn.execute(
        f"select name from supaqueue.{table} order by name limit {NAMES_SHOWN + 1}"
    ).fetchall()
    names = [str(row[0]) for row in rows]
    if not names:
        return "there is none"
    shown = ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")
    return f"there are: {shown}"


def _queue(conn: psycopg.Connection, name: str, me: str) -> Imported:
    text = queries(SQL)
    row = conn.execute(text["queue_for_import"], {"name": name}).fetchone()
    if row is None:
        raise ImportRefusedError(
            f"no queue named {name!r} in supaqueue.queue ({_names(conn, 'queue')}); nothing "
            "was imported"
        )
    queue_id, owner, owner_id, headers = row
    if problem := _owner_problem(conn, me, owner, owner_id):
        raise ImportRefusedError(
            f"queue {name!r} is {problem}, not by '{me}': it was not imported. Declare it in "
            "that stack; to hand it over, `update supaqueue.queue set owner_stack = null, "
            f"owner_stack_id = null where name = '{name}';` then import it again"
        )
    if headers:
        raise ImportRefusedError(
            f"queue {name!r} has default headers, which may hold credentials and `pulumi "
            "import` would print them: nothing was imported. Take them out, `update "
            f"supaqueue.queue set default_headers = '{{}}' where name = '{name}';`, import it, "
            "then declare them in the program from a secret (`pulumi config set --secret`) "
            "and run `pulumi up`"
        )
    data = queue_provider._read_row(conn, queue_id)  # the provider's own read, as refresh
    if data is not None and not data["workers"]:
        raise ImportRefusedError(
            f"queue {name!r} has no workers (it dispatches nothing, and a declared queue has 1 "
            f"to 1000): nothing was imported. Give it some first, `select "
            f"supaqueue.set_worker_count('{queue_id}', 1);`, then import it"
        )
    ids = _my_ids(conn, me)
    if len(ids) != 1:
        raise ImportRefusedError(
            f"queue {name!r} was not imported: the database "
            + (
                f"records no stack '{me}' yet; run `pulumi up` for this stack first (its "
                "installation, or its queues with `installation: external`), then import"
                if not ids
                else f"records {len(ids)} stacks named '{me}' (ids "
                + ", ".join(i[:8] for i in ids)
                + "); hand the queue over in SQL to the right one"
            )
        )
    conn.execute(text["claim_queue"], {"id": queue_id, "stack": me, "stack_id": ids[0]})
    outs = queue_provider._outs({}, queue_id, data)
    discard = conn.execute(queries("queue.sql")["recorded_discard"], {"id": queue_id}).fetchone()
    outs["discard_unfinished_on_delete"] = bool(discard and discard[0])
    outs["owner"] = {"stack": me, "stack_id": ids[0]}
    defaults = queue_defaults({})
    defaults[STATUSES] = compact_statuses(defaults[STATUSES])
    inputs: dict[str, Any] = {}
    for key in FIELDS:
        value = outs.get(key)
        if key in ("name", "edge_function_name") or (value != defaults[key] and value is not None):
            inputs[key] = expand_statuses(value) if key == STATUSES else value
    return Imported(queue_id, outs, inputs)


def _hooked_queue_problem(conn: psycopg.Connection, what: str, queue_id: str, me: str) -> None:
    row = conn.execute(queries(SQL)["queue_owner_of"], {"id": queue_id}).fetchone()
    if row is not None and (problem := _owner_problem(conn, me, row[1], row[2])):
        raise ImportRefusedError(
            f"{what} feeds queue {row[0]!r}, {problem}, not by '{me}': it was not imported. "
            "Declare it in that stack"
        )


def _trigger(conn: psycopg.Connection, name: str, me: str) -> Imported:
    text = queries("trigger.sql")
    found = conn.execute(text["find_trigger_by_name"], {"name": name}).fetchone()
    if found is None:
        raise ImportRefusedError(
            f"no trigger named {name!r} in supaqueue.table_trigger "
            f"({_names(conn, 'table_trigger')}); nothing was imported"
        )
    trigger_id = str(found[0])
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cursor.execute(text["read_trigger"], {"id": trigger_id}).fetchone()
    assert row is not None  # found above, in the same transaction
    _hooked_queue_problem(conn, f"trigger {name!r}", row["queue_id"], me)
    inputs: dict[str, Any] = {
        "name": row["name"],
        "table": f"{row['table_schema']}.{row['table_name']}",
        "events": normalized_events(list(row["installed"])),
        "queue_id": row["queue_id"],
    }
    when = normalized_when(row["condition"])
    if when is not None:
        inputs["when"] = when
    outs = {**inputs, "when": when, "trigger_id": trigger_id}
    return Imported(trigger_id, outs, inputs)


def _schedule(conn: psycopg.Connection, name: str, me: str) -> Imported:
    text = queries("schedule.sql")
    found = conn.execute(text["find_schedule_by_name"], {"name": name}).fetchone()
    if found is None:
        raise ImportRefusedError(
            f"no schedule named {name!r} in supaqueue.schedule ({_names(conn, 'schedule')}); "
            "nothing was imported"
        )
    schedule_id = str(found[0])
    row = schedule_provider._read_row(conn, schedule_id)
    assert row is not None  # found above, in the same transaction
    _hooked_queue_problem(conn, f"schedule {name!r}", row["queue_id"], me)
    outs = schedule_provider._outs({}, schedule_id, row)
    for key in ("db_url", "migrations_dir"):  # where it is, not what it is: never read back
        outs.pop(key, None)
    inputs: dict[str, Any] = {key: outs[key] for key in ("name", "cron", "queue_id")}
    if outs["timezone"] != DEFAULT_TIMEZONE:
        inputs["timezone"] = outs["timezone"]
    if outs["payload"]:
        inputs["payload"] = outs["payload"]
    return Imported(schedule_id, outs, inputs)
